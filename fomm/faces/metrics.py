"""AKD and AED, the paper's face-reconstruction metrics, over pairs of frames (``fomm[metrics]``).

AKD (average keypoint distance): mean L2 distance in pixels between the 68 landmarks of a real
frame and of the generated frame. AED (average Euclidean distance): mean L2 distance between their
identity embeddings. Faces are found with MTCNN in each frame separately (the largest one); a pair
where either frame has no face is skipped and counted.

Differences from the paper: landmarks come from dlib's 68-point predictor (the paper used the
face-alignment network) and embeddings from dlib's 128-d ResNet (the paper used OpenFace), so
absolute values differ from the paper's tables; compare models with the same tool only. AKD is in
pixels of the frames given: evaluate at the model's resolution (256) to compare with the paper.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fomm.faces.detect import detect_faces
from fomm.faces.landmarks import face_embedding, landmarks_68, require


@dataclass(frozen=True)
class MetricResult:
    """A mean over the frame pairs where both frames had a face."""

    value: float  # NaN when no pair could be measured
    frames: int  # pairs measured
    skipped: int  # pairs skipped because a frame had no face

    def __str__(self) -> str:
        return f"{self.value:.4f} ({self.frames} frames, {self.skipped} skipped)"


@dataclass(frozen=True)
class FaceMetrics:
    akd: MetricResult
    aed: MetricResult


def face_metrics(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], akd: bool = True, aed: bool = True
) -> FaceMetrics:
    """AKD and AED in one pass over (real, generated) frame pairs.

    Args:
        pairs: (real, generated) uint8 (H, W, 3) RGB frames of the same size, consumed lazily.
        akd, aed: which metrics to compute (the other comes back as NaN over 0 frames).

    Returns:
        FaceMetrics with both results.

    Raises:
        FommError: the metrics extra is not installed.
    """
    require()  # fail before decoding anything when the extra is missing
    kp_dist: list[float] = []
    id_dist: list[float] = []
    skipped = 0
    for real, fake in pairs:
        real_faces, fake_faces = detect_faces(real), detect_faces(fake)
        if not real_faces or not fake_faces:
            skipped += 1
            continue
        if akd:
            a, b = landmarks_68(real, real_faces[0]), landmarks_68(fake, fake_faces[0])
            kp_dist.append(float(np.linalg.norm(a - b, axis=1).mean()))
        if aed:
            a, b = face_embedding(real, real_faces[0]), face_embedding(fake, fake_faces[0])
            id_dist.append(float(np.linalg.norm(a - b)))
    return FaceMetrics(_result(kp_dist, skipped), _result(id_dist, skipped))


def _result(values: list[float], skipped: int) -> MetricResult:
    return MetricResult(float(np.mean(values)) if values else math.nan, len(values), skipped)


def average_keypoint_distance(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> MetricResult:
    """AKD over (real, generated) frame pairs, in pixels; see :func:`face_metrics`."""
    return face_metrics(pairs, aed=False).akd


def average_euclidean_distance(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> MetricResult:
    """AED over (real, generated) frame pairs; see :func:`face_metrics`."""
    return face_metrics(pairs, akd=False).aed
