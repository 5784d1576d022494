# SPDX-License-Identifier: Apache-2.0
"""A small TFLite -> ONNX converter for the MediaPipe BlazePose graphs.

`tflite2onnx` 0.4.1 stops on BlazePose (sparse weights stored with DENSIFY, PAD with a computed
padding tensor), so the two pose models are converted here: the flatbuffer is read with the
`tflite` package, constant sub-graphs (DENSIFY of a sparse float16 weight, DEQUANTIZE) are folded
in numpy, and the few operators the graphs use are written as ONNX nodes in NCHW layout (inputs
NCHW, like the other models of the pack). Float16 weights stay float16 in the file with a Cast in
front (onnxruntime folds it when the session is made), so the file is as small as the original
and computes what TFLite computes (TFLite also widens float16 weights to float32).

Only the outputs named are kept; nodes they do not need are dropped (the segmentation and
heat-map decoders of the landmark model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper
from tflite.BuiltinOperator import BuiltinOperator

OPNAMES = {v: k for k, v in BuiltinOperator.__dict__.items() if not k.startswith("_")}
TFL_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def _densify(values: np.ndarray, shape: list[int], sp: Any) -> np.ndarray:
    """TFLite's sparse format (traversal order, block map, per-level DENSE / SPARSE_CSR
    metadata) expanded to a dense array (TFLite's FormatConverter, written in numpy)."""
    order = [int(v) for v in sp.TraversalOrderAsNumpy()]
    block_map = [int(v) for v in sp.BlockMapAsNumpy()] if sp.BlockMapLength() else []
    rank = len(shape)
    levels = []
    for i in range(sp.DimMetadataLength()):
        dm = sp.DimMetadata(i)
        if dm.Format() == 0:  # DENSE
            levels.append(("dense", int(dm.DenseSize()), None, None))
        else:
            levels.append(("csr", 0, _index_vector(dm, True), _index_vector(dm, False)))
    block_size = [levels[rank + i][1] for i in range(len(block_map))]
    out = np.zeros(int(np.prod(shape)), values.dtype)
    strides = np.cumprod([1, *shape[::-1]])[:-1][::-1]
    pos = 0

    def visit(level: int, prev: int, idx: list[int]) -> None:
        nonlocal pos
        if level == len(levels):
            orig = [0] * rank
            for i in range(rank):
                orig[order[i]] = idx[i]
            for i in range(rank, len(idx)):
                b = order[i] - rank
                d = block_map[b]
                orig[d] = orig[d] * block_size[b] + idx[i]
            out[int(np.dot(orig, strides))] = values[pos]
            pos += 1
            return
        kind, size, seg, ind = levels[level]
        if kind == "dense":
            for i in range(size):
                visit(level + 1, prev * size + i, [*idx, i])
        else:
            assert seg is not None and ind is not None
            for i in range(int(seg[prev]), int(seg[prev + 1])):
                visit(level + 1, i, [*idx, int(ind[i])])

    visit(0, 0, [])
    assert pos == values.size, (pos, values.size)
    return out.reshape(shape)


def _index_vector(dm: Any, segments: bool) -> np.ndarray:
    kind = dm.ArraySegmentsType() if segments else dm.ArrayIndicesType()
    table = dm.ArraySegments() if segments else dm.ArrayIndices()
    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[kind]
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return np.asarray(vec.ValuesAsNumpy())


class _Converter:
    def __init__(self, path: Path, outputs: list[str], name: str):
        buf = path.read_bytes()
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        self.g = self.model.Subgraphs(0)
        self.keep = outputs
        self.name = name
        self.consts: dict[int, np.ndarray] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.onnx_name: dict[int, str] = {}
        self.n = 0

    # --- tensors -------------------------------------------------------------------------------

    def tensor(self, i: int) -> Any:
        return self.g.Tensors(i)

    def shape(self, i: int) -> list[int]:
        return [int(v) for v in self.tensor(i).ShapeAsNumpy()]

    def tname(self, i: int) -> str:
        return self.tensor(i).Name().decode()

    def raw_const(self, i: int) -> np.ndarray | None:
        t = self.tensor(i)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data is None or len(data) == 0:
            return None
        arr = np.frombuffer(data.tobytes(), TFL_DTYPES[t.Type()])
        if t.Sparsity() is not None:
            return _densify(arr, self.shape(i), t.Sparsity())
        return arr.reshape(self.shape(i))

    def fresh(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def weight(self, arr: np.ndarray, base: str) -> str:
        """A constant for a float input: float16 stored as float16 plus a Cast."""
        if arr.dtype == np.float16:
            raw = self.fresh(base + "_f16")
            self.inits.append(numpy_helper.from_array(arr, raw))
            out = self.fresh(base)
            self.nodes.append(helper.make_node("Cast", [raw], [out], to=TensorProto.FLOAT))
            return out
        nm = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def int_const(self, values: list[int], base: str) -> str:
        nm = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.array(values, np.int64), nm))
        return nm

    # --- conversion ------------------------------------------------------------------------------

    def op_name(self, op: Any) -> str:
        oc = self.model.OperatorCodes(op.OpcodeIndex())
        return OPNAMES[max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())]

    def convert(self) -> onnx.ModelProto:
        g = self.g
        (inp,) = [int(g.Inputs(i)) for i in range(g.InputsLength())]
        n, h, w, c = self.shape(inp)
        self.onnx_name[inp] = self.tname(inp)
        inputs = [helper.make_tensor_value_info(self.tname(inp), TensorProto.FLOAT, [n, c, h, w])]
        for k in range(g.OperatorsLength()):
            self.convert_op(g.Operators(k))
        by_name = {self.tname(int(g.Outputs(i))): int(g.Outputs(i)) for i in range(g.OutputsLength())}
        outputs = []
        for out_name in self.keep:
            t = by_name[out_name]
            src = self.onnx_name[t]
            shp = self.shape(t)
            if len(shp) == 4:  # back to TFLite's NHWC for 4-D outputs
                self.nodes.append(helper.make_node("Transpose", [src], [out_name], perm=[0, 2, 3, 1]))
            else:
                self.nodes.append(helper.make_node("Identity", [src], [out_name]))
            outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, shp))
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, self.inits)
        graph = _prune(graph)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        model.producer_name = "orthovision models/tools/tflite_onnx.py"
        onnx.checker.check_model(model)
        return model

    def act(self, x: str, fused: int) -> str:
        if fused == 0:
            return x
        out = self.fresh("act")
        if fused == 1:
            self.nodes.append(helper.make_node("Relu", [x], [out]))
        elif fused in (2, 3):
            lo, hi = (-1.0, 1.0) if fused == 2 else (0.0, 6.0)
            self.nodes.append(
                helper.make_node(
                    "Clip",
                    [
                        x,
                        self.weight(np.array(lo, np.float32), "lo"),
                        self.weight(np.array(hi, np.float32), "hi"),
                    ],
                    [out],
                )
            )
        elif fused == 4:
            self.nodes.append(helper.make_node("Tanh", [x], [out]))
        else:
            raise NotImplementedError(f"fused activation {fused}")
        return out

    def same_pads(self, in_hw: list[int], k: list[int], s: list[int], d: list[int]) -> list[int]:
        begin, end = [], []
        for size, kk, ss, dd in zip(in_hw, k, s, d, strict=True):
            eff = (kk - 1) * dd + 1
            out = -(-size // ss)
            total = max(0, (out - 1) * ss + eff - size)
            begin.append(total // 2)
            end.append(total - total // 2)
        return begin + end

    def convert_op(self, op: Any) -> None:
        kind = self.op_name(op)
        ins = [int(v) for v in op.InputsAsNumpy()]
        outs = [int(v) for v in op.OutputsAsNumpy()]
        (o,) = outs
        consts = [self.consts.get(i) if i >= 0 else None for i in ins]
        consts = [
            c if c is not None else (self.raw_const(i) if i >= 0 and i not in self.onnx_name else None)
            for c, i in zip(consts, ins, strict=True)
        ]
        if kind == "DENSIFY":
            assert consts[0] is not None
            self.consts[o] = consts[0]
            return
        if kind == "DEQUANTIZE":
            src = consts[0]
            assert src is not None
            q = self.tensor(ins[0]).Quantization()
            if src.dtype == np.float16:
                self.consts[o] = src  # kept float16 (Cast at use)
            else:
                scale, zero = q.ScaleAsNumpy(), q.ZeroPointAsNumpy()
                axis = q.QuantizedDimension()
                shp = [1] * src.ndim
                shp[axis] = -1
                self.consts[o] = ((src.astype(np.float32) - zero.reshape(shp)) * scale.reshape(shp)).astype(
                    np.float32
                )
            return
        x = self.onnx_name.get(ins[0], "")
        out = self.fresh(kind.lower())
        opts_table = op.BuiltinOptions()
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            cls = tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions
            opt = cls()
            opt.Init(opts_table.Bytes, opts_table.Pos)
            wt = consts[1]
            assert wt is not None
            kh, kw = wt.shape[1], wt.shape[2]
            in_shape = self.shape(ins[0])
            strides = [opt.StrideH(), opt.StrideW()]
            dil = [opt.DilationHFactor(), opt.DilationWFactor()]
            if kind == "CONV_2D":
                w_onnx = wt.transpose(0, 3, 1, 2)
                group = 1
            else:
                w_onnx = wt.transpose(3, 0, 1, 2)  # (1, kh, kw, C*M) -> (C*M, 1, kh, kw)
                group = in_shape[3]
            pads = (
                self.same_pads(in_shape[1:3], [kh, kw], strides, dil) if opt.Padding() == 0 else [0, 0, 0, 0]
            )
            args = [x, self.weight(np.ascontiguousarray(w_onnx), "w")]
            if len(ins) > 2 and ins[2] >= 0 and consts[2] is not None:
                args.append(self.weight(consts[2], "b"))
            self.nodes.append(
                helper.make_node(
                    "Conv",
                    args,
                    [out],
                    kernel_shape=[kh, kw],
                    strides=strides,
                    dilations=dil,
                    pads=pads,
                    group=group,
                )
            )
            self.onnx_name[o] = self.act(out, opt.FusedActivationFunction())
        elif kind == "ADD":
            opt = tflite.AddOptions()
            opt.Init(opts_table.Bytes, opts_table.Pos)
            a, b = (
                self.onnx_name[i] if i in self.onnx_name else self.weight(consts[k], "c")
                for k, i in enumerate(ins)
            )
            self.nodes.append(helper.make_node("Add", [a, b], [out]))
            self.onnx_name[o] = self.act(out, opt.FusedActivationFunction())
        elif kind == "PAD":
            p = consts[1]
            assert p is not None
            p = p.reshape(-1, 2)
            order = [0, 3, 1, 2] if len(p) == 4 else list(range(len(p)))
            pads = [int(p[i, 0]) for i in order] + [int(p[i, 1]) for i in order]
            self.nodes.append(
                helper.make_node("Pad", [x, self.int_const(pads, "pads")], [out], mode="constant")
            )
            self.onnx_name[o] = out
        elif kind == "MAX_POOL_2D":
            opt = tflite.Pool2DOptions()
            opt.Init(opts_table.Bytes, opts_table.Pos)
            k = [opt.FilterHeight(), opt.FilterWidth()]
            s = [opt.StrideH(), opt.StrideW()]
            pads = (
                self.same_pads(self.shape(ins[0])[1:3], k, s, [1, 1]) if opt.Padding() == 0 else [0, 0, 0, 0]
            )
            self.nodes.append(helper.make_node("MaxPool", [x], [out], kernel_shape=k, strides=s, pads=pads))
            self.onnx_name[o] = self.act(out, opt.FusedActivationFunction())
        elif kind == "RESIZE_BILINEAR":
            opt = tflite.ResizeBilinearOptions()
            opt.Init(opts_table.Bytes, opts_table.Pos)
            mode = (
                "align_corners"
                if opt.AlignCorners()
                else ("half_pixel" if opt.HalfPixelCenters() else "asymmetric")
            )
            nhwc = self.shape(o)
            sizes = self.int_const([nhwc[0], nhwc[3], nhwc[1], nhwc[2]], "sizes")
            self.nodes.append(
                helper.make_node(
                    "Resize", [x, "", "", sizes], [out], mode="linear", coordinate_transformation_mode=mode
                )
            )
            self.onnx_name[o] = out
        elif kind == "DEPTH_TO_SPACE":
            opt = tflite.DepthToSpaceOptions()
            opt.Init(opts_table.Bytes, opts_table.Pos)
            self.nodes.append(
                helper.make_node("DepthToSpace", [x], [out], blocksize=opt.BlockSize(), mode="DCR")
            )
            self.onnx_name[o] = out
        elif kind == "RESHAPE":
            src = x
            if len(self.shape(ins[0])) == 4:
                src = self.fresh("nhwc")
                self.nodes.append(helper.make_node("Transpose", [x], [src], perm=[0, 2, 3, 1]))
            target = self.shape(o)
            self.nodes.append(helper.make_node("Reshape", [src, self.int_const(target, "shape")], [out]))
            if len(target) == 4:
                back = self.fresh("nchw")
                self.nodes.append(helper.make_node("Transpose", [out], [back], perm=[0, 3, 1, 2]))
                out = back
            self.onnx_name[o] = out
        elif kind == "CONCATENATION":
            opt = tflite.ConcatenationOptions()
            opt.Init(opts_table.Bytes, opts_table.Pos)
            rank = len(self.shape(o))
            axis = opt.Axis() % rank
            if rank == 4:
                axis = NHWC_TO_NCHW_AXIS[axis]
            self.nodes.append(helper.make_node("Concat", [self.onnx_name[i] for i in ins], [out], axis=axis))
            self.onnx_name[o] = self.act(out, opt.FusedActivationFunction())
        elif kind == "LOGISTIC":
            self.nodes.append(helper.make_node("Sigmoid", [x], [out]))
            self.onnx_name[o] = out
        else:
            raise NotImplementedError(f"TFLite operator {kind} is not converted")


def _prune(graph: onnx.GraphProto) -> onnx.GraphProto:
    """Only the nodes and initialisers the outputs need."""
    needed = {o.name for o in graph.output}
    keep: list[onnx.NodeProto] = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    inits = [t for t in graph.initializer if t.name in needed]
    return helper.make_graph(keep[::-1], graph.name, list(graph.input), list(graph.output), inits)


def convert(src: Path, dst: Path, outputs: list[str], name: str) -> None:
    model = _Converter(src, outputs, name).convert()
    onnx.save(model, str(dst))
