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
from fomm.expression.eyes import OPEN_GAP

if TYPE_CHECKING:
    from fomm.faces.mesh import FaceLandmarks, FaceMesh

SCAN_FRAMES = 300  # driving frames looked at (the first ones), every SCAN_STEP-th of them
SCAN_STEP = 3
# weight of each feature in the match. The mouth's opening and the lids are matched with the
# photo's; the mouth's width with the driver's own typical (median) one, since mouth shapes differ
# between people
WEIGHTS = np.array([2.0, 1.0, 1.0, 1.0])
# the lids: the photo's, as the layer shows them (a closing lid is opened to ``OPEN_GAP`` while the
# driver's eyes are open; only to the driver's usual lids where those are narrower: a narrow-eyed
# driver's usual eyes are no squint), within this range of percentiles of the driver's own: a photo
# with wider eyes than the driver's usual ones gets a wide-eyed reference (else the driver's usual
# eyes would show as the photo's wide ones, and every wider frame saturate), but never the
# driver's blink or widest stare, since eye shapes differ between people: such a reference would
# widen (or half-close) the photo's eyes for the whole clip
LID_RANGE = (10.0, 90.0)
# ... and the head's pose: a turned or tilted head (out of the image plane, which a similarity
# fit does not take out) would pass for an expression in every frame of another pose, so the
# reference keeps the photo's pose: the stable points' misfit after a similarity fit onto the
# photo's, in eye distances, weighs this much
POSE_WEIGHT = 10.0
# ... and a reference mouth more open than the photo's weighs this much instead of WEIGHTS[0]:
# the driver's openings are measured from the reference's, and the photo's lips cannot close
# past each other, so every opening smaller than the reference's shows as the same shut mouth
# (a talking driver's closing and half-open frames alike); as much as a pose misfit of that size
MOUTH_WIDER_WEIGHT = 10.0


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


def pose_misfit(points: np.ndarray, photo: np.ndarray, groups: Mapping[str, np.ndarray]
                ) -> float:
    """RMS distance (eye distances) between the photo's stable and nose points and a frame's,
    after the similarity fit that takes the frame's in-plane motion out: out-of-plane pose."""
    keys = np.concatenate([groups["stable"], groups["nose"]])
    points, photo = np.asarray(points, np.float64), np.asarray(photo, np.float64)
    fitted = geometry.transform(geometry.similarity(points[keys], photo[keys]), points[keys])
    dist, _ = geometry.face_axes(photo, groups)
    return float(np.sqrt(np.mean(np.sum((fitted - photo[keys]) ** 2, axis=1)))) / max(dist, 1e-6)


def wanted(photo: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The reference's features, from the photo's and the scanned frames' (rows) features."""
    usual = np.median(features[:, 1:], axis=0)  # the driver's width and lids
    low, high = np.percentile(features[:, 2:], LID_RANGE, axis=0)
    lids = np.clip(np.maximum(photo[2:], np.minimum(OPEN_GAP, usual[1:])), low, high)
    return np.concatenate([photo[:1], usual[:1], lids])


def matching_frame(photo: FaceLandmarks, frames: Iterable[np.ndarray], mesh: FaceMesh,
                   limit: int = SCAN_FRAMES, step: int = SCAN_STEP
                   ) -> tuple[int, np.ndarray] | None:
    """The driving frame (index, image) whose expression is closest to the photo's: the mouth
    as open as the photo's, the lids as the photo's within the driver's usual range, the mouth's
    width as the driver's usual one, the head in the photo's pose.

    Args:
        photo: the photo face's landmarks.
        frames: the framed driving frames, in order (consumed up to ``limit``).
        mesh: the landmark detector (an untracked one).
    Returns:
        ``(index, frame)``, or None when no scanned frame shows a face.
    """
    want = expression_features(photo.points, photo.groups)
    seen: list[tuple[int, np.ndarray, np.ndarray, float]] = []
    for index, frame in enumerate(islice(frames, limit)):
        if index % step:
            continue
        found = mesh.detect(frame)
        if found is not None:
            seen.append((index, frame, expression_features(found.points, found.groups),
                         pose_misfit(found.points, photo.points, photo.groups)))
    if not seen:
        return None
    features = np.stack([f for _, _, f, _ in seen])
    want = wanted(want, features)
    distances = ((features - want) ** 2 * WEIGHTS).sum(axis=1)
    wider = np.maximum(features[:, 0] - want[0], 0.0)
    distances += (MOUTH_WIDER_WEIGHT - WEIGHTS[0]) * wider**2
    distances += POSE_WEIGHT * np.array([misfit for *_, misfit in seen]) ** 2
    index, frame, _, _ = seen[int(np.argmin(distances))]
    return index, frame
