"""Expression geometry: the driver's facial motion with the head taken out, mapped into the photo.

All functions take landmark ``points`` (N, 2) in pixels and ``groups`` (name -> index array, the
groups of :mod:`fomm.faces.mesh`). Offsets are exchanged in *face units*: x along the eye line
(image left to right), y perpendicular to it (down the face), both in eye distances, so a
driver's expression, measured on the driver, lands on a photo of any size, scale and roll::

    offset_face = R_ref^T (S(driving) - reference) / eye_ref     S: similarity, stable -> stable
    target      = P(photo + eye_photo R_photo (scale * offset_face + sliders))

where P is the result's head pose (a similarity from the photo's stable points to the result's),
as in "Bringing Portraits to Life" (Averbuch-Elor et al., SIGGRAPH Asia 2017): the motion is the
driver's, relative to its reference frame, and lands on the photo's own (possibly non-neutral)
expression. :func:`clamp` then keeps the eyelids from crossing and the lip gaps non-negative.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from fomm.expression.options import Region

Groups = Mapping[str, np.ndarray]

LIDS = ("left_eye_upper", "left_eye_lower", "right_eye_upper", "right_eye_lower")
LIPS = ("lips_outer_upper", "lips_outer_lower", "lips_inner_upper", "lips_inner_lower")
EYE_OPEN = 0.07  # eyes=+1 lifts the upper lid's middle by this (eye distances)
EYE_CLOSE = 0.25  # eyes=-1 lowers it by this: more than any lid gap, so the eye shuts
MOUTH_OPEN = 0.22  # mouth=+1 lowers the lower lip's (and the chin's) middle by this
SMILE_OUT = 0.07  # smile=+1 moves each mouth corner outward by this
SMILE_UP = 0.07  # ... and up by this
# FaceMesh under-reports eyelid motion (the iris network's centre lid gap moves 0.6-0.8x as
# much as dlib's 68-point one on the tuning clips; 1.6 brought the transferred blinks' amplitude
# and their correlation with the driver's up), and the driver's lids, halfway to the face
# network's (layer.LID_BLEND), move 0.8x as much as the iris network's alone: 1.6 / 0.8
LID_GAIN = 2.0
# The lower lid rides on the cheek under it: a smile's cheek pushes it up (the eye narrows), an
# opening jaw pulls it down. Both networks' lower lids follow the cheek only in part (on the
# tuning drivers, FaceMesh's lid gap stayed wider than dlib's 68-point one as the cheek rose);
# the driver's lower lids move this share of their cheek's motion (groups ``left_cheek`` and
# ``right_cheek``, off the eye's corners) on top of their own.
CHEEK_LID = 0.5
MIN_GAP = 0.012  # closed lids and lips keep this gap (eye distances): the warp stays regular
MEMO_SIZE = 16  # faces whose eye centres, axes and coordinates are remembered (per function)

_T = TypeVar("_T")


def _copied(value: _T) -> _T:
    if isinstance(value, np.ndarray):
        return value.copy()  # type: ignore[return-value]
    if isinstance(value, tuple):
        return tuple(_copied(v) for v in value)  # type: ignore[return-value]
    return value


def _by_content(func: Callable[[Any, Groups], _T]) -> Callable[[Any, Groups], _T]:
    """``func(points, groups)`` remembered for the last ``MEMO_SIZE`` arrays ``points`` (by
    their dtype, shape and values, with the same ``groups`` object, which is never changed in
    place): one frame asks for the same faces' axes and coordinates many times. The same
    results bit for bit, as copies (the caller may change them)."""
    entries: dict[tuple, tuple[Groups, _T]] = {}
    lock = threading.Lock()

    @functools.wraps(func)
    def remembered(points: Any, groups: Groups) -> _T:
        if not isinstance(points, np.ndarray):
            return func(points, groups)
        key = (points.dtype.str, points.shape, points.tobytes(), id(groups))
        with lock:
            hit = entries.get(key)
        if hit is None or hit[0] is not groups:  # (a cached groups object is kept alive)
            hit = (groups, func(points, groups))
            with lock:
                if len(entries) >= MEMO_SIZE:
                    del entries[next(iter(entries))]
                entries[key] = hit
        return _copied(hit[1])

    return remembered


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991), as a (2, 3) matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rot = u @ np.diag(d) @ vt
    var = (a**2).sum() / len(src)
    s = float((sig * d).sum() / var) if var > 0 else 1.0
    m = np.empty((2, 3))
    m[:, :2] = s * rot
    m[:, 2] = mu_d - s * rot @ mu_s
    return m


def transform(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, 2) through the (2, 3) affine ``m``."""
    return np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]


@_by_content
def eye_centres(points: np.ndarray, groups: Groups) -> tuple[np.ndarray, np.ndarray]:
    """The image-left and image-right eye centres (means of each eye's lid points)."""

    def centre(side: str) -> np.ndarray:
        upper, lower = groups[f"{side}_eye_upper"], groups[f"{side}_eye_lower"]
        total = points[upper].sum(0) + points[lower].sum(0)
        return total / (len(upper) + len(lower))

    return centre("left"), centre("right")


@_by_content
def face_axes(points: np.ndarray, groups: Groups) -> tuple[float, np.ndarray]:
    """The eye distance (pixels) and the face's axes: columns x (eye line, image left to right)
    and y (perpendicular, down the face), as a (2, 2) rotation."""
    left, right = eye_centres(np.asarray(points, dtype=np.float64), groups)
    v = right - left
    dist = float(np.hypot(*v))
    x = v / dist if dist > 0 else np.array([1.0, 0.0])
    return dist, np.array([[x[0], -x[1]], [x[1], x[0]]])


def expression_offsets(driving: np.ndarray, reference: np.ndarray, groups: Groups) -> np.ndarray:
    """The driver's expression since the reference frame, in face units (N, 2).

    The head's motion is taken out by a similarity fit of the driving frame's stable points onto
    the reference's; what is left, in the reference face's axes over its eye distance, is the
    expression (the eyelids' motion off their eye's corner line times ``LID_GAIN``; the lower
    lids' also ``CHEEK_LID`` times their cheek's motion, where ``groups`` has the cheeks). A pure
    similarity motion of the driver gives zeros.
    """
    stable = groups["stable"]
    m = similarity(driving[stable], reference[stable])
    moved = transform(m, driving) - reference
    dist, axes = face_axes(reference, groups)
    offsets = moved @ axes / max(dist, 1e-6)
    face = _face_coords(reference, groups)
    for side in ("left", "right"):
        # the gain is on the lids' opening and closing: their motion off the line through the
        # eye's corners (which move as they are: a whole eye's shift is no lid motion)
        lids, ends, t = _lids_along(face, groups, side)
        along = (1 - t) * offsets[ends[0]] + t * offsets[ends[1]]
        offsets[lids] = along + LID_GAIN * (offsets[lids] - along)
        cheek = groups.get(f"{side}_cheek")
        if cheek is not None and CHEEK_LID:
            # the cheek's motion down the face off its eye's corners, most at the lid's middle
            lower = groups[f"{side}_eye_lower"][1:-1]
            drop = offsets[cheek, 1].mean() - offsets[ends, 1].mean()
            offsets[lower, 1] += CHEEK_LID * drop * _lid_weight(face[lower, 0], face[ends, 0])
    return offsets


def _lids_along(
    face: np.ndarray, groups: Groups, side: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An eye's lid points (corners left out), its two corners, and each lid point's place
    along the corner line (0 at the first corner, 1 at the second; (k, 1)), in face
    coordinates ``face``."""
    upper, lower = groups[f"{side}_eye_upper"], groups[f"{side}_eye_lower"]
    ends = upper[[0, -1]]
    lids = np.unique(np.r_[upper[1:-1], lower[1:-1]])
    span = face[ends[1], 0] - face[ends[0], 0]
    t = (face[lids, 0] - face[ends[0], 0]) / span if abs(span) > 1e-9 else 0.5
    return lids, ends, np.clip(t, 0.0, 1.0)[:, None]


def without_pose(offsets: np.ndarray, points: np.ndarray, groups: Groups) -> np.ndarray:
    """Expression offsets (face units) with what a head turn or nod leaves in them taken out,
    for a head that must stay where it is (``points``: the face they land on).

    A similarity fit cannot take out a turn or a nod: the nose, the eye corners, the face's
    outline and the mouth then move against the stable points as if they were an expression.
    Kept: the brows, the lids' motion off their eye's corner line, the lips' motion about their
    mean sideways shift, and the jaw's drop below the mouth (its outline's motion down the face);
    the stable points, the nose and the eye corners stay.
    """
    out = np.asarray(offsets, dtype=np.float64).copy()
    face = _face_coords(np.asarray(points, dtype=np.float64), groups)
    for side in ("left", "right"):
        lids, ends, t = _lids_along(face, groups, side)
        out[lids] -= (1 - t) * out[ends[0]] + t * out[ends[1]]
        out[ends] = 0.0
    out[groups["stable"]] = 0.0
    out[groups["nose"]] = 0.0
    oval = groups["face_oval"]
    mouth_y = face[np.concatenate([groups[g] for g in LIPS])][:, 1].mean()
    below = np.clip((face[oval, 1] - mouth_y) / 0.3, 0.0, 1.0)  # the jaw under the mouth
    out[oval, 0] = 0.0
    out[oval, 1] *= below
    lips = np.unique(np.concatenate([groups[g] for g in LIPS]))
    out[lips, 0] -= out[lips, 0].mean()  # a mouth's expressions move it about its middle
    return out


def to_pixels(offsets: np.ndarray, points: np.ndarray, groups: Groups) -> np.ndarray:
    """Face-unit offsets (N, 2) as pixel offsets on the face of ``points``."""
    dist, axes = face_axes(points, groups)
    return offsets @ axes.T * dist


@_by_content
def _face_coords(points: np.ndarray, groups: Groups) -> np.ndarray:
    dist, axes = face_axes(points, groups)
    left, right = eye_centres(points, groups)
    return (points - (left + right) / 2) @ axes / max(dist, 1e-6)


def _lid_weight(xs: np.ndarray, ends: np.ndarray | None = None) -> np.ndarray:
    """sin(pi t) along x from the first to the last of ``ends`` (default: of ``xs``, a
    polyline's x from its first to its last point): 0 at both corners."""
    a, b = (xs[0], xs[-1]) if ends is None else (ends[0], ends[-1])
    span = b - a
    t = (xs - a) / span if abs(span) > 1e-9 else np.zeros_like(xs)
    return np.sin(np.pi * np.clip(t, 0.0, 1.0))


def slider_offsets(
    points: np.ndarray, groups: Groups, eyes: float = 0.0, mouth: float = 0.0, smile: float = 0.0
) -> np.ndarray:
    """The sliders' offsets (N, 2) in face units on the face of ``points``.

    ``eyes`` lifts (lowers) the upper lids, most at their middle; -1 shuts them (after
    :func:`clamp`). ``mouth`` lowers (raises) the lower lips and the chin below them. ``smile``
    moves the mouth corners outward and up, stretching the lips along.
    """
    face = _face_coords(np.asarray(points, dtype=np.float64), groups)
    out = np.zeros_like(face)
    if eyes:
        gain = EYE_OPEN if eyes > 0 else EYE_CLOSE
        for name in ("left_eye_upper", "right_eye_upper"):
            idx = groups[name]
            out[idx, 1] -= eyes * gain * _lid_weight(face[idx, 0])
        for name in ("left_eye_lower", "right_eye_lower"):  # the lower lid drops a little too
            idx = groups[name]
            out[idx, 1] += 0.2 * eyes * gain * _lid_weight(face[idx, 0])
    if mouth or smile:
        corners = face[groups["lips_outer_upper"][[0, -1]]]
        centre_x = corners[:, 0].mean()
        half = max(abs(corners[1, 0] - corners[0, 0]) / 2, 1e-3)
        mouth_y = face[np.concatenate([groups[g] for g in LIPS])][:, 1].mean()
    if mouth:
        for name in ("lips_inner_lower", "lips_outer_lower"):
            idx = groups[name]
            out[idx, 1] += mouth * MOUTH_OPEN * _lid_weight(face[idx, 0])
        idx = groups["lips_inner_upper"]
        out[idx, 1] -= 0.1 * mouth * MOUTH_OPEN * _lid_weight(face[idx, 0])
        oval = groups["face_oval"]
        below = np.clip((face[oval, 1] - mouth_y) / 0.4, 0.0, 1.0)  # the jaw under the mouth
        across = np.clip(1.5 - np.abs(face[oval, 0] - centre_x) / half, 0.0, 1.0)
        out[oval, 1] += mouth * MOUTH_OPEN * 0.9 * below * across
    if smile:
        lips = np.unique(np.concatenate([groups[g] for g in LIPS]))
        u = np.clip((face[lips, 0] - centre_x) / half, -1.0, 1.0)
        out[lips, 0] += smile * SMILE_OUT * u
        out[lips, 1] -= smile * SMILE_UP * u**2
    return out


def region_mask(groups: Groups, n: int, region: Region) -> np.ndarray:
    """Which of ``n`` points may move (1.0) or stay pinned (0.0) for ``region``."""
    if region in ("all", "expression", "pose"):
        return np.ones(n)
    mask = np.zeros(n)
    names = LIDS if region == "eyes" else LIPS
    for name in names:
        mask[groups[name]] = 1.0
    return mask


def _signed_gaps(
    face: np.ndarray, ref_idx: np.ndarray, mov_idx: np.ndarray, move: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the interior points of ``mov_idx``: whether they lie over the ``ref_idx`` polyline,
    its y there, and their gap to it (positive when on the right side)."""
    ref = face[ref_idx]
    order = np.argsort(ref[:, 0])
    rx, ry = ref[order, 0], ref[order, 1]
    mov = face[mov_idx[1:-1]]
    inside = (mov[:, 0] > rx[0]) & (mov[:, 0] < rx[-1])
    y_ref = np.interp(mov[:, 0], rx, ry)
    gaps = y_ref - mov[:, 1] if move == "upper" else mov[:, 1] - y_ref
    return inside, y_ref, gaps


def _clamp_pair(
    face: np.ndarray, like: np.ndarray, upper: np.ndarray, lower: np.ndarray, gap: float, move: str
) -> None:
    """Keep ``lower`` at least ``gap`` below ``upper`` (face coordinates, in place; less where
    ``like`` has less), moving the interior points of ``move`` ("upper" or "lower")."""
    ref_idx, mov_idx = (lower, upper) if move == "upper" else (upper, lower)
    inside, y_ref, gaps = _signed_gaps(face, ref_idx, mov_idx, move)
    _, _, like_gaps = _signed_gaps(like, ref_idx, mov_idx, move)
    need = np.minimum(gap, np.maximum(like_gaps, 0.0))
    fix = inside & (gaps < need)
    y = face[mov_idx[1:-1], 1]
    wanted = y_ref - need if move == "upper" else y_ref + need
    face[mov_idx[1:-1], 1] = np.where(fix, wanted, y)


def clamp(
    points: np.ndarray, groups: Groups, like: np.ndarray | None = None, gap: float = MIN_GAP
) -> np.ndarray:
    """``points`` with the upper lids kept above the lower lids and the lower lips below the upper
    ones (inner lips at least ``gap`` apart, or as far as in ``like`` where that is less; outer
    lips outside the inner ones).

    The face's axes and eye distance are those of ``like`` (default: ``points``).
    """
    points = np.asarray(points, dtype=np.float64)
    like = points if like is None else np.asarray(like, dtype=np.float64)
    dist, axes = face_axes(like, groups)
    left, right = eye_centres(like, groups)
    origin = (left + right) / 2
    face = (points - origin) @ axes / max(dist, 1e-6)
    ref = (like - origin) @ axes / max(dist, 1e-6)
    for side in ("left", "right"):
        up, low = groups[f"{side}_eye_upper"], groups[f"{side}_eye_lower"]
        _clamp_pair(face, ref, up, low, gap, "upper")
    _clamp_pair(face, ref, groups["lips_inner_upper"], groups["lips_inner_lower"], gap, "lower")
    _clamp_pair(face, ref, groups["lips_outer_upper"], groups["lips_inner_upper"], 0.0, "upper")
    _clamp_pair(face, ref, groups["lips_inner_lower"], groups["lips_outer_lower"], 0.0, "lower")
    return face * dist @ axes.T + origin


def gap(points: np.ndarray, upper: np.ndarray, lower: np.ndarray, groups: Groups) -> float:
    """Mean gap between two polylines sharing their corners (lid or lip opening), eye distances."""
    face = _face_coords(np.asarray(points, dtype=np.float64), groups)
    lo = face[lower]
    order = np.argsort(lo[:, 0])
    up = face[upper[1:-1]]
    if len(up) == 0:
        return 0.0
    return float(np.mean(np.interp(up[:, 0], lo[order, 0], lo[order, 1]) - up[:, 1]))
