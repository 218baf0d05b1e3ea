"""The driving frame whose expression matches the photo's: the expression layer's reference.

The layer transfers the driver's expression *since its reference frame*, so the reference should
show the expression the photo has: a neutral photo is matched with the driver's most neutral
frame, a smiling photo with a smiling frame. Otherwise a clip that starts on a wide smile would
give a neutral photo nothing to do until the driver smiles wider than that, and every smaller
smile would close the photo's mouth. The head's pose is irrelevant here (the layer takes it out);
FOMM's own motion keeps its reference (the first frame or ``--best-frame``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np

from fomm.expression import geometry

if TYPE_CHECKING:
    from fomm.faces.mesh import FaceLandmarks, FaceMesh

SCAN_FRAMES = 300  # driving frames looked at (the first ones), every SCAN_STEP-th of them
SCAN_STEP = 3
# weight of each feature in the match: the mouth's opening leads (the most visible), then the
# lids (a blink in the reference would open the photo's eyes wide afterwards), then the width
WEIGHTS = np.array([2.0, 1.0, 1.0, 1.0])


def expression_features(points: np.ndarray, groups: Mapping[str, np.ndarray]) -> np.ndarray:
    """(mouth opening, mouth width, left lid gap, right lid gap), in eye distances."""
    points = np.asarray(points, dtype=np.float64)
    mouth = geometry.gap(points, groups["lips_inner_upper"], groups["lips_inner_lower"], groups)
    corners = points[groups["lips_outer_upper"][[0, -1]]]
    dist, _ = geometry.face_axes(points, groups)
    width = float(np.hypot(*(corners[1] - corners[0]))) / max(dist, 1e-6)
    lids = [geometry.gap(points, groups[f"{side}_eye_upper"], groups[f"{side}_eye_lower"], groups)
            for side in ("left", "right")]
    return np.array([mouth, width, *lids])


def matching_frame(photo: FaceLandmarks, frames: Iterable[np.ndarray], mesh: FaceMesh,
                   limit: int = SCAN_FRAMES, step: int = SCAN_STEP
                   ) -> tuple[int, np.ndarray] | None:
    """The driving frame (index, image) whose expression is closest to the photo's.

    Args:
        photo: the photo face's landmarks.
        frames: the framed driving frames, in order (consumed up to ``limit``).
        mesh: the landmark detector (an untracked one).
    Returns:
        ``(index, frame)``, or None when no scanned frame shows a face.
    """
    want = expression_features(photo.points, photo.groups)
    best: tuple[float, int, np.ndarray] | None = None
    for index, frame in enumerate(islice(frames, limit)):
        if index % step:
            continue
        found = mesh.detect(frame)
        if found is None:
            continue
        distance = float(np.sum(WEIGHTS * (expression_features(found.points, found.groups)
                                           - want) ** 2))
        if best is None or distance < best[0]:
            best = (distance, index, frame)
    return None if best is None else (best[1], best[2])
