"""Animator: the source is encoded once, driving frames go through the networks in batches.

Implements the original demo's ``make_animation`` semantics (relative / absolute motion,
adapt-scale, a chosen reference frame) on streams of frames, with device and precision chosen once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch
from torch import Tensor

from fomm.config import ModelConfig
from fomm.errors import FommError
from fomm.media.image import resize, to_frames, to_tensor
from fomm.models import Models, motion
from fomm.models.generator import GeneratorOutput, SourceEncoding
from fomm.models.motion import Keypoints
from fomm.runtime.backends import GRAPH_BACKENDS, Runtime, build_networks, choose_runtime
from fomm.runtime.graphs import GraphNetworks, model_key
from fomm.runtime.precision import DTYPES as _DTYPES
from fomm.runtime.precision import (
    cached_verdict,
    difference,
    islands_enabled,
    mark_islands,
    read_verdict,
    within_bound,
)

logger = logging.getLogger(__name__)
PROBE_VERSION = 2  # bump when probe_frames or the comparison changes (part of the cache key)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` → cuda, then mps, then cpu; an unavailable explicit device is a FommError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FommError("--device cuda requested but no CUDA GPU is available (use --device cpu)")
    if name == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise FommError("--device mps requested but MPS is not available (use --device cpu)")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise FommError(f"unknown device '{name}' (auto, cpu, cuda, cuda:N or mps)")
    return torch.device(name)


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def probe_frames(size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """What ``auto`` checks a checkpoint's reduced precision on: the face of scikit-image's
    astronaut portrait framed as the face models' training data (a 172-pixel square) at
    ``size``, and four driving frames of small head motion made from it (itself, the frame moved
    right, moved down and zoomed in)."""
    from skimage.data import astronaut

    photo = astronaut()  # (512, 512, 3)
    x, y, side = 140, 24, 172  # (fomm.faces.crop.square_box of its detected face)
    windows = [(x, y, side), (x - 10, y, side), (x, y - 10, side), (x + 8, y + 8, side - 16)]
    frames = [resize(np.ascontiguousarray(photo[top:top + s, left:left + s]), size)
              for left, top, s in windows]
    return frames[0], frames


@dataclass
class Source:
    """A source image prepared for animation: its tensor, keypoints and generator encoding."""

    image: Tensor  # (1, C, S, S) on the device
    kp: Keypoints  # (1, K, ·)
    encoding: SourceEncoding
    detail: Tensor | None = None  # (1, C, R, R) the source at the output resolution (--detail)
    arrays: dict | None = None  # the source's generator inputs for the ONNX backend, made once
    # head-only motion: per keypoint (K,), how much of its own small motion it keeps (None: all
    # within HEAD_KEEP; fomm.models.motion.head_motion's ``kept``)
    head_keep: Tensor | None = None


class Animator:
    """Animate source images with driving frames using one loaded model.

    Example:
        >>> animator = Animator(models, config)
        >>> source = animator.prepare_source(read_image("face.png"))
        >>> frames = animator.animate(source, iter_frames("driving.mp4"))
    """

    def __init__(self, models: Models, config: ModelConfig, device: str = "auto",
                 precision: str = "auto", backend: str | None = None) -> None:
        """Put the networks on ``device`` and decide once how they run.

        Args:
            models, config: from :func:`fomm.load_model`.
            device: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda[:N]`` or ``mps``.
            precision: ``auto`` (fp32, or bf16 islands on a CPU with native bf16 where a probe
                of this checkpoint stays within 1/255 of fp32 on average), ``fp32``, ``bf16``
                or ``fp16`` (GPU).
            backend: ``auto``, ``torch``, ``onnx`` or ``openvino``; None reads
                ``$FOMM_BACKEND`` (default ``auto``). See
                :func:`fomm.runtime.backends.choose_runtime`.
        """
        self.device = resolve_device(device)
        self.config = config
        self.size = config.image_size
        # channels-last convolutions are ~25 % faster on CPUs (oneDNN) and on tensor cores
        self.memory_format = torch.channels_last
        self.kp_detector = models.kp_detector.to(self.device, memory_format=self.memory_format)
        self.generator = models.generator.to(self.device, memory_format=self.memory_format)
        self.kp_detector.eval()
        self.generator.eval()
        # several faces of a photo in one generator call (multi-person): on a GPU, where a call's
        # fixed cost is large; on a CPU one call per face measured faster (benchmarks/multi_person)
        self.batch_faces = self.device.type != "cpu"
        parameters = sum(p.numel() for m in models[:2] for p in m.parameters())

        def choose(asked_precision: str) -> Runtime:
            return choose_runtime(backend, asked_precision, self.device, flavour=config.flavour,
                                  parameters=parameters)

        runtime = choose(precision)
        if precision == "auto" and runtime.precision != "fp32":
            # checked before it is used: a verdict cached earlier decides before any graph is made
            key = model_key(self.kp_detector, self.generator, extra=(
                f"auto-check{PROBE_VERSION} {runtime.backend} {runtime.precision} "
                f"size{self.size}"))
            verdict = read_verdict(key)
            if verdict is None:
                self._run_on(runtime)
                verdict = cached_verdict(key, self._probe)
            if not within_bound(verdict):
                logger.warning("precision auto: this model in %s differs from fp32 by %.1f/255 "
                               "on average, %.1f/255 at p99 (bound 1/255, 8/255): running fp32",
                               runtime.precision, verdict["mean"] * 255, verdict["p99"] * 255)
                runtime = choose("fp32")
        if getattr(self, "runtime", None) != runtime:
            self._run_on(runtime)

    def _run_on(self, runtime: Runtime) -> None:
        """Set up the networks to run as ``runtime`` says (backend graphs, precision islands)."""
        self.runtime = runtime
        self.precision = runtime.precision
        self.dtype = _DTYPES[self.precision]
        # on the CPU only the convolution stacks run in bf16; sensitive steps stay fp32
        self._islands = self.device.type == "cpu" and self.dtype is not torch.float32
        if self._islands:  # (the graph backends convert plain copies: fomm.runtime.graphs)
            mark_islands(self.kp_detector, self.generator)
        self._graphs: GraphNetworks | None = None
        if runtime.backend in GRAPH_BACKENDS:  # None: the model did not convert (a note)
            self._graphs = build_networks(runtime.backend, self.kp_detector, self.generator,
                                          self.size, self.precision, runtime.explicit)
        self.backend = "torch" if self._graphs is None else runtime.backend

    def _probe(self) -> dict[str, float]:
        """:func:`fomm.runtime.precision.difference` of this animator's frames and fp32 torch
        eager's on :func:`probe_frames`."""
        from fomm.models import Models

        reference = Animator(Models(self.kp_detector, self.generator), self.config,
                             str(self.device), "fp32", "torch")
        source_image, driving = probe_frames(self.size)
        results = []
        for animator in (self, reference):
            source = animator.prepare_source(source_image)
            kp_driving = animator.keypoints(animator.to_model_input(driving))
            kp_norm = motion.normalize_kp(source.kp, kp_driving, kp_driving.select(slice(0, 1)),
                                          relative=True)[0]
            results.append(animator.generate(source, kp_norm))
        return difference(*results)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is torch.float32:
            return contextlib.nullcontext()
        if self._islands:
            return islands_enabled(self.dtype)
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_model_input(self, frames: np.ndarray | list[np.ndarray]) -> Tensor:
        """uint8 frames (any size) → (B, 3, S, S) float32 on the device, resized to the model."""
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = [frames]
        resized = [f if f.shape[:2] == (self.size, self.size) else resize(f, self.size)
                   for f in frames]
        tensor = to_tensor(np.stack(resized)).to(self.device)
        return tensor.contiguous(memory_format=self.memory_format)

    @torch.inference_mode()
    def keypoints(self, images: Tensor) -> Keypoints:
        """Keypoints of (B, 3, S, S) images, float32."""
        if self._graphs is not None:
            return self._graphs.keypoints(images)
        with self._autocast():
            kp = self.kp_detector(images)
        return kp.to(torch.float32)

    @torch.inference_mode()
    def prepare_source(self, image: np.ndarray | Tensor,
                       detail: np.ndarray | None = None) -> Source:
        """Encode a source once: uint8 (H, W, 3) (resized to the model) or a (1, 3, S, S) tensor.

        ``detail``: the same crop as uint8 (R, R, 3) at the output resolution; results then come
        at R × R with the photo's detail moved by the dense motion (:mod:`fomm.render.detail`).
        """
        tensor = image.to(self.device) if isinstance(image, Tensor) else self.to_model_input(image)
        with self._autocast():
            encoding = self.generator.encode_source(tensor)
        high = None if detail is None else to_tensor(detail).to(self.device)
        arrays = None if self._graphs is None else self._graphs.source_arrays(tensor, encoding)
        return Source(tensor, self.keypoints(tensor), encoding, high, arrays)

    @torch.inference_mode()
    def generator_output(self, source: Source, kp_driving: Keypoints) -> GeneratorOutput:
        """The generator's output for a batch of B driving keypoints, on this backend (the
        prediction, dense motion and masks that :mod:`fomm.render.detail` uses)."""
        if self._graphs is not None:
            if source.arrays is None:
                source.arrays = self._graphs.source_arrays(source.image, source.encoding)
            return self._graphs.generate(source.arrays, kp_driving, source.kp)
        bs = kp_driving.value.shape[0]
        with self._autocast():
            return self.generator(source.image, kp_driving, source.kp.expand(bs),
                                  encoded=source.encoding, with_deformed=False)

    @torch.inference_mode()
    def generate(self, source: Source, kp_driving: Keypoints) -> Tensor:
        """Frames for a batch of driving keypoints: (B, 3, S, S) float32 in [0, 1], or
        (B, 3, R, R) when the source has ``detail``."""
        out = self.generator_output(source, kp_driving)
        if source.detail is not None:
            from fomm.render.detail import render_batched

            return render_batched(self.generator, out, source.detail)
        return out.prediction.float()

    def animate(self, source: Source, driving: Iterable[np.ndarray], relative: bool = True,
                adapt_scale: bool = False, reference: np.ndarray | None = None,
                batch_size: int = 8, head_only: bool = False) -> Iterator[np.ndarray]:
        """Yield one uint8 (S, S, 3) result per driving frame, in order, streaming.

        Args:
            source: from :meth:`prepare_source`.
            driving: uint8 (H, W, 3) frames; resized to the model size.
            relative: motion relative to ``reference`` (default: the first driving frame).
            adapt_scale: scale relative motion by the keypoint hull areas.
            reference: the driving frame the source's pose corresponds to (``--best-frame``).
                Animating forward and backward from it and joining, as the original demo does,
                equals using it as the reference for every frame.
            batch_size: driving frames per network call; results do not depend on it.
            head_only: move the source by the driver's head motion alone, its expression left
                out (``--animation-region pose``: :func:`fomm.models.motion.head_motion`).
        """
        for frames in self.animate_many([source], driving, relative, adapt_scale, reference,
                                        batch_size, head_only):
            yield frames[0]

    def animate_many(self, sources: list[Source], driving: Iterable[np.ndarray],
                     relative: bool = True, adapt_scale: bool = False,
                     reference: np.ndarray | None = None, batch_size: int = 8,
                     head_only: bool = False) -> Iterator[list[np.ndarray]]:
        """Like :meth:`animate` for several sources driven by the same frames (multi-person).

        Yields:
            For each driving frame, one uint8 (S, S, 3) result per source.
        """
        if batch_size < 1:
            raise FommError(f"--batch-size must be at least 1, got {batch_size}")
        kp_initial: Keypoints | None = None
        if reference is not None:
            kp_initial = self.keypoints(self.to_model_input(reference))
        for chunk in batched(driving, batch_size):
            kp_driving = self.keypoints(self.to_model_input(chunk))
            if kp_initial is None:
                kp_initial = kp_driving.select(slice(0, 1))
            yield from self.render(sources, kp_driving, kp_initial, relative, adapt_scale,
                                   head_only)

    def render(self, sources: list[Source], kp_driving: Keypoints, kp_initial: Keypoints,
               relative: bool = True, adapt_scale: bool = False,
               head_only: bool = False) -> list[list[np.ndarray]]:
        """Frames for a batch of driving keypoints: the step shared by files and ``fomm live``.

        Args:
            sources: from :meth:`prepare_source`.
            kp_driving: (B, K, ·) keypoints of B driving frames, from :meth:`keypoints`.
            kp_initial: (1, K, ·) keypoints of the reference driving frame.
            head_only: the driver's head motion alone (see :meth:`animate`; each source's
                ``head_keep``).
        Returns:
            For each of the B driving frames, one uint8 (S, S, 3) result per source.
        """
        kp_norms = [motion.normalize_kp(source.kp, kp_driving, kp_initial, relative=relative,
                                        adapt_scale=adapt_scale, head_only=head_only,
                                        head_keep=source.head_keep)[0]
                    for source in sources]
        if len(sources) > 1 and self.batch_faces:
            results = self._generate_faces(sources, kp_norms)
        else:
            results = [self.generate(s, kp) for s, kp in zip(sources, kp_norms, strict=True)]
        per_source = [to_frames(result.cpu()) for result in results]
        return [list(frames) for frames in zip(*per_source)]

    @torch.inference_mode()
    def _generate_faces(self, sources: list[Source], kp_norms: list[Keypoints]) -> list[Tensor]:
        """:meth:`generate` for N sources (faces) and B driving frames in one generator call of
        N·B: the same numbers as N calls, with the per-call overhead paid once (multi-person).

        Returns:
            One (B, 3, ·, ·) float32 tensor per source, as :meth:`generate` returns it.
        """
        b = kp_norms[0].value.shape[0]
        image = torch.cat([s.image.expand(b, -1, -1, -1) for s in sources])  # (N·B, C, S, S)
        encoded = SourceEncoding(*(  # (N·B, ·) for each cached tensor
            torch.cat([getattr(s.encoding, f).expand(b, -1, -1, -1) for s in sources])
            for f in SourceEncoding._fields))
        kp_source = Keypoints.cat([s.kp.expand(b) for s in sources])
        with self._autocast():
            out = self.generator(image, Keypoints.cat(kp_norms), kp_source, encoded=encoded,
                                 with_deformed=False)
        results = []
        for i, source in enumerate(sources):
            part = slice(i * b, (i + 1) * b)
            if getattr(source, "detail", None) is not None:  # --detail: photo-resolution render
                from fomm.render.detail import render_batched

                results.append(render_batched(self.generator, type(out)(*(
                    None if field is None else field[part] for field in out)), source.detail))
            else:
                results.append(out.prediction[part].float())
        return results
