# SPDX-License-Identifier: Apache-2.0
"""Convert face-api's face expression model (TensorFlow.js weights, MIT) to ONNX.

    npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz
    python models/tools/expression_onnx.py package/model -o models/face_expression.onnx

The npm package ships the network as quantised weights (`face_expression_model.bin` and its
manifest) that face-api's JavaScript code wires together; this script wires the same network
(four densely connected blocks of depthwise-separable convolutions, the first a plain
convolution, each block halving the size: 112 -> 7, a global mean, a 256 -> 7 dense layer and a
softmax) as an ONNX graph, in NCHW. Input: 1x3x112x112, a face crop padded to a square,
scaled to 112 and normalised as face-api does ((RGB - [122.782, 117.001, 104.298]) / 255).
Output `expressions`: 1x7 probabilities of neutral, happy, sad, angry, fearful, disgusted,
surprised. The script checks the graph against a NumPy forward pass of the same weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_models import _Graph

EXPRESSIONS = ["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"]
MEAN_RGB = (122.782, 117.001, 104.298)
SIZE = 112


def load_weights(model_dir: Path, name: str = "face_expression_model") -> dict[str, np.ndarray]:
    """The manifest's tensors, de-quantised (uint8 * scale + min)."""
    manifest = json.loads((model_dir / f"{name}-weights_manifest.json").read_text(encoding="utf-8"))
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        buf = b"".join((model_dir / p).read_bytes() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            q = w.get("quantization")
            if q:
                dt = {"uint8": np.uint8, "uint16": np.uint16}[q["dtype"]]
                raw = np.frombuffer(buf, dt, n, off)
                off += n * raw.itemsize
                arr = raw.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
            else:
                arr = np.frombuffer(buf, np.float32, n, off).copy()
                off += 4 * n
            out[w["name"]] = arr.reshape(w["shape"]).astype(np.float32)
        if off != len(buf):
            raise SystemExit(f"{name}: {len(buf) - off} bytes left over: not the expected layout")
    return out


class Graph(_Graph):
    """build_models.py's graph builder, with the weights by their TensorFlow.js names."""

    def __init__(self, w: dict[str, np.ndarray]):
        super().__init__()
        self.w = w

    def axes(self, values: list[int]) -> str:
        nm = self.name("axes")
        self.inits.append(numpy_helper.from_array(np.array(values, np.int64), nm))
        return nm

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray | None, stride: int, group: int = 1) -> str:
        """TensorFlow 'same' padding: for stride 2 on an even size the one extra row and column
        go at the end."""
        k = weight.shape[2]
        lo, hi = ((k - 1) // 2, (k - 1) // 2) if stride == 1 else (0, 1)
        inputs = [x, self.const("W", weight)]
        if bias is not None:
            inputs.append(self.const("B", bias))
        out = self.name("conv")
        self.nodes.append(
            helper.make_node(
                "Conv",
                inputs,
                [out],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[lo, lo, hi, hi],
                group=group,
            )
        )
        return out

    def separable(self, x: str, prefix: str, stride: int) -> str:
        dw = self.w[f"{prefix}/depthwise_filter"]  # k, k, c, 1
        pw = self.w[f"{prefix}/pointwise_filter"]  # 1, 1, cin, cout
        c = dw.shape[2]
        y = self.conv(x, dw.transpose(2, 3, 0, 1), None, stride, group=c)
        return self.conv(y, pw.transpose(3, 2, 0, 1), self.w[f"{prefix}/bias"], 1)

    def op(self, kind: str, *inputs: str) -> str:
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, list(inputs), [out]))
        return out

    def dense_block(self, x: str, block: str, first: bool) -> str:
        if first:
            f = self.w[f"{block}/conv0/filters"]  # k, k, cin, cout
            o1 = self.op("Relu", self.conv(x, f.transpose(3, 2, 0, 1), self.w[f"{block}/conv0/bias"], 2))
        else:
            o1 = self.op("Relu", self.separable(x, f"{block}/conv0", 2))
        o2 = self.separable(o1, f"{block}/conv1", 1)
        s2 = self.op("Add", o1, o2)
        o3 = self.separable(self.op("Relu", s2), f"{block}/conv2", 1)
        s3 = self.op("Add", s2, o3)
        o4 = self.separable(self.op("Relu", s3), f"{block}/conv3", 1)
        return self.op("Relu", self.op("Add", s3, o4))


def build(w: dict[str, np.ndarray]) -> onnx.ModelProto:
    g = Graph(w)
    x = "input"
    for i, block in enumerate(("dense0", "dense1", "dense2", "dense3")):
        x = g.dense_block(x, block, first=i == 0)
    pooled = g.name("mean")
    g.nodes.append(helper.make_node("ReduceMean", [x, g.axes([2, 3])], [pooled], keepdims=0))
    logits = g.op(
        "Add", g.op("MatMul", pooled, g.const("fc_W", w["fc/weights"])), g.const("fc_B", w["fc/bias"])
    )
    g.nodes.append(helper.make_node("Softmax", [logits], ["expressions"], axis=1))
    graph = helper.make_graph(
        g.nodes,
        "face_expression",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("expressions", TensorProto.FLOAT, [1, len(EXPRESSIONS)])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def reference(w: dict[str, np.ndarray], x_hwc: np.ndarray) -> np.ndarray:
    """The same network in NumPy (HWC), written from face-api's description, to check the graph."""

    def pad(x: np.ndarray, k: int, s: int) -> tuple[np.ndarray, int, int]:
        h, wd = x.shape[:2]
        oh, ow = -(-h // s), -(-wd // s)
        ph, pw = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - wd, 0)
        return np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))), oh, ow

    def conv(x: np.ndarray, f: np.ndarray, s: int, depthwise: bool = False) -> np.ndarray:
        k = f.shape[0]
        xp, oh, ow = pad(x, k, s)
        out = np.zeros((oh, ow, x.shape[2] if depthwise else f.shape[3]), np.float32)
        for i in range(k):
            for j in range(k):
                win = xp[i : i + s * oh : s, j : j + s * ow : s]
                out += win * f[i, j, :, 0] if depthwise else win @ f[i, j]
        return out

    def sep(x: np.ndarray, p: str, s: int) -> np.ndarray:
        y = conv(x, w[f"{p}/depthwise_filter"], s, depthwise=True)
        return y @ w[f"{p}/pointwise_filter"][0, 0] + w[f"{p}/bias"]

    def relu(v: np.ndarray) -> np.ndarray:
        return np.maximum(v, 0)

    o = x_hwc
    for i, b in enumerate(("dense0", "dense1", "dense2", "dense3")):
        if i == 0:
            o1 = relu(conv(o, w[f"{b}/conv0/filters"], 2) + w[f"{b}/conv0/bias"])
        else:
            o1 = relu(sep(o, f"{b}/conv0", 2))
        o2 = sep(o1, f"{b}/conv1", 1)
        o3 = sep(relu(o1 + o2), f"{b}/conv2", 1)
        o4 = sep(relu(o1 + o2 + o3), f"{b}/conv3", 1)
        o = relu(o1 + o2 + o3 + o4)
    logits = o.mean(axis=(0, 1)) @ w["fc/weights"] + w["fc/bias"]
    e = np.exp(logits - logits.max())
    return e / e.sum()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path, help="the npm package's model/ folder")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)
    w = load_weights(args.model_dir)
    model = build(w)
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for _ in range(3):  # the graph against the NumPy network, on random normalised crops
        x = ((rng.integers(0, 256, (SIZE, SIZE, 3)) - np.array(MEAN_RGB)) / 255).astype(np.float32)
        (got,) = sess.run(None, {"input": x.transpose(2, 0, 1)[None]})
        want = reference(w, x)
        if not np.allclose(got[0], want, atol=1e-4):
            raise SystemExit(f"ONNX and NumPy disagree: {got[0]} vs {want}")
    args.output.write_bytes(model.SerializeToString())
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes); checked against NumPy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
