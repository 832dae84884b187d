"""Convert MediaPipe's BlazeFace short-range face detector from TFLite to ONNX, for model/detectors/.

The weights come from the `mediapipe` wheel on PyPI (0.10.14 is the last release that ships the .tflite file;
Apache License 2.0, Google LLC): nothing is trained or changed here, only re-expressed as an ONNX graph that
ONNX Runtime (already a serving dependency) runs. The graph is rebuilt op by op from the TFLite flatbuffer:
weights are transposed from TFLite's NHWC to ONNX's NCHW, fp16 weights are widened to fp32 (TFLite's
DEQUANTIZE), TensorFlow's SAME padding becomes explicit (asymmetric) pads, and activations are transposed back
to NHWC before each RESHAPE so the 896 anchors come out in TFLite's order.

    pip install tflite onnx                       # dev-time only; ai-edge-litert too for --check
    pip download mediapipe==0.10.14 --no-deps --only-binary :all: -d /tmp/mp
    unzip -j /tmp/mp/mediapipe-0.10.14-*.whl 'mediapipe/modules/face_detection/face_detection_short_range.tflite'
    python tools/convert_blazeface.py face_detection_short_range.tflite \
        model/detectors/blazeface_short_range.onnx --check

`--check` runs both models (TFLite through ai-edge-litert, ONNX through ONNX Runtime) on random and constant
inputs and prints the largest difference of each output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

OPS = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
DTYPES = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32,
}


def _options(op: tflite.Operator, cls: type) -> object:
    table = op.BuiltinOptions()
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding along one axis: (before, after), the odd pixel going after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def convert(tflite_path: Path) -> onnx.ModelProto:
    buf = tflite_path.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)

    def tensor(i: int) -> tflite.Tensor:
        return graph.Tensors(i)

    def name(i: int) -> str:
        return tensor(i).Name().decode()

    def shape(i: int) -> list[int]:
        return [int(v) for v in tensor(i).ShapeAsNumpy()]

    consts: dict[int, np.ndarray] = {}
    for i in range(graph.TensorsLength()):
        t = tensor(i)
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, np.ndarray) and data.size:
            consts[i] = np.frombuffer(data.tobytes(), dtype=DTYPES[t.Type()]).reshape(shape(i))

    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    counter = iter(range(1_000_000))

    def init(array: np.ndarray, hint: str) -> str:
        n = f"{hint}_{next(counter)}"
        inits.append(numpy_helper.from_array(array, n))
        return n

    def fused(out: str, act: int) -> None:
        """Rename the op's output and append the fused activation, if any, producing `out`."""
        if act == tflite.ActivationFunctionType.NONE:
            return
        if act != tflite.ActivationFunctionType.RELU:
            raise NotImplementedError(f"fused activation {act}")
        nodes[-1].output[0] = out + "_pre"
        nodes.append(helper.make_node("Relu", [out + "_pre"], [out]))

    (inp,) = [graph.Inputs(k) for k in range(graph.InputsLength())]
    _, h_in, w_in, c_in = shape(inp)
    onnx_inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", c_in, h_in, w_in])]
    alias = {inp: "images"}  # tflite tensor index -> ONNX value name (4-D values are NCHW)

    def val(i: int) -> str:
        return alias.get(i, name(i))

    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = OPS[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [int(v) for v in op.InputsAsNumpy()]
        (out,) = [int(v) for v in op.OutputsAsNumpy()]
        o = name(out)
        if kind == "DEQUANTIZE":  # fp16 weights: widen once, here
            consts[out] = consts[ins[0]].astype(np.float32)
        elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x, w, b = ins
            weight, bias = consts[w], consts[b].astype(np.float32)
            if kind == "CONV_2D":
                opts = _options(op, tflite.Conv2DOptions)
                weight_nchw, group = weight.transpose(0, 3, 1, 2), 1  # O,KH,KW,I -> O,I,KH,KW
            else:
                opts = _options(op, tflite.DepthwiseConv2DOptions)
                weight_nchw, group = weight.transpose(3, 0, 1, 2), shape(x)[3]  # 1,KH,KW,C -> C,1,KH,KW
            kh, kw = weight.shape[1:3]
            sh, sw = opts.StrideH(), opts.StrideW()
            if opts.Padding() == tflite.Padding.SAME:
                (t, bt), (lf, r) = _same_pads(shape(x)[1], kh, sh), _same_pads(shape(x)[2], kw, sw)
            else:
                t = bt = lf = r = 0
            nodes.append(
                helper.make_node(
                    "Conv",
                    [val(x), init(np.ascontiguousarray(weight_nchw, np.float32), "w"), init(bias, "b")],
                    [o],
                    kernel_shape=[kh, kw],
                    strides=[sh, sw],
                    pads=[t, lf, bt, r],
                    group=group,
                )
            )
            fused(o, opts.FusedActivationFunction())
        elif kind == "ADD":
            opts = _options(op, tflite.AddOptions)
            nodes.append(helper.make_node("Add", [val(ins[0]), val(ins[1])], [o]))
            fused(o, opts.FusedActivationFunction())
        elif kind == "RELU":
            nodes.append(helper.make_node("Relu", [val(ins[0])], [o]))
        elif kind == "PAD":
            p = consts[ins[1]].astype(np.int64)  # NHWC rows of (before, after)
            nchw = p[[0, 3, 1, 2]]
            pads = np.concatenate([nchw[:, 0], nchw[:, 1]])
            nodes.append(helper.make_node("Pad", [val(ins[0]), init(pads, "pads")], [o], mode="constant"))
        elif kind == "MAX_POOL_2D":
            opts = _options(op, tflite.Pool2DOptions)
            fh, fw, sh, sw = opts.FilterHeight(), opts.FilterWidth(), opts.StrideH(), opts.StrideW()
            if opts.Padding() == tflite.Padding.SAME:
                (t, bt), (lf, r) = _same_pads(shape(ins[0])[1], fh, sh), _same_pads(shape(ins[0])[2], fw, sw)
            else:
                t = bt = lf = r = 0
            nodes.append(
                helper.make_node(
                    "MaxPool", [val(ins[0])], [o], kernel_shape=[fh, fw], strides=[sh, sw], pads=[t, lf, bt, r]
                )
            )
        elif kind == "RESHAPE":
            # Back to NHWC first: TFLite flattens H, W, C in that order (anchor-major, then its values).
            nodes.append(helper.make_node("Transpose", [val(ins[0])], [o + "_nhwc"], perm=[0, 2, 3, 1]))
            target = np.array([0, *shape(out)[1:]], dtype=np.int64)  # 0: keep the batch dimension
            nodes.append(helper.make_node("Reshape", [o + "_nhwc", init(target, "shape")], [o]))
        elif kind == "CONCATENATION":
            opts = _options(op, tflite.ConcatenationOptions)
            if len(shape(out)) == 4:
                raise NotImplementedError("4-D concatenation")
            nodes.append(helper.make_node("Concat", [val(i) for i in ins], [o], axis=opts.Axis()))
            fused(o, opts.FusedActivationFunction())
        else:
            raise NotImplementedError(kind)

    outputs = [graph.Outputs(k) for k in range(graph.OutputsLength())]
    onnx_outputs = [
        helper.make_tensor_value_info(name(i), TensorProto.FLOAT, ["batch", *shape(i)[1:]]) for i in outputs
    ]
    g = helper.make_graph(nodes, "blazeface_short_range", onnx_inputs, onnx_outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="siamface")
    m.ir_version = 8
    m.doc_string = (
        "MediaPipe BlazeFace short-range (face_detection_short_range.tflite from mediapipe 0.10.14, Apache-2.0, "
        "Google LLC), converted by siamface tools/convert_blazeface.py. Input: images N×3×128×128 float32 RGB "
        "scaled to [-1, 1]. Outputs: regressors N×896×16, classificators N×896×1 (logits)."
    )
    onnx.checker.check_model(m)
    return m


def check(tflite_path: Path, onnx_path: Path) -> float:
    """Largest absolute difference between the TFLite and the ONNX outputs on a few inputs."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tflite_path))
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    outs = interp.get_output_details()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for x in (rng.uniform(-1, 1, (1, 128, 128, 3)), np.zeros((1, 128, 128, 3)), np.full((1, 128, 128, 3), 0.5)):
        x = x.astype(np.float32)
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        got = sess.run(None, {"images": x.transpose(0, 3, 1, 2).copy()})
        for d, g in zip(outs, got, strict=True):
            ref = interp.get_tensor(d["index"])
            diff = float(np.abs(ref - g).max())
            worst = max(worst, diff)
            print(f"{d['name']}: max |tflite - onnx| = {diff:.2e} (output range {ref.min():.2f}..{ref.max():.2f})")
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tflite", type=Path)
    p.add_argument("onnx", type=Path)
    p.add_argument("--check", action="store_true", help="compare with the TFLite model (needs ai-edge-litert)")
    args = p.parse_args(argv)
    m = convert(args.tflite)
    args.onnx.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(args.onnx))
    print(f"wrote {args.onnx} ({args.onnx.stat().st_size / 1024:.0f} KiB, {len(m.graph.node)} nodes)")
    if args.check and check(args.tflite, args.onnx) > 1e-3:
        print("outputs differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
