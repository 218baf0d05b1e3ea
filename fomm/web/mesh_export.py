"""The face mesh networks as ONNX files for the browser (onnxruntime-web, WASM or WebGPU).

:func:`export_face_mesh` writes the two networks of :mod:`fomm.faces.mesh` (MediaPipe's face
mesh, 468 points, and the iris network's eyelid contours; Apache-2.0, Copyright Google LLC, the
licence text beside them) from fomm's own graph files:

* ``face-mesh.onnx``: ``image`` (B, 3, 192, 192) float32 RGB in [0, 1] → ``landmarks``
  (B, 1404: x, y, z per point in input pixels) and ``presence`` (B, 1, the logit of a face);
* ``iris-landmark.onnx``: ``image`` (B, 3, 64, 64) → ``contours`` (B, 213: 71 points of the lids,
  halos and brows) and ``iris`` (B, 15).

The graph holds plain Conv, PRelu, Add, Relu, MaxPool, Pad, Transpose and Reshape nodes (opset
``OPSET``), all run by onnxruntime-web's WASM and WebGPU back ends. The weights are stored as
float16 with a Cast to float32 at the graph's start (the computation stays float32, as WASM runs
it), halving the download; each file is checked against the torch module on ONNX Runtime and
refused beyond ``TOLERANCE`` pixels.
"""

from __future__ import annotations

import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from fomm.errors import FommError
from fomm.faces.mesh import EYE_INPUT, INPUT, IRIS_WEIGHTS, WEIGHTS
from fomm.faces.mesh_net import GraphNet

OPSET = 17
# largest |onnxruntime - torch| accepted on the landmarks, in pixels of the network's input
# (192 or 64): float16 weights move the points by about 0.01 px
TOLERANCE = 0.1
NETWORKS = {
    "face_mesh": (WEIGHTS, "face-mesh.onnx", INPUT, ["landmarks", "presence"]),
    "iris": (IRIS_WEIGHTS, "iris-landmark.onnx", EYE_INPUT, ["contours", "iris"]),
}
LICENCE = WEIGHTS.with_name("LICENSE-mediapipe.txt")


class _Flat(torch.nn.Module):
    """The graph with each output flattened to (B, n)."""

    def __init__(self, net: GraphNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(y.flatten(1) for y in self.net(x))


def _half_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its float32 weights (initializers or Constant nodes) stored as float16
    initializers, each cast back to float32 at the graph's start."""
    graph = model.graph
    weights: list[tuple[str, np.ndarray]] = []
    kept = []
    for node in graph.node:
        value = None
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            value = numpy_helper.to_array(node.attribute[0].t)
        if value is not None and value.dtype == np.float32 and value.size >= 16:
            weights.append((node.output[0], value))
        else:
            kept.append(node)
    for init in list(graph.initializer):
        value = numpy_helper.to_array(init)
        if value.dtype == np.float32 and value.size >= 16:
            graph.initializer.remove(init)
            weights.append((init.name, value))
    casts = []
    for name, value in weights:
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float16), name + "_fp16"))
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=TensorProto.FLOAT,
                                      name=name + "_cast"))
    del graph.node[:]
    graph.node.extend(casts + kept)
    return model


def _export(net: GraphNet, size: int, outputs: list[str], half: bool) -> bytes:
    buffer = io.BytesIO()
    example = torch.rand(1, 3, size, size)
    axes = {name: {0: "batch"} for name in ["image", *outputs]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Flat(net), (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=outputs, dynamic_axes=axes)
    model = onnx.load_from_string(buffer.getvalue())
    if half:
        model = _half_weights(model)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def check_graph(data: bytes, net: GraphNet, size: int, seed: int = 0) -> float:
    """The largest |onnxruntime - torch| over the outputs on random and smooth inputs.

    Raises:
        FommError: beyond ``TOLERANCE``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    smooth = np.stack([np.add.outer(ramp, ramp) / 2, np.outer(ramp, ramp),
                       np.add.outer(ramp, 1 - ramp) / 2])
    batch = np.stack([rng.random((3, size, size), dtype=np.float32), smooth]).astype(np.float32)
    got = session.run(None, {"image": batch})
    with torch.no_grad():
        want = [y.numpy() for y in _Flat(net)(torch.from_numpy(batch))]
    worst = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    if not worst <= TOLERANCE:
        raise FommError(
            f"the exported face mesh network differs from torch by {worst:.4g} (more than "
            f"{TOLERANCE:g}); it does not export faithfully to ONNX opset {OPSET}"
        )
    return worst


def export_face_mesh(out_dir: str | Path, half: bool = True, check: bool = True
                     ) -> dict[str, Path]:
    """Write the face mesh and iris networks as ONNX files (and their licence) into ``out_dir``.

    Args:
        out_dir: the folder (created).
        half: store the weights as float16 (about half the bytes; the computation stays float32).
        check: compare each file with the torch module on ONNX Runtime.

    Returns:
        ``{"face_mesh": path, "iris": path, "licence": path}``.

    Raises:
        FommError: an exported network differs from torch beyond ``TOLERANCE``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for key, (weights, name, size, outputs) in NETWORKS.items():
        net = GraphNet.load(weights).eval()
        data = _export(net, size, outputs, half)
        if check:
            check_graph(data, net, size)
        path = out / name
        path.write_bytes(data)
        paths[key] = path
    paths["licence"] = Path(shutil.copyfile(LICENCE, out / LICENCE.name))
    return paths
