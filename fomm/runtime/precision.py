"""Inference precision: which dtype to run at, and bf16 on the CPU with sensitive steps in fp32.

``auto`` on a CPU that computes bf16 natively (AVX512-BF16 or AMX) picks, by measurement
(:func:`resolve_precision`), bf16 on OpenVINO where it is installed (the default backend:
:mod:`fomm.runtime.openvino`), else the faster of bf16 on torch eager and fp32 on ONNX Runtime:
fp32 on ONNX Runtime for small networks such as the bundled model, bf16 for the full-size ones;
fp32 on other CPUs; GPUs keep fp32 unless asked. On the CPU, reduced precision is confined to
*islands* (on torch eager here, as bf16 layers in the graph on OpenVINO): the
convolution stacks that cost the time (the keypoint and dense-motion hourglasses, the generator's
encoder, bottleneck and decoder blocks) run under bf16 autocast and hand fp32 back, while
everything between them — heatmap softmax and keypoint/jacobian heads, jacobian inverses and
sparse motions, the dense-motion mask softmax and occlusion head, grid sampling, the output
layer — stays fp32. A plain bf16 autocast of the whole model drifts by up to 104/255 on some
pixels of the bundled model (mostly through the jacobians and the warp); the islands keep the
result within 1/255 on average of fp32.

Islands are not safe for every checkpoint (large batch-norm gains amplify bf16's rounding), so
``auto`` checks a checkpoint before it runs it in reduced precision: the
:class:`fomm.inference.animator.Animator` runs a probe both ways and keeps bf16 only within
:data:`AUTO_MEAN_BOUND` and :data:`AUTO_P99_BOUND` of fp32 (:func:`within_bound`); the verdict
is cached beside the exported graphs (:func:`cached_verdict`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fomm.errors import FommError
from fomm.runtime.graphs import cache_folder, cached

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# submodules run in reduced precision on the CPU, by attribute path (missing ones are skipped)
ISLANDS = {
    "kp_detector": ("predictor",),
    "generator": (
        "first",
        "down_blocks.*",
        "bottleneck",
        "up_blocks.*",
        "dense_motion_network.hourglass",
    ),
}

# ``auto`` on a CPU with native bf16, ONNX Runtime and no OpenVINO: below this many parameters fp32
# on ONNX Runtime, from it bf16 on torch eager. Measured side by side (benchmarks/animate.py, Intel
# Xeon with AMX, 2 threads, batch 8 as files, ms per frame): the full vox-256 networks (59.8 M, as
# every official preset) take 134 in bf16 eager against 252 on ONNX Runtime at fp32 (326 fp32
# eager): AMX does their large convolutions in bf16 at several times the fp32 rate. For the bundled
# model (1.5 M) bf16 eager is a near tie on an idle machine (27.4 against 28.7, at more CPU: 54.6
# against 52.0 ms) and far slower when other work takes a core (218 against 62: its OpenMP threads
# wait for each other), while fp32 on ONNX Runtime also stays within 1e-4 of the fp32 networks:
# small convolutions are bound by memory traffic and per-operator costs, which ONNX Runtime's fused
# graph saves and bf16 does not.
BF16_MIN_PARAMETERS = 10_000_000

# ``auto`` keeps reduced precision for a checkpoint only when a probe run both ways differs from
# fp32 by at most this much per pixel and channel, on the 0..1 scale of the frames: a mean of
# 1/255 and a 99th percentile of 8/255
AUTO_MEAN_BOUND = 1 / 255
AUTO_P99_BOUND = 8 / 255

_island_dtype: contextvars.ContextVar[torch.dtype | None] = contextvars.ContextVar(
    "fomm_island_dtype", default=None
)


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 natively: AVX512-BF16 or AMX (as oneDNN uses them)."""
    if {"avx512_bf16", "amx_bf16"} & cpu_flags():
        return True
    capability = torch.backends.cpu.get_cpu_capability()  # e.g. "AVX512", "AVX2", "DEFAULT"
    return "AMX" in capability.upper() or "BF16" in capability.upper()


def resolve_precision(
    name: str, device: torch.device, *, backend: str = "torch", parameters: int | None = None
) -> str:
    """The precision to run at: ``auto`` → bf16 or fp32 as measured fastest; checks the others.

    ``auto`` is fp32 except on a CPU with native bf16 (:func:`cpu_has_native_bf16`), where it is
    bf16 (on ``openvino``: 1.8× its fp32 on the bundled model, 4.5–4.9× on vox-256) unless ONNX
    Runtime runs the networks at fp32 faster: always when ``backend`` is ``onnx`` (it runs fp32
    only), and for ``auto`` when the networks have fewer than :data:`BF16_MIN_PARAMETERS`
    parameters (see there).

    Args:
        name: ``auto``, ``fp32``, ``fp16`` or ``bf16``.
        device: where the networks run.
        backend: the backend asked for: ``openvino`` (asked for, or ``auto`` with it
            installed), ``auto`` where ONNX Runtime is auto's choice, ``onnx``, or ``torch``
            where no graph backend can run these networks or they were turned off.
        parameters: the keypoint detector's and generator's parameters (None: unknown, taken
            as large).

    Raises:
        FommError: an unknown name, or fp16 on the CPU.
    """
    if name not in PRECISIONS:
        raise FommError(f"unknown precision '{name}' ({', '.join(PRECISIONS)})")
    if name == "auto":
        if device.type != "cpu" or backend == "onnx" or not cpu_has_native_bf16():
            return "fp32"
        small = parameters is not None and parameters < BF16_MIN_PARAMETERS
        return "fp32" if backend == "auto" and small else "bf16"
    if name == "fp16" and device.type == "cpu":
        raise FommError("--precision fp16 needs a GPU; use fp32 or bf16 on the CPU")
    return name


def _to_float(out: Any) -> Any:
    """Reduced-precision tensors (also inside tuples and lists) back to fp32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, (list, tuple)) and not hasattr(out, "_fields"):
        return type(out)(_to_float(o) for o in out)
    return out


def _island(forward: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        dtype = _island_dtype.get()
        if dtype is None:  # outside islands_enabled(): the plain fp32 module
            return forward(*args, **kwargs)
        with torch.autocast("cpu", dtype=dtype):
            return _to_float(forward(*args, **kwargs))

    run.fomm_island = True  # type: ignore[attr-defined]
    return run


def find_modules(root: nn.Module, path: str) -> list[nn.Module]:
    """The submodules of ``root`` at a dotted attribute ``path`` (``*``: every child)."""
    parts, modules = path.split("."), [root]
    for part in parts:
        found = []
        for module in modules:
            if part == "*":
                found.extend(module.children())
            elif isinstance(getattr(module, part, None), nn.Module):
                found.append(getattr(module, part))
        modules = found
    return modules


def mark_islands(kp_detector: nn.Module, generator: nn.Module) -> int:
    """Let the :data:`ISLANDS` submodules run in reduced precision inside
    :func:`islands_enabled` (outside it they are unchanged); idempotent.

    Returns:
        The number of submodules marked.
    """
    count = 0
    for name, net in (("kp_detector", kp_detector), ("generator", generator)):
        for path in ISLANDS[name]:
            for module in find_modules(net, path):
                if not getattr(module.forward, "fomm_island", False):
                    # an instance attribute: the state dict and the class stay as they are
                    module.forward = _island(module.forward)
                count += 1
    return count


@contextlib.contextmanager
def islands_enabled(dtype: torch.dtype) -> Iterator[None]:
    """Run the marked islands at ``dtype`` (CPU autocast) within this block."""
    token = _island_dtype.set(dtype)
    try:
        yield
    finally:
        _island_dtype.reset(token)


def difference(reduced: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """The mean and 99th percentile of the absolute per-pixel difference of two batches of frames
    in [0, 1] (both clamped to it first, as frames are written)."""
    diff = (reduced.float().clamp(0, 1) - reference.float().clamp(0, 1)).abs().flatten()
    return {"mean": float(diff.mean()), "p99": float(torch.quantile(diff, 0.99))}


def within_bound(verdict: dict[str, float]) -> bool:
    """Whether a :func:`difference` is within ``auto``'s bound (mean <= 1/255, p99 <= 8/255)."""
    return verdict["mean"] <= AUTO_MEAN_BOUND and verdict["p99"] <= AUTO_P99_BOUND


def _verdict_path(key: str) -> Path:
    return cache_folder("precision") / f"{key}.json"


def read_verdict(key: str) -> dict[str, float] | None:
    """The :func:`difference` cached under ``key``, or None."""
    try:
        verdict = json.loads(_verdict_path(key).read_text())
        return {"mean": float(verdict["mean"]), "p99": float(verdict["p99"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached_verdict(key: str, probe: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``probe()``'s :func:`difference`, kept in the graph cache (``cache_folder("precision")``)
    under ``key`` (:func:`fomm.runtime.graphs.model_key` of the networks and how they run)."""
    return cached(_verdict_path(key), probe, load=lambda path: json.loads(path.read_text()),
                  save=lambda verdict, to: to.write_text(json.dumps(verdict)))
