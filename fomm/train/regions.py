"""Face-region weights for the reconstruction loss (``fomm train --region-weight``).

Talking-face clips move the eyes and the mouth over a few percent of the pixels, so a loss
averaged over the whole frame barely notices when they stay still: a small model learns the head
and leaves the mouth closed. With stored 68-point landmarks (``scripts/face_landmarks.py``) each
training frame gets a map in [0, 1] that is 1 on the eyes and mouth and falls off with a Gaussian;
the map goes through the same flips, resize, crop and pair motion as the frame, and the trainer
adds an L1 term averaged under the driving frame's map (:func:`fomm.train.losses.region_l1`).
The same landmarks also let training draw *expressive pairs* (``--expressive-pairs P``): in a
talking clip most pairs of frames show the mouth in nearly the same state, so a share P of the
pairs is instead the one, of :data:`CANDIDATES` random pairs, whose mouth and eyes differ most
(:func:`expression_features`).

*Landmark guidance* (``--landmark-weight W``, as LivePortrait guides some of its implicit
keypoints): :data:`NUM_GUIDES` points (the two eye centres, or with ``--eye-guides lids`` the
middle of the two upper lids, which move the whole height of a blink; the two mouth corners, the
middle of the upper and of the lower lip) are moved with the frames through the same augmentations
(:func:`guide_points`, :func:`fomm.train.augment.geometric`) and one keypoint is tied to each
(:func:`guide_targets`, :func:`assign_guides`), so that subtle expressions move keypoints.

Not in the original recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fomm.errors import FommError

if TYPE_CHECKING:
    from fomm.train.data import Video

EYES = slice(36, 48)  # iBUG 300-W order
MOUTH = slice(48, 68)
SIGMA = 0.15  # Gaussian fall-off around each landmark, in inter-ocular distances
CANDIDATES = 8  # random pairs an expressive pair is chosen from
NUM_GUIDES = 6  # eye centres (or upper lids), mouth corners, upper and lower lip (guide_points)
EYE_GUIDES = ("centres", "lids")  # what the two eye guidance points follow


def landmarks_path(item: Video) -> Path:
    """``<frames folder>/landmarks.npy`` or ``<video file>.landmarks.npy``."""
    if item.kind == "frames":
        return item.path / "landmarks.npy"
    return item.path.with_name(item.path.name + ".landmarks.npy")


def load_landmarks(item: Video, num_frames: int) -> np.ndarray:
    """The stored (N, 68, 2) normalised landmarks of a video.

    Raises:
        FommError: the file is missing, unreadable, or does not have one row per frame.
    """
    path = landmarks_path(item)
    if not path.exists():
        raise FommError(f"{path}: no landmarks for --region-weight / --expressive-pairs "
                        "(make them with: python scripts/face_landmarks.py DATA)")
    try:
        points = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise FommError(f"{path}: not a landmark file ({exc})") from None
    if points.ndim != 3 or points.shape[1:] != (68, 2) or len(points) != num_frames:
        raise FommError(f"{path}: landmarks of shape {points.shape}, expected "
                        f"({num_frames}, 68, 2) for a video of {num_frames} frames")
    return points.astype(np.float32, copy=False)


def region_map(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Render the eyes-and-mouth weight of one frame.

    Args:
        points: (68, 2) landmarks as stored: pixel centres (x + 0.5) / width and
            (y + 0.5) / height; NaN when no face was found.
        size: (width, height) of the map.
    Returns:
        uint8 (H, W): 255 at the landmarks of the eyes and mouth, a Gaussian of
        :data:`SIGMA` inter-ocular distances around each, 0 without a face.
    """
    w, h = size
    if not np.isfinite(points).all():
        return np.zeros((h, w), np.uint8)
    xy = points * (w, h)
    eye_distance = float(np.linalg.norm(xy[36:42].mean(0) - xy[42:48].mean(0)))
    sigma = max(SIGMA * eye_distance, 0.5)
    centres = np.concatenate([xy[EYES], xy[MOUTH]])  # (32, 2)
    gx = np.exp(-((np.arange(w) + 0.5 - centres[:, :1]) ** 2) / (2 * sigma**2))  # (32, W)
    gy = np.exp(-((np.arange(h) + 0.5 - centres[:, 1:]) ** 2) / (2 * sigma**2))  # (32, H)
    heat = (gy[:, :, None] * gx[:, None, :]).max(axis=0)  # (H, W)
    return np.round(heat * 255).astype(np.uint8)


def expression_features(points: np.ndarray) -> np.ndarray:
    """Mouth opening, mouth width and eye opening of each frame, in inter-ocular distances.

    Args:
        points: (N, 68, 2) stored landmarks (NaN rows for frames without a face).
    Returns:
        float32 (N, 3); NaN rows where there was no face.
    """
    eye_distance = np.linalg.norm(points[:, 36:42].mean(1) - points[:, 42:48].mean(1), axis=1)
    lips = np.linalg.norm(points[:, 61:64] - points[:, [67, 66, 65]], axis=2).mean(1)
    width = np.linalg.norm(points[:, 54] - points[:, 48], axis=1)
    lids = np.linalg.norm(points[:, [37, 38, 43, 44]] - points[:, [41, 40, 47, 46]], axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        features = np.stack([lips, width, lids.mean(1)], axis=1) / eye_distance[:, None]
    return features.astype(np.float32)


def balance_features(features: list[np.ndarray]) -> list[np.ndarray]:
    """Expression features of several videos in units of their spread over all of them.

    A blink changes the eye opening by a fraction of what speech changes the mouth opening, so
    in raw units :func:`expressive_pair` would almost only pick pairs that differ at the mouth;
    divided by each feature's standard deviation over all frames, a blink counts as much.

    Args:
        features: (N_i, 3) arrays from :func:`expression_features`.
    Returns:
        The same arrays, each column divided by its pooled standard deviation (unchanged
        where it is not finite or about 0).
    """
    pooled = np.concatenate(features) if features else np.zeros((0, 3), np.float32)
    with np.errstate(invalid="ignore"):
        spread = np.nanstd(pooled, axis=0) if np.isfinite(pooled).any() else np.ones(3)
    spread = np.where(np.isfinite(spread) & (spread > 1e-6), spread, 1.0).astype(np.float32)
    return [f / spread for f in features]


def expressive_pair(features: np.ndarray, rng: np.random.Generator,
                    candidates: int = CANDIDATES) -> np.ndarray:
    """Sorted frame indices of the random pair whose expressions differ most (L1).

    Args:
        features: (N, 3) from :func:`expression_features`.
    Returns:
        int (2,) indices; the first candidate when no pair has faces in both frames.
    """
    pairs = np.sort(rng.choice(len(features), size=(candidates, 2), replace=True), axis=1)
    diff = np.abs(features[pairs[:, 0]] - features[pairs[:, 1]]).sum(1)
    if not np.isfinite(diff).any():
        return pairs[0]
    return pairs[int(np.nanargmax(np.where(np.isfinite(diff), diff, -1.0)))]


def guide_points(points: np.ndarray, size: tuple[int, int], eyes: str = "centres") -> np.ndarray:
    """The landmark-guidance points of frames, in pixels.

    Args:
        points: (N, 68, 2) stored landmarks (see :func:`region_map`).
        size: (width, height) of the frames.
        eyes: ``"centres"`` (mean of each eye's six landmarks) or ``"lids"`` (middle of each
            upper lid: a blink moves it by the whole lid gap, the centre by a third of it).
    Returns:
        float64 (N, 6, 2) pixel coordinates (pixel centres at integers): the two eye points,
        mouth corners, middle of the upper lip (outer and inner edge), of the lower lip; NaN
        rows where there was no face.
    """
    if eyes not in EYE_GUIDES:
        raise ValueError(f"eyes must be one of {EYE_GUIDES}, not {eyes!r}")
    xy = points.astype(np.float64) * size - 0.5
    left, right = ((xy[:, 36:42].mean(1), xy[:, 42:48].mean(1)) if eyes == "centres"
                   else (xy[:, 37:39].mean(1), xy[:, 43:45].mean(1)))
    return np.stack([left, right, xy[:, 48], xy[:, 54],
                     xy[:, [51, 62]].mean(1), xy[:, [57, 66]].mean(1)], axis=1)


def guide_targets(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Guidance points after augmentation → keypoint coordinates, in a flip-proof order.

    A horizontal flip swaps the subject's left and right, so each pair (eyes, mouth corners) is
    ordered by x on the image instead; points off the frame become NaN (no target).

    Args:
        pixels: (N, 6, 2) as :func:`guide_points` makes them, moved by the augmentations.
        size: (width, height) of the augmented frames.
    Returns:
        float32 (N, 6, 2) in the keypoints' [-1, 1] coordinates, NaN where unknown.
    """
    w, h = size
    out = pixels / (max(w - 1, 1), max(h - 1, 1)) * 2 - 1
    for a in (0, 2):  # left-right pairs: the one with the smaller x first
        swap = out[:, a, 0] > out[:, a + 1, 0]
        out[swap, a:a + 2] = out[swap, a:a + 2][:, ::-1]
    with np.errstate(invalid="ignore"):
        off = ~(np.abs(out) <= 1).all(-1)
    out[off] = np.nan
    return out.astype(np.float32)


def assign_guides(distance: np.ndarray) -> tuple[int, ...]:
    """Tie one keypoint to each guidance point: the assignment of least total distance.

    Args:
        distance: (num_guides, num_kp) mean distances of the keypoints from each point.
    Returns:
        The keypoint index of each guidance point (all different).
    """
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(distance)
    return tuple(int(c) for _, c in sorted(zip(rows, cols)))
