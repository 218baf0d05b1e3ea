"""Where the per-frame networks run: torch eager, ONNX Runtime or OpenVINO (``--backend``).

The per-frame work of animation is the keypoint detector on a driving frame and the generator
with the source's cached encoding (:class:`fomm.models.generator.SourceEncoding`). On a CPU the
graph backends run both faster than torch eager: they fuse batch norm and ReLU into the
convolutions and plan memory once (``benchmarks/animate.py``). The graphs are made from the same
modules when an :class:`fomm.inference.animator.Animator` is built (:mod:`fomm.runtime.graphs`; no
files shipped),
so any checkpoint fomm loads runs on them; a model that does not convert falls back to torch
eager with a note. ``auto`` (the default) picks, on a CPU, OpenVINO (fp32, or bf16 islands:
:mod:`fomm.runtime.openvino`) when ``openvino`` is installed, else ONNX Runtime at fp32 when
``onnxruntime`` is, else torch eager; torch eager on GPUs. The environment variable
``FOMM_BACKEND`` (``torch``, ``onnx``, ``openvino``, ``auto``) overrides the default. Parity
with the original code is defined on the torch eager path (``--backend torch``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from fomm.errors import FommError
from fomm.models.generator import GeneratorOutput
from fomm.models.motion import Keypoints
from fomm.runtime.graphs import (
    GraphNetworks,
    LazyGraphs,
    cache_folder,
    cached,
    generator_feeds,
    model_key,
    to_array,
)
from fomm.runtime.openvino import OpenVinoNetworks, openvino_available

BACKENDS = ("auto", "torch", "onnx", "openvino")
GRAPH_BACKENDS = ("onnx", "openvino")  # the backends that run exported graphs
ENV = "FOMM_BACKEND"
OPSET = 17


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch's intra-op work on ``n`` threads inside the block, restoring the count after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` imports."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def auto_backend(device: torch.device, flavour: str = "original") -> str:
    """What ``auto`` asks for before the precision is known: ``openvino`` or ``onnx`` on a CPU
    where installed, ``torch`` on GPUs, for PaddleGAN's flavour (see :class:`Animator`) and
    where neither is installed."""
    if device.type != "cpu" or flavour == "paddle":
        return "torch"
    if openvino_available():
        return "openvino"
    return "onnx" if onnxruntime_available() else "torch"


def resolve_backend(name: str | None, device: torch.device, precision: str) -> str:
    """The backend to run on: ``auto`` → ``openvino`` on a CPU at fp32 or bf16 with openvino
    installed, else ``onnx`` on a CPU at fp32 with onnxruntime installed, else ``torch``.

    ``name`` None reads ``$FOMM_BACKEND`` (default ``auto``).

    Raises:
        FommError: an unknown name, or a graph backend where it cannot run (GPU, a precision
            it does not run, the package missing).
    """
    name = name or os.environ.get(ENV, "auto") or "auto"
    if name not in BACKENDS:
        raise FommError(f"unknown backend '{name}' ({', '.join(BACKENDS)})")
    cpu = device.type == "cpu"
    if name == "auto":
        if cpu and precision in ("fp32", "bf16") and openvino_available():
            return "openvino"
        return "onnx" if cpu and precision == "fp32" and onnxruntime_available() else "torch"
    if name == "onnx":
        if not (cpu and precision == "fp32"):
            raise FommError(f"--backend onnx runs on the CPU at fp32 (got {device.type}, "
                            f"{precision}); use --backend openvino or torch")
        if not onnxruntime_available():
            raise FommError("--backend onnx needs onnxruntime: pip install 'fomm[fast]' "
                            "(or use --backend torch)")
    if name == "openvino":
        if not (cpu and precision in ("fp32", "bf16")):
            raise FommError(f"--backend openvino runs on the CPU at fp32 or bf16 (got "
                            f"{device.type}, {precision}); use --backend torch")
        if not openvino_available():
            raise FommError("--backend openvino needs openvino: pip install openvino "
                            "(or use --backend torch)")
    return name


def _export(module: nn.Module, inputs: tuple[Tensor, ...], names: list[str],
            outputs: list[str]) -> bytes:
    """``module`` as an ONNX graph with a dynamic batch axis, in memory."""
    buffer = io.BytesIO()
    # the source's inputs are one image broadcast over the frames: a batch axis of their own
    axes = {n: {0: "sources" if n in ("source", "features", "small") else "batch"}
            for n in names + outputs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buffer, dynamo=False, opset_version=OPSET,
                          input_names=names, output_names=outputs, dynamic_axes=axes)
    return buffer.getvalue()


class OnnxNetworks(GraphNetworks):
    """The keypoint detector and the per-frame generator as ONNX Runtime sessions.

    Args:
        kp_detector, generator: fp32 CPU modules in ``eval()`` mode (left unchanged).
        size: the model's image size S.
        threads: intra-op threads (default: torch's).
        cache: keep the exported graphs in :func:`cache_folder`, keyed by :func:`model_key`.

    Raises:
        Exception: whatever the export raises for a model it cannot trace (callers fall back).
    """

    def __init__(self, kp_detector: nn.Module, generator: nn.Module, size: int,
                 threads: int | None = None, cache: bool = True) -> None:
        import onnxruntime as ort

        key = model_key(kp_detector, generator, extra=f"opset{OPSET} size{size}") if cache else ""
        folder = cache_folder("onnx")
        graph = LazyGraphs(kp_detector, generator, size, _export)
        if cache:
            kp_bytes = cached(folder / f"{key}-kp.onnx", lambda: graph("kp"))
            gen_bytes = cached(folder / f"{key}-generator.onnx", lambda: graph("generator"))
        else:
            kp_bytes, gen_bytes = graph("kp"), graph("generator")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle threads sleep instead of spinning: on a 2-core machine shared with the capture,
        # the detector and torch, spinning measured 25 % more CPU per frame and slower frames
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        self._kp = ort.InferenceSession(kp_bytes, options, providers=providers)
        self._gen = ort.InferenceSession(gen_bytes, options, providers=providers)
        self.outputs = tuple(o.name for o in self._gen.get_outputs())
        self._inputs = {i.name for i in self._gen.get_inputs()}  # unused ones are pruned

    def keypoints(self, images: Tensor) -> Keypoints:
        """Keypoints of (B, 3, S, S) float32 images, as the torch detector returns them."""
        out = self._kp.run(None, {"image": to_array(images)})
        return Keypoints(*(torch.from_numpy(a) for a in out))

    def generate(self, source: dict[str, Any], kp_driving: Keypoints,
                 kp_source: Keypoints) -> GeneratorOutput:
        """The generator for B driving frames; ``kp_source`` is (1, K, ·) or (B, K, ·)."""
        feeds = {name: to_array(value) for name, value in
                 generator_feeds(source, kp_driving, kp_source).items()
                 if name in self._inputs}  # unused inputs were pruned from the graph
        out = self._gen.run(list(self.outputs), feeds)
        return GeneratorOutput(**{n: torch.from_numpy(a) for n, a in zip(self.outputs, out)})


def build_networks(backend: str, kp_detector: nn.Module, generator: nn.Module, size: int,
                   precision: str, explicit: bool) -> OnnxNetworks | OpenVinoNetworks | None:
    """The networks on a graph ``backend`` (``onnx``, ``openvino``), or None (with a note)
    where the model does not convert and the backend was ``auto``; an explicit request raises
    instead."""
    try:
        if backend == "openvino":
            return OpenVinoNetworks(kp_detector, generator, size, precision)
        return OnnxNetworks(kp_detector, generator, size)
    except Exception as exc:  # an exporter failure on an unusual model: eager still works
        if explicit:
            raise FommError(f"--backend {backend}: this model did not convert ({exc}); "
                            "use --backend torch") from exc
        print(f"note: {backend} conversion failed ({type(exc).__name__}); running torch eager",
              file=sys.stderr)
        return None
