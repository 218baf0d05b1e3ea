"""The live loop: camera → face framing → the shared animate/paste step → window, camera, file.

Only the live parts live here (capture with dropping, keypoint smoothing, keys, sinks, stats);
each frame goes through the same step as file animation: the source target of
:func:`fomm.inference.pipeline.source_target` and :meth:`fomm.inference.animator.Animator.render`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np
import torch

from fomm.config import ANIMATION_REGIONS, EXPRESSION_SCALE_RANGE, AnimateOptions
from fomm.errors import FommError, InputError
from fomm.inference.animator import Animator, resolve_device
from fomm.inference.pipeline import (
    expression_layers,
    expression_options,
    keep_head,
    source_target,
)
from fomm.live.capture import Capture, Frame
from fomm.live.framing import LiveFramer
from fomm.live.sinks import Recorder, VirtualCamera, Window
from fomm.live.smoothing import KP_MIN_CUTOFF, KeypointSmoother
from fomm.media.image import read_image
from fomm.models.motion import Keypoints
from fomm.runtime.backends import GRAPH_BACKENDS, onnxruntime_available, torch_threads
from fomm.runtime.openvino import openvino_available

if TYPE_CHECKING:
    from fomm.expression import ExpressionOptions
    from fomm.expression.layer import Observation

logger = logging.getLogger(__name__)
KEY_QUIT = {ord("q"), 27}  # q, Esc
KEY_REFERENCE = ord("r")
KEY_PAUSE = ord(" ")
# the expression layer: e on/off, 1-5 the region (fomm.config.ANIMATION_REGIONS), +/- strength
KEY_EXPRESSION = ord("e")
KEY_REGIONS = {ord(str(i + 1)): region for i, region in enumerate(ANIMATION_REGIONS)}
KEY_STRONGER = {ord("+"), ord("=")}
KEY_WEAKER = {ord("-"), ord("_")}
SCALE_STEP = 0.25
KEYS_HELP = "r reference, space pause, e expression, 1-5 region, +/- strength, q quit"
# frames drawn by the networks at the same time with overlap (each shown that many frames later)
DRAWS_IN_FLIGHT = 1
# --network-size's automatic choice (None): the largest candidate size (NETWORK_SIZE_STEPS of
# the model's) whose keypoints and generator take at most this many CPU ms a frame (one
# thread). With the expression layer on, its own work (about 30 CPU ms a frame with the face
# framing and the stitched paste) leaves the networks LAYER_NETWORK_BUDGET_MS. On the 2-core AMD
# EPYC (fp32), quiet: layer off at 192 px 23 frames/s (p95 115 ms); layer on at 192 15 frames/s
# (p95 170 ms), at 128 22 frames/s (p95 125 ms) (benchmarks/results/live-expression-cpu.json)
NETWORK_BUDGET_MS = 55.0
LAYER_NETWORK_BUDGET_MS = 35.0
NETWORK_SIZE_STEPS = (1.0, 0.75, 0.5)  # candidates: the model's size, 3/4 and 1/2 of it
PROBE_FRAMES = 3  # frames timed per candidate (after one warm-up), the median counts
# the live output's longest side (the photo scaled down at start): a 2048 px photo took 110
# CPU ms a frame to paste, lay the expression on and record (x264 veryfast), 51 at 1024
MAX_SIDE = 1024


@dataclass(frozen=True)
class LiveOptions:
    """How ``fomm live`` reads, animates and shows.

    ``camera``: index, /dev/videoN, video file or URL (a file plays at its own frame rate);
    ``window`` / ``virtual_camera`` / ``record``: where frames go (at least one);
    ``smoothing`` / ``smoothing_cutoff``: One-Euro keypoint smoothing and its cutoff at rest (Hz);
    ``detect_every``: face detection on every k-th frame; ``max_frames``: stop after this many
    camera frames; ``realtime``: False takes every frame of a file (tests, benchmarks);
    ``network_size``: run the networks at this side (px) instead of the model's own (a
    fully convolutional model runs at other sizes: 128 costs about a quarter of 256, for a
    softer face; 192 a little over half, hardly softer); None: chosen at start by
    :func:`auto_network_size` (the largest of the model's size, three quarters and half of
    it that the CPU draws fast enough live, with room for the expression layer when it is on);
    ``max_side``: the photo (and so the output) is scaled down at start to this longest side
    (px; None: its own size): pasting, showing and recording a larger frame costs CPU time a
    frame without a sharper face (the networks draw it at ``network_size``; ``--detail``
    draws it at the scaled photo's resolution);
    ``overlap``: frame the next camera frame and find its keypoints (and the expression
    layer's driving landmarks) while the generator draws this one, lay the expression on a
    drawn frame and paste it back while the next one is drawn, and show a result while the next
    one is drawn (OpenVINO or ONNX Runtime backend; one frame drawn and one finished at most, so
    latency stays bounded);
    ``animate``: model and motion options as for ``fomm animate`` (``detail`` off by default
    live: its cost grows with the photo's face box, up to the networks' own for 1024 px;
    ``precision`` ``auto`` runs on a graph backend on a CPU, see :func:`live_precision`).
    """

    camera: str = "0"
    window: bool = True
    virtual_camera: bool = False
    record: Path | None = None
    stats: Path | None = None
    smoothing: bool = True
    smoothing_cutoff: float = KP_MIN_CUTOFF
    detect_every: int = 3
    max_frames: int | None = None
    realtime: bool = True
    network_size: int | None = None
    max_side: int | None = MAX_SIDE
    overlap: bool = True
    animate: AnimateOptions = field(default_factory=lambda: AnimateOptions(detail=False))


@dataclass
class LiveStats:
    """What a live run did; ``latency_ms_*`` run from a camera frame's arrival to its result
    being shown/sent/recorded."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    fps_out: float = 0.0
    latency_ms_p50: float = 0.0
    latency_ms_p95: float = 0.0
    face_frames: int = 0  # output frames animated from a face (the rest show the still photo)
    face_percent: float = 0.0
    # this process's CPU time (all threads) from the first shown frame to the last, per frame
    # shown after the first: the steady state, without start-up
    cpu_ms_per_frame: float = 0.0
    network_size: int = 0  # the side the networks ran at (--network-size, or its choice)
    camera_fps: float = 0.0
    seconds: float = 0.0
    ended: str = ""

    def write(self, path: str | Path) -> None:
        """Save as JSON."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")


class _Sinks:
    """The chosen outputs, opened before the model loads so that a missing one fails fast."""

    def __init__(self, opts: LiveOptions) -> None:
        if not (opts.window or opts.virtual_camera or opts.record):
            raise FommError(
                "nothing to show the result on: drop --no-window, or add "
                "--record OUT.mp4 or --virtual-camera"
            )
        if opts.record is not None and Path(opts.record).suffix.lower() not in (
            ".mp4",
            ".m4v",
            ".mov",
            ".mkv",
        ):
            raise InputError(f"{opts.record}: --record needs a video file (.mp4, .mov, .mkv)")
        self.window = Window() if opts.window else None
        self.camera: VirtualCamera | None = None
        self.recorder: Recorder | None = None
        self._opts = opts

    def open(self, width: int, height: int, fps: float) -> None:
        try:
            if self._opts.virtual_camera:
                self.camera = VirtualCamera(width, height, fps)
            if self._opts.record is not None:
                self.recorder = Recorder(self._opts.record, fps)
        except BaseException:
            self.close(ok=False)
            raise

    def send(self, frame: np.ndarray, lines: list[str]) -> int:
        """Deliver a frame everywhere; the key pressed in the window (or -1)."""
        if self.camera is not None:
            self.camera.send(frame)
        if self.recorder is not None:
            self.recorder.write(frame)
        return self.window.show(frame, lines) if self.window is not None else -1

    def close(self, ok: bool = True) -> None:
        if self.window is not None:
            self.window.close()
        if self.camera is not None:
            self.camera.close()
        if self.recorder is not None:
            self.recorder.close() if ok else self.recorder.abort()


@contextlib.contextmanager
def glue_threads(animator: Animator) -> Iterator[None]:
    """torch on one thread while a graph backend runs the networks (on its own threads).

    What torch still does live is small (conversions, smoothing, motion arithmetic): with two
    OpenMP threads on a busy 2-core machine the threads wait for each other, and a 256² frame's
    conversion to uint8 took 14 CPU ms and 130 ms wall instead of 1 and 10 (load average 15).
    """
    if animator.backend not in GRAPH_BACKENDS:
        yield
        return
    with torch_threads(1):
        yield


def live_precision(precision: str, device: str = "auto") -> str:
    """The precision ``fomm live`` runs at: ``auto`` on a CPU stays ``auto`` where OpenVINO is
    installed (its bf16 islands on a CPU with native bf16, fp32 elsewhere: both on OpenVINO) and
    is fp32 where only ONNX Runtime is; otherwise ``precision`` as given (see
    :func:`fomm.runtime.precision.resolve_precision`).

    Without OpenVINO, bf16 (what ``auto`` picks for full-size networks on CPUs with native bf16)
    runs on torch eager: on the 2-core development machine as fast as ONNX Runtime at fp32 when
    nothing else ran (17.6–18.7 against 16.7–17.3 frames/s, one stage after the other) but at
    0.2–0.4 frames/s against 1.9–2.2 beside a training (its OpenMP threads wait for each other
    when a core is taken), at more CPU per frame (96–100 ms against 86–88), and without the
    overlap of :func:`run_live` (``benchmarks/live.py``).
    """
    if precision == "auto" and resolve_device(device).type == "cpu":
        if openvino_available():
            return "auto"
        if onnxruntime_available():
            return "fp32"
    return precision


def check_network_size(size: int | None) -> None:
    """``--network-size``: None or a multiple of 64 (the hourglasses halve a quarter of it four
    times); a :class:`FommError` otherwise."""
    if size is not None and size % 64:
        raise FommError(f"--network-size must be a multiple of 64 (128, 192, 256, ...), got {size}")


def live_animator(animator: Animator, opts: AnimateOptions, size: int | None = None,
                  threads: int | None = None) -> Animator:
    """``animator`` when it already runs as live asks, else one on the same networks that does:
    at :func:`live_precision` (a server's model loaded at ``auto`` → bf16 runs live at fp32),
    at the networks' side ``size`` (None: the model's) and, with ``threads``, on a graph
    backend that runs them on that many threads (always a new one then)."""
    precision = live_precision(opts.precision, opts.device)
    precision = animator.precision if precision == "auto" else precision
    size = size or animator.size
    rethread = threads is not None and animator.backend in GRAPH_BACKENDS
    if precision == animator.precision and size == animator.size and not rethread:
        return animator
    check_network_size(size)
    from fomm.models import Models

    with torch_threads(threads) if rethread else contextlib.nullcontext():
        return Animator(
            Models(animator.kp_detector, animator.generator),
            dataclasses.replace(animator.config, image_size=size),
            str(animator.device),
            precision,
            animator.runtime.asked,
        )


def network_threads() -> int:
    """The live networks' threads on a graph backend: half the CPUs this process may use (one
    on 2 cores). With overlap, the networks share the CPUs with the next frame's pose and the
    previous frame's expression layer and paste: on a busy 2-core machine one OpenVINO thread
    took 85 CPU ms a frame at 256 px where two took 150 (they wait for each other)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 2
    return max(1, cpus // 2)


def network_ms(animator: Animator, image: np.ndarray, frames: int = PROBE_FRAMES,
               threads: int = 1) -> float:
    """The networks' CPU ms a frame (keypoints of ``image`` and the generator on it as
    source), the median of ``frames`` after a warm-up: this thread's CPU time where the
    networks run on one ``threads`` (on the calling thread), the process's otherwise. CPU time
    stays steady on a shared machine, where wall time doubles."""
    clock = time.thread_time if threads == 1 else time.process_time
    source = animator.prepare_source(image)
    times = []
    for _ in range(frames + 1):
        cpu = clock()
        kp = animator.keypoints(animator.to_model_input(image))
        animator.generator_output(source, kp)
        times.append(1000 * (clock() - cpu))
    return float(np.median(times[1:]))


def network_budget_ms(opts: AnimateOptions) -> float:
    """The networks' CPU ms a frame for :func:`auto_network_size`: less with the expression
    layer on, whose own work shares the frame."""
    return LAYER_NETWORK_BUDGET_MS if opts.expression else NETWORK_BUDGET_MS


def auto_network_size(animator: Animator, opts: AnimateOptions, image: np.ndarray,
                      threads: int | None = None,
                      budget_ms: float | None = None) -> tuple[Animator, list[dict]]:
    """The live animator at the largest of the candidate sizes (``NETWORK_SIZE_STEPS`` of the
    model's size, multiples of 64, at least 64) whose networks take at most ``budget_ms`` on
    ``image`` (:func:`network_ms`), else at the smallest; and what was measured, per size
    (``size``, ``ms``); on a GPU the model's size, unmeasured. On the 2-core AMD EPYC (AVX2,
    fp32) the bundled 256 px model's networks take about 80 CPU ms a frame on one thread, 192 px
    about 45 and 128 px about 24: live runs at 192 there, at 128 with the expression layer on;
    on the 2-core Xeon with AMX (bf16) 256 px took 37.5 CPU ms on two threads
    (``benchmarks/results/live-cpu.json``).

    Args:
        animator: the loaded model.
        opts: the animation options (precision and device, as for :func:`live_animator`).
        image: a uint8 (H, W, 3) image to time the networks on (e.g. the photo: their cost
            does not depend on what it shows).
        threads: the networks' threads (as for :func:`live_animator`).
        budget_ms: the networks' budget a frame (default: :func:`network_budget_ms`).
    """
    if budget_ms is None:
        budget_ms = network_budget_ms(opts)
    sizes: list[int] = []
    for step in NETWORK_SIZE_STEPS:
        size = max(64, int(round(animator.size * step / 64)) * 64)
        if size not in sizes:
            sizes.append(size)
    if animator.device.type != "cpu":
        sizes = sizes[:1]
    measured: list[dict] = []
    chosen = animator
    for size in sizes:
        chosen = live_animator(animator, opts, size, threads)
        if len(sizes) == 1:
            break
        graph = chosen.backend in GRAPH_BACKENDS  # torch eager runs on torch's threads
        ms = network_ms(chosen, image, threads=(graph and threads) or torch.get_num_threads())
        measured.append({"size": size, "ms": round(ms, 1)})
        if ms <= budget_ms:
            break
    return chosen, measured


def fit_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """``image`` scaled down (area average) so that its longest side is at most ``max_side``;
    ``image`` itself when it is no larger or ``max_side`` is None."""
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image
    factor = max_side / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else 0.0


class Pose(NamedTuple):
    """A camera frame's motion, ready for the generator."""

    kp: Keypoints  # (1, K, ·) the frame's (smoothed) keypoints
    reference: Keypoints  # (1, K, ·) the reference pose's, as it was for this frame
    crop: np.ndarray | None = None  # uint8 (S, S, 3) the framed face (the expression's driver)
    reference_crop: np.ndarray | None = None  # the reference pose's framed face
    # the expression layer's landmarks of crop and reference_crop (None: not observed)
    observed: Observation | None = None
    reference_observed: Observation | None = None


class Drawn(NamedTuple):
    """A frame's crops as the networks drew them (or the photo's, for the expression regions
    that need no networks), before the expression layer and the paste-back."""

    crops: list[np.ndarray]  # uint8 (S, S, 3) (or the photo's detail crops), one per face
    networks: bool  # drawn by the networks (their tint is matched at the paste)
    expression: bool  # the expression layer applies


class LiveAnimator:
    """The per-frame live step: frame the face, smooth its keypoints, animate, paste back.

    Shared by ``fomm live`` and any other live front end; the animation itself is the step of file
    animation (:func:`fomm.inference.pipeline.source_target`,
    :meth:`fomm.inference.animator.Animator.render`). The
    reference pose is the first frame with a face, or the next one after :meth:`retake`.

    Args:
        animator: the loaded model.
        photo: uint8 (H, W, 3) RGB source image.
        opts: live options (smoothing, detection rate, and the animation options).
    """

    def __init__(self, animator: Animator, photo: np.ndarray, opts: LiveOptions) -> None:
        anim = opts.animate
        self.animator, self.relative, self.adapt_scale = animator, anim.relative, anim.adapt_scale
        target = source_target(photo, animator.size, anim)
        self._paste = target.paste
        details = target.details or [None] * len(target.crops)  # --detail: full-res crops
        self._sources = [
            animator.prepare_source(c, detail=d) for c, d in zip(target.crops, details)
        ]
        self.still = target.paste(list(target.crops))  # the photo as pasted, no motion
        self._target, self._anim = target, anim
        self._photos = target.details or list(target.crops)  # the expression is drawn on these
        self._layers = expression_layers(target, anim, self._note)
        keep_head(self._sources, self._layers)
        self._expression = expression_options(anim) if self._layers is not None else None
        self._layer_reference: np.ndarray | None = None  # the crop the layers' reference is
        self._reference_crop: np.ndarray | None = None
        self._reference_observed: Observation | None = None
        self._framer = LiveFramer(
            animator.size,
            detect_every=opts.detect_every,
            smoothing=opts.smoothing,
            **({} if anim.crop_margin is None else {"margin": anim.crop_margin}),
        )
        self._smoother = KeypointSmoother(opts.smoothing_cutoff) if opts.smoothing else None
        self.reference: Keypoints | None = None
        self._retake = False

    def _note(self, text: str) -> None:
        self.note = text

    note = ""  # why the expression layer is off, when it is

    @property
    def expression(self) -> ExpressionOptions | None:
        """The expression layer's settings; None when it is off."""
        return self._expression

    def set_expression(self, options: ExpressionOptions | None) -> bool:
        """Turn the expression layer off (None) or on with ``options``, from the next frame;
        False when it cannot run (no face crop, no face-mesh model, no landmarks: see
        :attr:`note`)."""
        if options is None:
            self._expression = None
            return True
        if self._layers is None:
            anim = dataclasses.replace(self._anim, expression=True)
            layers = expression_layers(self._target, anim, self._note)
            if layers is None:
                return False
            self._layers = layers
            keep_head(self._sources, layers)
        if self._expression is None:  # on again: a fresh reference and smoothing
            self._layer_reference = None
        for layer in self._layers:
            layer.options = options
        self._expression = options
        return True

    def expression_line(self) -> str:
        """The layer's state in a few words, for the preview's overlay."""
        options = self._expression
        if options is None:
            return "expression off (e)"
        return f"expression: {options.region} x{options.scale:g} (e, 1-5, +/-)"

    @property
    def needs_reference(self) -> bool:
        """Whether the next frame with a face becomes the reference pose."""
        return self.reference is None or self._retake

    def retake(self) -> None:
        """Take the reference pose again from the next frame with a face."""
        self._retake = True

    def pose(self, frame: np.ndarray, t: float) -> Pose | None:
        """The first half of a frame: face framing, keypoints, smoothing and the reference.

        Args:
            frame: uint8 (H, W, 3) RGB camera frame taken at ``t`` seconds.
        Returns:
            The pose to :meth:`render`, or None when no face is in view (show :attr:`still`).
        """
        crop = self._framer(frame, t)
        if crop is None:
            if self._smoother is not None:
                self._smoother.reset()
            return None
        kp = self.animator.keypoints(self.animator.to_model_input(crop))
        if self._smoother is not None:
            kp = self._smoother(kp, t)
        observed = self._observe(crop)
        if self.reference is None or self._retake:
            self.reference, self._retake = kp, False
            self._reference_crop, self._reference_observed = crop, observed
        return Pose(
            kp, self.reference, crop, self._reference_crop, observed, self._reference_observed
        )

    def _observe(self, crop: np.ndarray) -> Observation | None:
        """The expression layer's landmarks of a driving crop, where its options use the
        driver: the layer's work on the driving frame, done with the pose (beside the previous
        frame's render), once for all faces."""
        options, layers = self._expression, self._layers
        if options is None or not layers or options.region == "pose" or options.scale <= 0:
            return None
        return layers[0].observe(crop)

    def render(self, pose: Pose) -> np.ndarray:
        """The second half: the generator, the expression layer and the paste-back, uint8
        (H', W', 3) like :attr:`still` (:meth:`finish` of :meth:`draw`). Safe to run on another
        thread while :meth:`pose` takes the next frame."""
        return self.finish(pose, self.draw(pose))

    def draw(self, pose: Pose) -> Drawn:
        """The networks' part of :meth:`render`: the frame's crops before the expression layer.
        Safe to run on another thread while :meth:`pose` takes the next frame and
        :meth:`finish` completes the previous one."""
        options = self._expression
        expression = options is not None and self._layers is not None and pose.crop is not None
        from fomm.expression import uses_networks

        if expression and not uses_networks(options.region):  # type: ignore[union-attr]
            # the still photo's face with the expression: no networks
            return Drawn(list(self._photos), networks=False, expression=True)
        head_only = options is not None and options.region == "pose"  # the head's motion alone
        frames = self.animator.render(
            self._sources, pose.kp, pose.reference, self.relative, self.adapt_scale, head_only
        )
        return Drawn(frames[0], networks=True, expression=expression)

    def finish(self, pose: Pose, drawn: Drawn) -> np.ndarray:
        """The rest of :meth:`render`: the expression layer on the drawn crops (when it was on
        for :meth:`draw`) and the paste-back. Frames must be finished in their order (the
        layer follows them over time); safe beside :meth:`draw` of the next frame."""
        layers = self._layers
        if not drawn.expression or layers is None:
            self._target.colour_match(True)
            self._target.stitch(False)  # the motion model's frames as they are
            return self._paste(drawn.crops)
        if pose.reference_crop is not self._layer_reference:  # a new reference pose
            for layer in layers:
                layer.reset()
                layer.set_reference(pose.reference_crop, pose.reference_observed)
            self._layer_reference = pose.reference_crop
        # the photo's own pixels need no tint correction
        self._target.colour_match(drawn.networks)
        self._target.stitch(drawn.networks)  # what surrounds the head stays still
        return self._paste(
            [
                layer.apply(crop, pose.crop, observed=pose.observed)
                for layer, crop in zip(layers, drawn.crops, strict=True)
            ]
        )

    def expression_key(self, key: int) -> str | None:
        """Apply an expression key (e, 1-5, +/-); what changed in words, None for other keys."""
        current = self._expression
        if key == KEY_EXPRESSION:
            if current is not None:
                self.set_expression(None)
                return "expression off"
            if not self.set_expression(self._last_expression or expression_options(self._anim)):
                return f"expression unavailable: {self.note}"
            return self.expression_line()
        if key not in KEY_REGIONS and key not in KEY_STRONGER | KEY_WEAKER:
            return None
        if current is None:
            return "expression off: press e to turn it on"
        low, high = EXPRESSION_SCALE_RANGE
        if key in KEY_REGIONS:
            changed = dataclasses.replace(current, region=KEY_REGIONS[key])
        else:
            step = SCALE_STEP if key in KEY_STRONGER else -SCALE_STEP
            changed = dataclasses.replace(current, scale=min(high, max(low, current.scale + step)))
        self.set_expression(changed)
        return self.expression_line()

    @property
    def _last_expression(self) -> ExpressionOptions | None:
        layers = self._layers
        return layers[0].options if layers else None

    def __call__(self, frame: np.ndarray, t: float) -> np.ndarray | None:
        """The animated photo for a uint8 (H, W, 3) RGB camera frame taken at ``t`` seconds;
        None when no face is in view (show :attr:`still` then)."""
        pose = self.pose(frame, t)
        return None if pose is None else self.render(pose)


def run_live(
    photo: str | Path,
    opts: LiveOptions | None = None,
    *,
    animator: Animator | None = None,
    checkpoint: str | Path | None = None,
    model_config: str | Path | None = None,
    log: bool = True,
) -> LiveStats:
    """Animate ``photo`` live with the face seen by a camera until the stream ends or q/Esc.

    Keys in the window: ``r`` takes the current pose as the reference, space pauses, q/Esc quits;
    ``e`` turns the expression layer on or off, 1-5 pick its region (all, pose, expression,
    eyes, lips), +/- change its strength.

    Args:
        photo: the source image.
        opts: camera, outputs, smoothing and animation options.
        animator / checkpoint / model_config: the model (default: the bundled model).
        log: log what happens (camera, reference, end) as information lines
            (``fomm.live.loop``; ``fomm live`` shows them on stderr).
    Returns:
        The run's statistics (also written to ``opts.stats`` when set).
    """
    opts = opts or LiveOptions()
    anim = opts.animate
    if anim.best_frame is not None or anim.find_best_frame:
        raise FommError(
            "--best-frame/--find-best-frame do not apply live: the reference is the "
            "first frame with a face (press r to take it again)"
        )
    check_network_size(opts.network_size)
    if not Path(photo).exists():
        raise InputError(f"{photo}: source image not found")
    source_image = fit_side(read_image(photo), opts.max_side)
    capture = Capture(opts.camera, realtime=opts.realtime)  # a missing camera fails first
    ok = False
    stats = LiveStats()
    try:
        sinks = _Sinks(opts)
    except BaseException:
        capture.close()
        raise
    try:
        if animator is None:
            from fomm.checkpoints.loading import load_model

            models, config = load_model(checkpoint, config=model_config, flavour=anim.flavour)
            if opts.network_size is not None:
                config = dataclasses.replace(config, image_size=opts.network_size)
            animator = Animator(
                models, config, anim.device, live_precision(anim.precision, anim.device),
                anim.backend,
            )
        threads = network_threads()
        if opts.network_size is None:
            animator, measured = auto_network_size(animator, anim, source_image, threads)
            if log and len(measured) > 1:
                logger.info(
                    "live: networks at %d px (%s; --network-size to choose)", animator.size,
                    ", ".join(f"{m['size']} px {m['ms']:.0f} ms a frame" for m in measured))
        else:
            animator = live_animator(animator, anim, opts.network_size, threads)
        stats.network_size = animator.size
        step = LiveAnimator(animator, source_image, opts)
        still = step.still
        stats.camera_fps = round(capture.fps, 2)
        sinks.open(still.shape[1], still.shape[0], capture.fps)
        if log:
            if step.note:
                logger.info("live: note: %s", step.note)
            logger.info(
                f"live: camera {opts.camera} at {capture.fps:g} fps → "
                f"{still.shape[1]}x{still.shape[0]}; {step.expression_line()}; keys: {KEYS_HELP}"
            )
        with capture, glue_threads(animator):
            _loop(capture, step, sinks, opts, stats, log)
        ok = True
    finally:
        capture.close()
        sinks.close(ok)
        if opts.stats is not None and stats.frames_in:
            stats.write(opts.stats)
    return stats


class _Pending(NamedTuple):
    """A camera frame on its way out: its result (being rendered), or None for no face."""

    frame: Frame
    result: Future[np.ndarray] | np.ndarray | None
    new_reference: bool


class _Shower:
    """Sends results to the sinks and keeps the counts; the window's key comes back."""

    def __init__(self, step: LiveAnimator, sinks: _Sinks, stats: LiveStats, log: bool) -> None:
        self.step, self.sinks, self.stats, self.log = step, sinks, stats, log
        self.latencies: list[float] = []
        self.first_in: float | None = None
        self.last_out: float | None = None
        self.last_frame = step.still
        self.cpu: list[float] = []  # process CPU seconds at the first and the last frame shown

    def show(self, item: _Pending | None, paused: bool = False) -> int:
        """Send ``item``'s result (the still photo without a face; waiting for it to render),
        or with ``paused`` the last frame again; the key pressed (or -1)."""
        stats, out, lines = self.stats, self.last_frame, ["paused (space resumes)"]
        if item is not None:
            animated = item.result.result() if isinstance(item.result, Future) else item.result
            out, lines = self.step.still, []
            if animated is None:
                lines = ["no face"]
            else:
                out = animated
                stats.face_frames += 1
                if self.log and item.new_reference:
                    logger.info("live: reference pose taken at frame %d", item.frame.index)
        self.last_frame = out
        shown = time.perf_counter()
        if item is not None:
            stats.frames_out += 1
            self.latencies.append((shown - item.frame.time) * 1000)
            cpu = time.process_time()
            self.cpu = [self.cpu[0] if self.cpu else cpu, cpu]
        self.last_out = shown
        elapsed = max(shown - (self.first_in or shown), 1e-6)
        lat = self.latencies[-1] if self.latencies else 0.0
        return self.sinks.send(
            out,
            [f"{stats.frames_out / elapsed:.1f} fps  {lat:.0f} ms", self.step.expression_line(),
             *lines],
        )


def _finish(step: LiveAnimator, pose: Pose, drawing: Future[Drawn]) -> np.ndarray:
    """:meth:`LiveAnimator.finish` once the frame is drawn (on the finishing thread)."""
    return step.finish(pose, drawing.result())


def _loop(
    capture: Capture,
    step: LiveAnimator,
    sinks: _Sinks,
    opts: LiveOptions,
    stats: LiveStats,
    log: bool,
) -> None:
    """Read, animate and show until the stream ends or a key quits.

    With overlap, a frame goes through three threads: this one takes its pose (face framing,
    keypoints, the expression layer's driving landmarks), a second one draws it
    (:meth:`LiveAnimator.draw`: the networks), a third one finishes it
    (:meth:`LiveAnimator.finish`: the expression layer and the paste-back) while the next frame
    is drawn, and this one shows it while it takes the next pose. The next drawing starts once
    the previous one is done, so one frame is drawn and one finished at most.
    """
    overlap = opts.overlap and step.animator.backend in GRAPH_BACKENDS
    in_flight = max(1, DRAWS_IN_FLIGHT)
    renderer = (
        ThreadPoolExecutor(in_flight, thread_name_prefix="fomm-live-render") if overlap else None
    )
    finisher = ThreadPoolExecutor(1, thread_name_prefix="fomm-live-finish") if overlap else None
    drawings: deque[Future[Drawn]] = deque()  # given to the renderer, oldest first
    shower = _Shower(step, sinks, stats, log)
    paused = False
    pending: deque[_Pending] = deque()  # taken, not shown yet, oldest first
    try:  # Ctrl-C is how a headless run stops: keep the recording and the stats
        while True:
            frame = capture.read(timeout=0.5)
            if frame is None:
                if capture.ended is not None:
                    stats.ended = capture.ended
                    break
                continue
            shower.first_in = frame.time if shower.first_in is None else shower.first_in
            if paused:
                capture.drop()  # not animated: counts as dropped
                keys = [shower.show(pending.popleft()) for _ in range(len(pending))]
                keys.append(shower.show(None, paused=True))
            else:
                new_reference = step.needs_reference
                pose = step.pose(frame.image, frame.time)  # beside the previous frame's render
                if renderer is None or finisher is None:
                    result = None if pose is None else step.render(pose)
                    keys = [shower.show(_Pending(frame, result, new_reference))]
                else:
                    while len(drawings) >= in_flight or (drawings and drawings[0].done()):
                        drawings.popleft().result()  # in_flight drawings at a time
                    result = None
                    if pose is not None:
                        drawing = renderer.submit(step.draw, pose)
                        drawings.append(drawing)
                        result = finisher.submit(_finish, step, pose, drawing)
                    pending.append(_Pending(frame, result, new_reference))
                    keys = [shower.show(pending.popleft()) for _ in range(len(pending) - in_flight)]
            if any(k in KEY_QUIT for k in keys) or (
                sinks.window is not None and sinks.window.closed
            ):
                stats.ended = "quit"
                break
            if KEY_REFERENCE in keys:
                step.retake()
            if KEY_PAUSE in keys:
                paused = not paused
            for key in keys:
                said = step.expression_key(key)
                if said and log:
                    logger.info("live: %s", said)
            if opts.max_frames is not None and capture.frames_in >= opts.max_frames:
                stats.ended = f"{opts.max_frames} frames"
                break
        while pending and stats.ended != "quit":  # the last frames still rendering
            shower.show(pending.popleft())
    except KeyboardInterrupt:
        stats.ended = "interrupted"
    finally:
        for pool in (renderer, finisher):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    capture.close()
    stats.frames_in, stats.dropped = capture.frames_in, capture.dropped
    stats.dropped += len(pending)  # taken but never shown (quit or interrupted)
    first_in, last_out, latencies = shower.first_in, shower.last_out, shower.latencies
    if first_in is not None and last_out is not None:
        stats.seconds = round(last_out - first_in, 3)
        stats.fps_out = round(stats.frames_out / max(stats.seconds, 1e-6), 2)
    stats.latency_ms_p50 = _percentile(latencies, 50)
    stats.latency_ms_p95 = _percentile(latencies, 95)
    if stats.frames_out > 1 and len(shower.cpu) == 2:
        cpu = (shower.cpu[1] - shower.cpu[0]) / (stats.frames_out - 1)
        stats.cpu_ms_per_frame = round(cpu * 1000, 1)
    stats.face_percent = round(100 * stats.face_frames / max(stats.frames_out, 1), 1)
    if log:
        logger.info(
            f"live: {stats.ended}; {stats.frames_out} frames out of {stats.frames_in} in "
            f"({stats.dropped} dropped), {stats.fps_out:g} fps, latency p50 "
            f"{stats.latency_ms_p50:g} ms, p95 {stats.latency_ms_p95:g} ms, face in "
            f"{stats.face_percent:g} %"
        )
