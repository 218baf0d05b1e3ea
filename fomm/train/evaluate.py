"""Evaluation: the paper's reconstruction protocol (L1, AKD, AED) and keypoint visualisations.

Each test video is reconstructed from its first frame with absolute keypoints (first-order-model's
``reconstruction.py``); L1 is the mean absolute pixel difference in [0, 1], averaged over all
frames of all videos as the original prints it, and per video.  AKD and AED come from
:mod:`fomm.faces.metrics` when the ``metrics`` extra is installed, otherwise they are skipped.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from fomm.checkpoints import load_checkpoint, read_checkpoint, resolve
from fomm.config import ModelConfig
from fomm.errors import FommError
from fomm.inference.animator import batched, resolve_device
from fomm.media.image import resize, to_frames, to_tensor
from fomm.models import Models

# matplotlib's gist_rainbow anchors (position, RGB), the original Visualizer's default colormap
_GIST_RAINBOW = ((0.000, (1.00, 0.00, 0.16)), (0.030, (1.00, 0.00, 0.00)),
                 (0.215, (1.00, 1.00, 0.00)), (0.400, (0.00, 1.00, 0.00)),
                 (0.586, (0.00, 1.00, 1.00)), (0.770, (0.00, 0.00, 1.00)),
                 (0.954, (1.00, 0.00, 1.00)), (1.000, (1.00, 0.00, 0.75)))


def keypoint_colours(num_kp: int) -> np.ndarray:
    """gist_rainbow at ``k / K`` per keypoint, as the original Visualizer. Returns uint8 (K, 3)."""
    xs = np.array([p for p, _ in _GIST_RAINBOW])
    rgb = np.array([c for _, c in _GIST_RAINBOW])
    t = np.arange(num_kp) / max(num_kp, 1)
    out = np.stack([np.interp(t, xs, rgb[:, c]) for c in range(3)], axis=1)
    return np.round(out * 255).astype(np.uint8)


def draw_keypoints(frame: np.ndarray, kp: np.ndarray, radius: int | None = None) -> np.ndarray:
    """Filled circles at the keypoints on a copy of ``frame``.

    Args:
        frame: uint8 (H, W, 3) RGB.
        kp: (K, 2) x, y in [-1, 1] (the whole frame).
        radius: in pixels; default 5 per 256 pixels of the shorter side (the original's kp_size).
    Returns:
        uint8 (H, W, 3).
    """
    h, w = frame.shape[:2]
    radius = radius or max(1, round(5 * min(h, w) / 256))
    out = np.ascontiguousarray(frame).copy()
    for (x, y), colour in zip(kp, keypoint_colours(len(kp)), strict=True):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        centre = (int(round((x + 1) / 2 * w)), int(round((y + 1) / 2 * h)))
        cv2.circle(out, centre, radius, tuple(int(c) for c in colour), -1, cv2.LINE_AA)
    return out


def load_for_evaluation(checkpoint: str | Path, config: str | Path | None = None
                        ) -> tuple[Models, ModelConfig]:
    """A checkpoint's networks (eval mode): ``config`` > config saved by ``fomm train`` > preset."""
    path, preset = resolve(checkpoint)  # a path, a bundled or downloaded model's name
    resolved: str | Path | ModelConfig | None = config
    if config is None:
        saved = read_checkpoint(path).extra.get("fomm_model_config")
        resolved = ModelConfig.from_dict(saved, str(path)) if isinstance(saved, dict) else preset
    models, cfg, _ = load_checkpoint(path, resolved)
    return models, cfg


# --------------------------------------------------------------------------------------------
# reconstruction


@dataclass(frozen=True)
class ReconstructOptions:
    """``fomm reconstruct``: where the model and the test videos are, what to write."""

    checkpoint: str
    data: str  # ROOT (its test/ is used) or a folder of test videos
    config: str | None = None
    out: str | None = None  # default: reconstruction/ beside the checkpoint
    size: int | None = None  # frame size; default: the model config's image_size
    device: str = "auto"
    batch_size: int = 16
    max_videos: int | None = None
    videos: bool = True  # write driving | reconstruction | keypoints videos
    face_metrics: bool = True  # AKD / AED when the metrics extra is installed
    progress: bool = True


@dataclass
class VideoScore:
    name: str
    frames: int
    l1: float  # mean over the video's frames
    akd: float | None = None  # pixels at the evaluation size
    aed: float | None = None


@dataclass
class ReconstructionReport:
    videos: list[VideoScore]
    l1: float  # mean over all frames of all videos (the original's "Reconstruction loss")
    l1_per_video: float  # mean of the per-video means
    akd: float | None
    aed: float | None
    face_metrics: str  # "computed" or why they were skipped
    out: str
    notes: list[str] = field(default_factory=list)


@torch.inference_mode()
def reconstruct_frames(models: Models, frames: Iterable[np.ndarray], device: torch.device,
                       batch_size: int = 16
                       ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """Reconstruct each frame from the first one (absolute keypoints).

    Args:
        frames: uint8 (S, S, 3) frames at the model's size.
    Yields:
        (driving uint8 (S, S, 3), prediction uint8 (S, S, 3), driving keypoints (K, 2), L1).
    """
    it = iter(frames)
    first = next(it, None)
    if first is None:
        return
    source = to_tensor(first, device)  # (1, 3, S, S)
    kp_source = models.kp_detector(source)
    encoded = models.generator.encode_source(source)
    for chunk in batched(_chain(first, it), batch_size):
        driving = to_tensor(chunk, device)  # (B, 3, S, S)
        kp_driving = models.kp_detector(driving)
        b = driving.shape[0]
        out = models.generator(source, kp_driving, kp_source.expand(b), encoded=encoded,
                               with_deformed=False)
        l1 = (out.prediction.float() - driving).abs().mean(dim=(1, 2, 3)).cpu().tolist()
        predictions = to_frames(out.prediction)
        kps = kp_driving.value.float().cpu().numpy()
        for i in range(b):
            yield chunk[i], predictions[i], kps[i], l1[i]


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def reconstruct(options: ReconstructOptions) -> ReconstructionReport:
    """Run the reconstruction protocol over a test folder; write CSV, JSON and videos.

    Returns:
        The report (also written to ``<out>/summary.json``; per video in ``<out>/scores.csv``).
    Raises:
        FommError: unreadable checkpoint, empty test folder.
    """
    from tqdm import tqdm

    from fomm.media.video import VideoWriter
    from fomm.train.data import iter_video, list_videos, split_folder, video_fps

    models, cfg = load_for_evaluation(options.checkpoint, options.config)
    device = resolve_device(options.device)
    models = Models(*(m.to(device).eval() if m is not None else None for m in models))
    size = options.size or cfg.image_size
    folder = split_folder(options.data, "test")
    items = list_videos(folder, (size, size, 3))[: options.max_videos]
    out = Path(options.out) if options.out else Path(options.checkpoint).parent / "reconstruction"
    out.mkdir(parents=True, exist_ok=True)
    metrics, why = _face_metrics() if options.face_metrics else (None, "disabled (--no-metrics)")
    scores: list[VideoScore] = []
    all_l1: list[float] = []
    notes: list[str] = []
    for item in tqdm(items, desc="reconstruct", unit="video", disable=not options.progress):
        real, fake, l1s = [], [], []
        writer = None
        try:
            if options.videos:
                writer = VideoWriter(out / "videos" / f"{Path(item.name).stem}.mp4",
                                     fps=video_fps(item))
            for driving, pred, kp, l1 in reconstruct_frames(models, iter_video(item, (size, size)),
                                                            device, options.batch_size):
                l1s.append(l1)
                if metrics is not None:
                    real.append(driving)
                    fake.append(pred)
                if writer is not None:
                    writer.write(np.concatenate([driving, pred, draw_keypoints(driving, kp)], 1))
            if writer is not None:
                writer.close()
        except FommError as exc:
            if writer is not None:
                writer.abort()
            notes.append(f"skipped {item.name}: {exc}")
            continue
        score = VideoScore(item.name, len(l1s), float(np.mean(l1s)) if l1s else math.nan)
        if metrics is not None and l1s:
            result = metrics(zip(real, fake, strict=True))
            score.akd, score.aed = _finite(result.akd.value), _finite(result.aed.value)
        scores.append(score)
        all_l1 += l1s
    if not scores:
        raise FommError(f"{folder}: no test video could be reconstructed ({'; '.join(notes)})")
    akd, aed = _mean([s.akd for s in scores]), _mean([s.aed for s in scores])
    if metrics is None:
        status = f"skipped: {why}"
    else:
        status = "computed" if akd is not None else "computed, but no face was found"
    report = ReconstructionReport(
        videos=scores, l1=float(np.mean(all_l1)),
        l1_per_video=float(np.mean([s.l1 for s in scores])), akd=akd, aed=aed,
        face_metrics=status, out=str(out), notes=notes)
    with open(out / "scores.csv", "w", newline="", encoding="utf-8") as f:
        writer_csv = csv.writer(f)
        writer_csv.writerow(["video", "frames", "l1", "akd", "aed"])
        for s in scores:
            writer_csv.writerow([s.name, s.frames, f"{s.l1:.6f}", _fmt(s.akd), _fmt(s.aed)])
    (out / "summary.json").write_text(json.dumps(asdict(report), indent=2) + "\n",
                                      encoding="utf-8")
    return report


def _face_metrics():
    try:
        from fomm.faces import metrics
        from fomm.faces.landmarks import require

        require()
    except (ImportError, FommError) as exc:
        return None, str(exc) or type(exc).__name__
    return metrics.face_metrics, ""


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


# --------------------------------------------------------------------------------------------
# keypoints video


@dataclass(frozen=True)
class KeypointsOptions:
    """``fomm keypoints``: draw a checkpoint's keypoints on every frame of a video."""

    video: str
    checkpoint: str
    output: str
    config: str | None = None
    device: str = "auto"
    batch_size: int = 16
    radius: int | None = None
    max_frames: int | None = None
    progress: bool = True


@torch.inference_mode()
def keypoints_video(options: KeypointsOptions) -> Path:
    """Detect keypoints on each frame (resized to the model size) and draw them at full size.

    Returns:
        The output path (an .mp4 with the input's audio, or a folder of PNGs ending in /).
    """
    from tqdm import tqdm

    from fomm.media.video import VideoWriter, iter_frames, probe

    models, cfg = load_for_evaluation(options.checkpoint, options.config)
    device = resolve_device(options.device)
    kp_detector = models.kp_detector.to(device).eval()
    info = probe(options.video)
    size = cfg.image_size
    frames = iter_frames(options.video, max_frames=options.max_frames)
    total = min(filter(None, (info.num_frames, options.max_frames)), default=None)
    with (VideoWriter(options.output, fps=info.fps, audio_from=options.video) as writer,
          tqdm(total=total, unit="frame", disable=not options.progress) as bar):
        for chunk in batched(frames, options.batch_size):
            batch = to_tensor([resize(f, size) for f in chunk], device)
            kp = kp_detector(batch).value.float().cpu().numpy()  # (B, K, 2)
            writer.write_many(draw_keypoints(f, k, options.radius) for f, k in zip(
                chunk, kp, strict=True))
            bar.update(len(chunk))
    return Path(options.output)
