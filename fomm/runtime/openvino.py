"""The per-frame networks compiled by OpenVINO for the CPU (``--backend openvino``).

OpenVINO's CPU plugin fuses each convolution with its batch norm and ReLU, plans memory once and
runs convolutions on oneDNN's kernels, AMX included: at fp32 it ran the bundled model's networks
1.4× faster than ONNX Runtime on the development machine (``benchmarks/animate.py``).

At bf16 the graph is converted from the modules with only the *islands* of
:mod:`fomm.runtime.precision` (the convolution stacks) and the generator's output head in bf16:
each is
cast to bf16 on the way in and back to fp32 on the way out, its weights stored in bf16, so
OpenVINO runs exactly those in bf16 and keeps heatmaps, softmaxes, jacobians, sparse motions,
grid sampling and the dense-motion heads at fp32 (compiled with an fp32 inference precision;
OpenVINO's own bf16 mode would round everything, 10/255 at p99 on the bundled model). The
output head reads the decoder's bf16 features and adds up in fp32 (AMX), so keeping it fp32
bought nothing: 0.14 against 0.14/255 mean and 1/255 at p99 from the fp32 graph for a 4 ms
smaller frame.

Graphs are converted from the same modules on first use (seconds; no files shipped), saved as
OpenVINO IR under :func:`fomm.runtime.graphs.cache_folder` ``("openvino")`` keyed by weights, code
and
precision, and compiled for this CPU each time (about a second).
"""

from __future__ import annotations

import copy
import threading
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

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
from fomm.runtime.precision import ISLANDS, find_modules

# the generator's output head runs in bf16 as well (after export_generator merged final and
# blend into shared_head.conv where both exist; "final" alone otherwise)
OUTPUT_HEADS = ("shared_head.conv", "final")


def openvino_available() -> bool:
    """Whether ``openvino`` imports."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class _Bf16(nn.Module):
    """``module`` in bf16 between casts: fp32 in, fp32 out (for conversion only)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.to(torch.bfloat16)

    def forward(self, x: Tensor) -> Any:
        out = self.module(x.to(torch.bfloat16))
        if isinstance(out, (list, tuple)):
            return type(out)(o.float() for o in out)
        return out.float()


def _wrap(root: nn.Module, path: str) -> int:
    """Wrap the submodules at attribute ``path`` of ``root`` in :class:`_Bf16`; how many."""
    parent_path, _, name = path.rpartition(".")
    parents = find_modules(root, parent_path) if parent_path else [root]
    count = 0
    for parent in parents:
        names = [n for n, _ in parent.named_children()] if name == "*" else [name]
        for child_name in names:
            child = getattr(parent, child_name, None)
            if isinstance(child, nn.Module) and not isinstance(child, _Bf16) and any(
                    True for _ in child.parameters()):
                setattr(parent, child_name, _Bf16(child))
                count += 1
    return count


def bf16_islands(kp_detector: nn.Module, generator: nn.Module) -> tuple[nn.Module, nn.Module]:
    """Copies of export-ready networks with the islands and the output head in bf16."""
    kp_detector, generator = copy.deepcopy(kp_detector), copy.deepcopy(generator)
    for path in ISLANDS["kp_detector"]:
        _wrap(kp_detector, path)
    for path in ISLANDS["generator"]:
        _wrap(generator, path)
    for path in OUTPUT_HEADS:
        if _wrap(generator, path):
            break
    return kp_detector, generator


def _convert(module: nn.Module, inputs: tuple[Tensor, ...], names: list[str],
             outputs: list[str]) -> Any:
    """``module`` as an OpenVINO model with named tensors and a dynamic batch axis."""
    import openvino as ov

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        model = ov.convert_model(module.eval(), example_input=inputs, share_weights=False)
    if len(model.inputs) != len(names) or len(model.outputs) != len(outputs):
        raise RuntimeError(f"converted graph has {len(model.inputs)} inputs and "
                           f"{len(model.outputs)} outputs, not {len(names)} and {len(outputs)}")
    shapes = {}
    for port, name, tensor in zip(model.inputs, names, inputs, strict=True):
        port.get_tensor().set_names({name})
        shapes[name] = ov.PartialShape([-1, *tensor.shape[1:]])
    for port, name in zip(model.outputs, outputs, strict=True):
        port.get_tensor().set_names({name})
    model.reshape(shapes)
    return model


class OpenVinoNetworks(GraphNetworks):
    """The keypoint detector and the per-frame generator compiled by OpenVINO for the CPU.

    Same interface as :class:`fomm.runtime.backends.OnnxNetworks`.

    Args:
        kp_detector, generator: fp32 CPU modules in ``eval()`` mode (left unchanged).
        size: the model's image size S.
        precision: ``fp32``, or ``bf16`` for the islands and output head in bf16.
        threads: inference threads (default: torch's).
        cache: keep the converted graphs in ``cache_folder("openvino")``.

    Raises:
        Exception: whatever the conversion raises for a model it cannot trace (callers fall
            back).
    """

    def __init__(self, kp_detector: nn.Module, generator: nn.Module, size: int,
                 precision: str = "fp32", threads: int | None = None,
                 cache: bool = True) -> None:
        import openvino as ov

        core = ov.Core()
        graph = LazyGraphs(kp_detector, generator, size, _convert,
                           bf16_islands if precision == "bf16" else None)
        if cache:
            key = model_key(kp_detector, generator,
                            extra=f"openvino{ov.__version__} size{size} {precision}")
            folder = cache_folder("openvino")

            def load(path: Path) -> Any:
                return core.read_model(str(path))

            def save(model: Any, to: Path) -> None:
                ov.save_model(model, str(to), compress_to_fp16=False)

            kp_model = cached(folder / f"{key}-kp.xml", lambda: graph("kp"), load, save,
                              companions=(".bin",))
            gen_model = cached(folder / f"{key}-generator.xml", lambda: graph("generator"),
                               load, save, companions=(".bin",))
        else:
            kp_model, gen_model = graph("kp"), graph("generator")
        config = {
            # fp32 outside the islands: the graph itself says what runs in bf16
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": str(threads or torch.get_num_threads()),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._kp = core.compile_model(kp_model, "CPU", config)
        self._gen = core.compile_model(gen_model, "CPU", config)
        self._inputs = [i.get_any_name() for i in self._gen.inputs]
        self._local = threading.local()  # a request is not shared between threads

    def _request(self, name: str) -> Any:
        request = getattr(self._local, name, None)
        if request is None:
            request = (self._kp if name == "kp" else self._gen).create_infer_request()
            setattr(self._local, name, request)
        return request

    def keypoints(self, images: Tensor) -> Keypoints:
        """Keypoints of (B, 3, S, S) float32 images, as the torch detector returns them."""
        out = self._request("kp").infer([to_array(images)], share_outputs=False)
        return Keypoints(*(torch.from_numpy(out[port]) for port in self._kp.outputs))

    def generate(self, source: dict[str, Any], kp_driving: Keypoints,
                 kp_source: Keypoints) -> GeneratorOutput:
        """The generator for B driving frames; ``kp_source`` is (1, K, ·) or (B, K, ·)."""
        feeds = generator_feeds(source, kp_driving, kp_source)
        out = self._request("gen").infer({n: to_array(feeds[n]) for n in self._inputs},
                                      share_outputs=False)
        return GeneratorOutput(**{port.get_any_name(): torch.from_numpy(out[port])
                                  for port in self._gen.outputs})
