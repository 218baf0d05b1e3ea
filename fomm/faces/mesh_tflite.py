"""Convert a TensorFlow Lite convolutional model into fomm's graph format (weights + op list).

The face mesh ships as ``fomm/weights/face-mesh-468.safetensors``: the weights of MediaPipe's
``face_landmark.tflite`` (Apache-2.0) in PyTorch layout, and the op list in the file's
metadata, executed by :class:`fomm.faces.mesh_net.GraphNet`. This module re-creates that file
from the model inside the ``mediapipe`` 0.10.x wheel (0.10.14 and 0.10.21 carry the same file,
sha256 ``1055cb9d…c814``)::

    pip download --no-deps "mediapipe==0.10.14" -d /tmp/mp  # any platform's wheel
    pip install tflite  # the flatbuffer schema (Apache-2.0)
    python -m fomm.faces.mesh_tflite /tmp/mp/mediapipe-0.10.14-*.whl \
        fomm/weights/face-mesh-468.safetensors
    python -m fomm.faces.mesh_tflite --model iris-landmark /tmp/mp/mediapipe-0.10.14-*.whl \
        fomm/weights/iris-landmark.safetensors

The second file holds MediaPipe's ``iris_landmark.tflite`` (eyelid contours, brows and iris from
a 64x64 eye crop; same wheel, same licence, sha256 ``d1744d2a…521f``). Only what these models
use is supported: CONV_2D, DEPTHWISE_CONV_2D, PRELU, ADD, MAX_POOL_2D, PAD, RESHAPE and
DEQUANTIZE (float16 weights), float32 activations, one subgraph. Not needed at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

MEMBERS = {
    "face-mesh-468": "mediapipe/modules/face_landmark/face_landmark.tflite",
    "iris-landmark": "mediapipe/modules/iris_landmark/iris_landmark.tflite",
}
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}
_ACTS = {0: "none", 1: "relu", 3: "relu6"}


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def read_tflite(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse a .tflite flatbuffer into (graph spec, constant tensors in PyTorch layout).

    The spec is JSON-serialisable: ``{"inputs": [{"id", "shape"}], "outputs": [{"id", "name"}],
    "ops": [...]}`` with NCHW semantics; tensors are keyed ``"t<id>"``.
    """
    import tflite  # the flatbuffer schema package; only needed to convert
    from tflite.BuiltinOperator import BuiltinOperator as Op
    from tflite.Padding import Padding

    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() != 1:
        raise ValueError("only single-subgraph models are supported")
    graph = model.Subgraphs(0)

    def tensor(i: int) -> Any:
        return graph.Tensors(i)

    def shape(i: int) -> list[int]:
        t = tensor(i)
        return [int(s) for s in t.ShapeAsNumpy()] if t.ShapeLength() else []

    def const(i: int) -> np.ndarray | None:
        t = tensor(i)
        buf = model.Buffers(t.Buffer())
        if buf is None or buf.DataLength() == 0:
            return None
        return np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=_DTYPES[t.Type()]).reshape(shape(i))

    consts: dict[int, np.ndarray] = {}  # tensor id -> NHWC-layout constant (after dequantize)
    weights: dict[str, np.ndarray] = {}
    ops: list[dict[str, Any]] = []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code_obj = model.OperatorCodes(op.OpcodeIndex())
        code = max(code_obj.BuiltinCode(), code_obj.DeprecatedBuiltinCode())
        ins = [int(i) for i in op.InputsAsNumpy()]
        out = int(op.OutputsAsNumpy()[0])
        opts = op.BuiltinOptions()
        if code == Op.DEQUANTIZE:
            value = const(ins[0])
            if value is None:
                raise ValueError(f"op {k}: DEQUANTIZE of a non-constant tensor")
            consts[out] = value
            continue

        def weight(i: int, k: int = k) -> np.ndarray:
            value = consts.get(i)
            if value is None:
                value = const(i)
            if value is None:
                raise ValueError(f"op {k}: tensor {i} is not constant")
            return value

        if code in (Op.CONV_2D, Op.DEPTHWISE_CONV_2D):
            depthwise = code == Op.DEPTHWISE_CONV_2D
            o = tflite.DepthwiseConv2DOptions() if depthwise else tflite.Conv2DOptions()
            o.Init(opts.Bytes, opts.Pos)
            if o.DilationHFactor() != 1 or o.DilationWFactor() != 1:
                raise ValueError(f"op {k}: dilation is not supported")
            kernel = weight(ins[1])  # conv: (O, kh, kw, I); depthwise: (1, kh, kw, C)
            if depthwise:
                kernel_t = kernel.transpose(3, 0, 1, 2)  # (C, 1, kh, kw)
                groups = kernel.shape[3]
            else:
                kernel_t = kernel.transpose(0, 3, 1, 2)  # (O, I, kh, kw)
                groups = 1
            _, height, width, _ = shape(ins[0])
            kh, kw = kernel.shape[1:3]
            sh, sw = o.StrideH(), o.StrideW()
            if o.Padding() == Padding.SAME:
                top, bottom = _same_pad(height, kh, sh)
                left, right = _same_pad(width, kw, sw)
            else:
                top = bottom = left = right = 0
            weights[f"t{ins[1]}"] = np.ascontiguousarray(kernel_t)
            spec: dict[str, Any] = {
                "op": "conv",
                "x": ins[0],
                "y": out,
                "w": f"t{ins[1]}",
                "stride": [sh, sw],
                "pad": [left, right, top, bottom],
                "groups": groups,
                "act": _ACTS[o.FusedActivationFunction()],
            }
            if len(ins) > 2 and ins[2] >= 0:
                weights[f"t{ins[2]}"] = weight(ins[2])
                spec["b"] = f"t{ins[2]}"
            ops.append(spec)
        elif code == Op.PRELU:
            alpha = weight(ins[1]).reshape(-1)
            weights[f"t{ins[1]}"] = alpha
            ops.append({"op": "prelu", "x": ins[0], "y": out, "a": f"t{ins[1]}"})
        elif code == Op.ADD:
            o = tflite.AddOptions()
            o.Init(opts.Bytes, opts.Pos)
            ops.append(
                {"op": "add", "x": ins[:2], "y": out, "act": _ACTS[o.FusedActivationFunction()]}
            )
        elif code == Op.MAX_POOL_2D:
            o = tflite.Pool2DOptions()
            o.Init(opts.Bytes, opts.Pos)
            _, height, width, _ = shape(ins[0])
            kh, kw, sh, sw = o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()
            if o.Padding() == Padding.SAME:
                top, bottom = _same_pad(height, kh, sh)
                left, right = _same_pad(width, kw, sw)
            else:
                top = bottom = left = right = 0
            ops.append(
                {
                    "op": "maxpool",
                    "x": ins[0],
                    "y": out,
                    "k": [kh, kw],
                    "stride": [sh, sw],
                    "pad": [left, right, top, bottom],
                }
            )
        elif code == Op.RESHAPE:
            target = shape(out)
            # NHWC semantics: the NCHW tensor goes back to NHWC before the reshape
            ops.append({"op": "reshape", "x": ins[0], "y": out, "shape": [-1, *target[1:]]})
        elif code == Op.PAD:
            pads = weight(ins[1]).astype(int).tolist()  # NHWC [[before, after]] * 4
            if pads[0] != [0, 0]:
                raise ValueError(f"op {k}: batch padding is not supported")
            # F.pad order for NCHW: (w0, w1, h0, h1, c0, c1)
            ops.append({"op": "pad", "x": ins[0], "y": out, "pad": pads[2] + pads[1] + pads[3]})
        else:
            raise ValueError(f"op {k}: builtin operator {code} is not supported")

    inputs = [{"id": int(i), "shape": shape(int(i))} for i in graph.InputsAsNumpy()]
    outputs = [
        {"id": int(i), "name": tensor(int(i)).Name().decode()} for i in graph.OutputsAsNumpy()
    ]
    return {"inputs": inputs, "outputs": outputs, "ops": ops}, weights


def convert(source: Path, target: Path, member: str = MEMBERS["face-mesh-468"]) -> str:
    """Write ``target`` (safetensors: the weights as stored, float16 or float32; the spec in
    the metadata) from a .tflite file or the ``member`` of a mediapipe wheel; returns the sha256
    of the .tflite bytes."""
    from safetensors.numpy import save_file

    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            data = wheel.read(member)
        origin = f"{source.name}:{member}"
    else:
        data = source.read_bytes()
        origin = source.name
    digest = hashlib.sha256(data).hexdigest()
    spec, weights = read_tflite(data)
    tensors = {
        name: np.ascontiguousarray(value if value.dtype == np.float16 else value.astype(np.float32))
        for name, value in weights.items()
    }
    metadata = {
        "graph": json.dumps(spec, separators=(",", ":")),
        "source": origin,
        "source_sha256": digest,
        "license": f"Apache-2.0 (MediaPipe {Path(member).name}, Copyright Google LLC)",
    }
    save_file(tensors, str(target), metadata=metadata)
    return digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="face_landmark.tflite or a mediapipe wheel")
    parser.add_argument("target", type=Path, help="output .safetensors")
    parser.add_argument(
        "--model", choices=sorted(MEMBERS), default="face-mesh-468", help="which model of the wheel"
    )
    args = parser.parse_args()
    print(convert(args.source, args.target, MEMBERS[args.model]))


if __name__ == "__main__":
    main()
