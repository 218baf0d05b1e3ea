"""Where the per-frame networks run: torch eager, ONNX Runtime or OpenVINO (``--backend``).

The per-frame work of animation is the keypoint detector on a driving frame and the generator
with the source's cached encoding (:class:`fomm.models.generator.SourceEncoding`). On a CPU the
graph backends run both faster than torch eager: they fuse batch norm and ReLU into the
convolutions and plan memory once (``benchmarks/animate.py``). The graphs are made from the same
modules when an :class:`fomm.inference.animator.Animator` is built (:mod:`fomm.runtime.graphs`;
no files shipped), so any checkpoint fomm loads runs on them; a model that does not convert
falls back to torch eager with a note. :func:`choose_runtime` decides the backend and precision:
``auto`` (the default) picks, on a CPU, OpenVINO (fp32, or bf16 islands:
:mod:`fomm.runtime.openvino`) when ``openvino`` is installed, else ONNX Runtime at fp32 when
``onnxruntime`` is, else torch eager; torch eager on GPUs. ``--backend``
(``AnimateOptions.backend``, the server's ``--backend``) names one; the environment variable
``FOMM_BACKEND`` is the default where none is named. Parity with the original code is defined on
the torch eager path (``--backend torch``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
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
from fomm.runtime.precision import resolve_precision

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Runtime:
    """Where the per-frame networks run, as :func:`choose_runtime` decided it."""

    backend: str  # torch, onnx or openvino
    precision: str  # fp32, bf16 or fp16
    asked: str  # the backend asked for: auto, or the one named (its failures are errors)

    @property
    def explicit(self) -> bool:
        """Whether a graph backend was named (a model it cannot convert is an error then)."""
        return self.asked in GRAPH_BACKENDS


def choose_runtime(backend: str | None, precision: str, device: torch.device, *,
                   flavour: str = "original", parameters: int | None = None) -> Runtime:
    """The one place that decides the backend and the precision of the per-frame networks.

    ``auto`` is, on a CPU, OpenVINO (fp32, or bf16 islands on a CPU with native bf16) where
    ``openvino`` is installed, else ONNX Runtime at fp32 where ``onnxruntime`` is and the
    precision is fp32, else torch eager; torch eager on GPUs and for PaddleGAN's flavour (its
    exported graph differs from eager by more than rounding on some inputs). The precision
    ``auto`` is decided with the backend (:func:`fomm.runtime.precision.resolve_precision`).

    Args:
        backend: ``auto``, ``torch``, ``onnx``, ``openvino``, or None for ``$FOMM_BACKEND``
            (default ``auto``).
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16``.
        device: where the networks run.
        flavour: the model's numerics, ``original`` or ``paddle``.
        parameters: the keypoint detector's and generator's parameter count (auto's precision
            on ONNX Runtime depends on it).
    Raises:
        FommError: an unknown name, or a backend named where it cannot run (GPU, a precision
            it does not run, PaddleGAN's flavour, the package missing).
    """
    asked = backend or os.environ.get(ENV) or "auto"
    if asked not in BACKENDS:
        raise FommError(f"unknown backend '{asked}' ({', '.join(BACKENDS)})")
    graphs = device.type == "cpu" and flavour != "paddle"
    openvino, onnx = graphs and openvino_available(), graphs and onnxruntime_available()
    if asked == "auto":
        # auto's precision depends on what can run it: OpenVINO runs fp32 and bf16, ONNX
        # Runtime fp32 only (then the faster of the two is picked by the networks' size)
        for_precision = "openvino" if openvino else "auto" if onnx else "torch"
        chosen = resolve_precision(precision, device, backend=for_precision,
                                   parameters=parameters)
        if openvino and chosen in ("fp32", "bf16"):
            return Runtime("openvino", chosen, asked)
        return Runtime("onnx" if onnx and chosen == "fp32" else "torch", chosen, asked)
    chosen = resolve_precision(precision, device, backend=asked, parameters=parameters)
    if asked in GRAPH_BACKENDS and flavour == "paddle":
        raise FommError(f"--backend {asked} does not run PaddleGAN's flavour (its export "
                        "differs from eager); use --backend torch")
    cpu = device.type == "cpu"
    if asked == "onnx":
        if not (cpu and chosen == "fp32"):
            raise FommError(f"--backend onnx runs on the CPU at fp32 (got {device.type}, "
                            f"{chosen}); use --backend openvino or torch")
        if not onnxruntime_available():
            raise FommError("--backend onnx needs onnxruntime: pip install 'fomm[fast]' "
                            "(or use --backend torch)")
    if asked == "openvino":
        if not (cpu and chosen in ("fp32", "bf16")):
            raise FommError(f"--backend openvino runs on the CPU at fp32 or bf16 (got "
                            f"{device.type}, {chosen}); use --backend torch")
        if not openvino_available():
            raise FommError("--backend openvino needs openvino: pip install openvino "
                            "(or use --backend torch)")
    return Runtime(asked, chosen, asked)


def onnx_graph(module: nn.Module, inputs: tuple[Tensor, ...], names: list[str],
            outputs: list[str], opset: int = OPSET) -> bytes:
    """``module`` as an ONNX graph with a dynamic batch axis, in memory."""
    buffer = io.BytesIO()
    # the source's inputs are one image broadcast over the frames: a batch axis of their own
    axes = {n: {0: "sources" if n in ("source", "features", "small") else "batch"}
            for n in names + outputs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buffer, dynamo=False, opset_version=opset,
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
        graph = LazyGraphs(kp_detector, generator, size, onnx_graph)
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
        logger.warning("%s conversion failed (%s); running torch eager", backend,
                       type(exc).__name__)
        return None
