"""The driving frame whose face pose best matches the source's (``--find-best-frame``).

The original's criterion (first-order-model demo.py, ``find_best_frame``): landmarks of each face
are centred on their mean and divided by the square root of their convex hull's area
(``normalize_kp``); the chosen frame has the smallest sum of squared differences to the source's.
Landmarks are dlib's 68 points when ``fomm[metrics]`` is installed (the original used the
face-alignment network's 68 points). Without it, the fallback uses MTCNN's 5 points (eyes, nose,
mouth corners): the same criterion on a coarser shape, which still tells head turn, tilt and
mouth width apart but not eye or mouth opening.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from fomm.errors import NoFaceError
from fomm.faces import landmarks as dlib_landmarks
from fomm.faces.detect import detect_faces

Points = Literal["auto", "68", "5"]


def normalize_kp(kp: np.ndarray) -> np.ndarray:
    """Centre (N, 2) landmarks on their mean and divide by the sqrt of their convex hull area."""
    kp = kp - kp.mean(axis=0, keepdims=True)
    area = ConvexHull(kp[:, :2]).volume  # in 2-D, the "volume" of a hull is its area
    return kp / np.sqrt(area)


def _normalized_landmarks(image: np.ndarray, points: Literal["68", "5"]) -> np.ndarray | None:
    faces = detect_faces(image)
    if not faces:
        return None
    face = faces[0]
    kp = dlib_landmarks.landmarks_68(image, face) if points == "68" else face.landmarks
    try:
        return normalize_kp(np.asarray(kp, dtype=np.float64))
    except (QhullError, ValueError):  # degenerate (collinear) landmarks
        return None


def best_frame_index(
    source: np.ndarray, driving_frames: Iterable[np.ndarray], points: Points = "auto"
) -> int:
    """Index of the driving frame whose normalised landmarks are closest to the source's.

    Args:
        source: uint8 (H, W, 3) RGB source image (whole or cropped: landmarks are normalised).
        driving_frames: uint8 (H, W, 3) RGB frames, consumed once, lazily.
        points: "68" (dlib, needs ``fomm[metrics]``), "5" (MTCNN), or "auto": 68 when available.

    Returns:
        0-based index into ``driving_frames``; frames without a face are never chosen.

    Raises:
        NoFaceError: no face in the source or in any driving frame.
        FommError: ``points="68"`` without the metrics extra.
    """
    if points == "auto":
        points = "68" if dlib_landmarks.available() else "5"
    if points == "68":
        dlib_landmarks.require()
    reference = _normalized_landmarks(source, points)
    if reference is None:
        raise NoFaceError("no face found in the source image to match the driving frames against")
    best, best_norm = -1, np.inf
    for index, frame in enumerate(driving_frames):
        kp = _normalized_landmarks(frame, points)
        if kp is None:
            continue
        norm = float(((reference - kp) ** 2).sum())
        if norm < best_norm:
            best, best_norm = index, norm
    if best < 0:
        raise NoFaceError(
            "no face found in any driving frame, so no best frame to choose; "
            "pass --best-frame N instead"
        )
    return best
