"""The mouth's interior where a warp opens a mouth wider than the frame shows it.

A warp can stretch a closed mouth open, but it has no teeth to show: it smears the lips. Where
the target opening is wider than the frame's own, the area inside the target inner-lip contour is
filled with the interior of another mouth (the driver's, or the photo's own when the photo's
expression is kept): the region inside its inner-lip contour, mapped onto the target contour by a
thin-plate spline, colour-matched to the frame's face (its brightness per channel with the
area around the mouth, its chroma with the frame's lips and the skin around them: a
black-and-white photo gets grey teeth, a colour photo its own lips' tint) and feathered into
the lips.
:func:`paste_mouth` lays a whole mouth (lips and interior) of another image on a frame the same
way: the photo's own where its expression is kept on a FOMM result that opened its mouth.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from fomm.expression.colour import masked_chroma_stats, tinted
from fomm.expression.geometry import face_axes
from fomm.expression.warp import thin_plate

MIN_OPEN = 0.03  # no fill below this inner-lip opening (eye distances) ...
FULL_OPEN = 0.06  # ... full fill from this one up
FEATHER = 0.02  # edge softness of the filled area (eye distances)
FILL_GRID = 16  # the spline is evaluated on at most this many points a side
CAVITY = 0.3  # a mouth's dark inside, as a share of its lips' colour
PASTE_MARGIN = 0.12  # a pasted mouth covers the outer lips grown by this (eye distances)
PASTE_RINGS = (0.12, 0.3)  # ... mapped through the outer lips grown by these


def inner_contour(points: np.ndarray, groups: Mapping[str, np.ndarray]) -> np.ndarray:
    """The closed inner-lip contour (M, 2): the upper inner lip, then the lower one back."""
    upper = groups["lips_inner_upper"]
    lower = groups["lips_inner_lower"]
    return np.asarray(points, dtype=np.float64)[np.concatenate([upper, lower[::-1][1:-1]])]


def fill_strength(target_gap: float, frame_gap: float) -> float:
    """How much to fill, 0..1: the target mouth is open and wider than the frame's own.

    Args:
        target_gap: the target's mean inner-lip gap (eye distances).
        frame_gap: the frame's own gap before the warp.
    """
    if target_gap <= MIN_OPEN:
        return 0.0
    opened = min(1.0, (target_gap - MIN_OPEN) / (FULL_OPEN - MIN_OPEN))
    wider = float(np.clip(2.0 * (1.0 - max(frame_gap, 0.0) / target_gap), 0.0, 1.0))
    return opened * wider


def source_share(target_gap: float, source_gap: float) -> float:
    """How much of the fill comes from the source mouth rather than a plain dark cavity, 0..1:
    a source mouth much narrower than the target (a slider opening a closed mouth) would show
    its lips, stretched."""
    if target_gap <= 0.0:
        return 1.0
    return float(np.clip(2.0 * source_gap / target_gap - 0.5, 0.0, 1.0))


def _mouth_box(
    image: np.ndarray, points: np.ndarray, groups: Mapping[str, np.ndarray]
) -> tuple[int, int, int, int]:
    """The area around the mouth (x0, y0, x1, y1): the outer lips' box, doubled."""
    lips = np.asarray(points, dtype=np.float64)[
        np.concatenate([groups["lips_outer_upper"], groups["lips_outer_lower"]])
    ]
    centre = (lips.min(0) + lips.max(0)) / 2
    half = np.maximum(lips.max(0) - lips.min(0), 4.0)
    h, w = image.shape[:2]
    x0, y0 = np.clip(np.floor(centre - half).astype(int), 0, (w - 1, h - 1))
    x1, y1 = np.clip(np.ceil(centre + half).astype(int), 1, (w, h))
    return int(x0), int(y0), int(max(x1, x0 + 1)), int(max(y1, y0 + 1))


def _mean_colour(
    image: np.ndarray, points: np.ndarray, groups: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Mean colour around the mouth (:func:`_mouth_box`): lips and skin."""
    x0, y0, x1, y1 = _mouth_box(image, points, groups)
    return image[y0:y1, x0:x1].reshape(-1, image.shape[2]).mean(0) + 1.0


def _mouth_chroma(
    image: np.ndarray,
    points: np.ndarray,
    groups: Mapping[str, np.ndarray],
    gain: np.ndarray | None = None,
) -> np.ndarray:
    """Chroma statistics (:func:`~fomm.expression.colour.masked_chroma_stats`) of the lips and
    the skin around them (:func:`_mouth_box` less the inside of the inner lips: an open mouth's
    teeth and dark would weigh on one side only), of ``image`` times ``gain`` per channel if
    given."""
    x0, y0, x1, y1 = _mouth_box(image, points, groups)
    patch = image[y0:y1, x0:x1, :3]
    mask = np.ones(patch.shape[:2], np.uint8)
    inner = inner_contour(points, groups) - (x0, y0)
    cv2.fillPoly(mask, [np.round(inner).astype(np.int32)], 0)
    return masked_chroma_stats(patch, mask, gain)


def _lip_colour(
    image: np.ndarray, points: np.ndarray, groups: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Mean colour of the lips (between the outer and the inner contour)."""
    pts = np.asarray(points, dtype=np.float64)
    outer = pts[np.concatenate([groups["lips_outer_upper"], groups["lips_outer_lower"][::-1]])]
    x0, y0 = np.maximum(np.floor(outer.min(0)).astype(int), 0)
    x1, y1 = np.ceil(outer.max(0)).astype(int) + 1
    patch = image[y0:y1, x0:x1]
    if patch.size == 0:
        return np.full(image.shape[2], 80.0)
    mask = np.zeros(patch.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(outer - (x0, y0)).astype(np.int32)], 1)
    inner = inner_contour(pts, groups) - (x0, y0)
    cv2.fillPoly(mask, [np.round(inner).astype(np.int32)], 0)
    if not mask.any():
        return patch.reshape(-1, image.shape[2]).mean(0)
    return patch[mask > 0].mean(0)


def _mapped_box(
    source: np.ndarray,
    controls_t: np.ndarray,
    controls_s: np.ndarray,
    box: tuple[int, int, int, int],
) -> np.ndarray | None:
    """``source`` warped onto the target ``box`` (x0, y0, x1, y1) by the thin-plate spline that
    takes the target control points to the source ones (computed on a coarse grid, resized), or
    None when the box is too small or the spline fails."""
    x0, y0, x1, y1 = box
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    bw, bh = x1 - x0, y1 - y0
    side = float(max(bw, bh))
    gw, gh = min(FILL_GRID, bw), min(FILL_GRID, bh)
    gx = (np.arange(gw) + 0.5) * bw / gw - 0.5
    gy = (np.arange(gh) + 0.5) * bh / gh - 0.5
    grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2) / side
    centres = (controls_t - (x0, y0)) / side
    _, keep = np.unique(np.round(centres * 4096), axis=0, return_index=True)
    mapped = thin_plate(centres[keep], controls_s[keep] / side, grid, smoothing=1e-4)
    if mapped is None or not np.isfinite(mapped).all():
        return None
    maps = cv2.resize((mapped * side).reshape(gh, gw, 2).astype(np.float32), (bw, bh))
    return cv2.remap(source, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _polygon(poly: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A float mask of ``box``'s size, 1 inside ``poly`` (antialiased edge)."""
    x0, y0, x1, y1 = box
    shape = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.fillPoly(shape, [np.round((poly - (x0, y0)) * 8).astype(np.int32)], 1.0,
                 lineType=cv2.LINE_AA, shift=3)
    return shape


def _colour_gain(frame: np.ndarray, target: np.ndarray, source: np.ndarray,
                 source_points: np.ndarray, groups: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-channel gain that brings the source's face colour to the frame's (0.6 to 1.6)."""
    return np.clip(
        _mean_colour(frame, target, groups) / _mean_colour(source, source_points, groups),
        0.6,
        1.6,
    )


def _blend(frame: np.ndarray, box: tuple[int, int, int, int], mask: np.ndarray,
           image: np.ndarray) -> np.ndarray:
    """A copy of ``frame`` with ``image`` (float, ``box``'s size) blended in by ``mask``."""
    x0, y0, x1, y1 = box
    region = frame[y0:y1, x0:x1].astype(np.float32)
    blended = region + mask[..., None] * (image - region)
    out = frame.copy()
    out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out


def fill_mouth(
    frame: np.ndarray,
    target: np.ndarray,
    groups: Mapping[str, np.ndarray],
    source: np.ndarray,
    source_points: np.ndarray,
    strength: float,
    eye_distance: float,
    share: float = 1.0,
    tint: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``frame`` with the area inside the target inner lips showing ``source``'s mouth interior.

    Args:
        frame: uint8 (H, W, 3), the warped frame (its inner lips at ``target``).
        target: (N, 2) landmarks of the warped frame (pixels of ``frame``).
        groups: the landmark groups.
        source: uint8 (h, w, 3) the image whose mouth interior is shown.
        source_points: (N, 2) its landmarks (pixels of ``source``).
        strength: opacity of the fill, 0..1 (see :func:`fill_strength`).
        eye_distance: the target face's eye distance in pixels (sets the feather).
        share: how much of the fill is ``source``'s interior; the rest is a dark cavity in the
            lips' colour (see :func:`source_share`).
        tint: an image and its landmarks whose lips and the skin around them give the fill its
            chroma (the photo's: a black-and-white photo's mouth is grey); ``frame`` at
            ``target`` if None.

    Returns:
        A new frame (``frame`` itself when there is nothing to fill).
    """
    if strength <= 0.0:
        return frame
    poly_t = inner_contour(target, groups)
    poly_s = inner_contour(source_points, groups)
    h, w = frame.shape[:2]
    feather = max(0.7, FEATHER * eye_distance)
    pad = int(np.ceil(3 * feather)) + 1
    x0, y0 = np.floor(poly_t.min(0)).astype(int) - pad
    x1, y1 = np.ceil(poly_t.max(0)).astype(int) + pad + 1
    box = (max(x0, 0), max(y0, 0), min(x1, w), min(y1, h))
    interior = _mapped_box(source, poly_t, poly_s, box)
    if interior is None:
        return frame
    gain = _colour_gain(frame, target, source, source_points, groups)
    interior = interior.astype(np.float32) * gain.astype(np.float32)
    photo, photo_points = (frame, target) if tint is None else tint
    interior = tinted(interior.astype(np.float64), _mouth_chroma(photo, photo_points, groups),
                      _mouth_chroma(source, source_points, groups, gain)).astype(np.float32)
    shape = _polygon(poly_t, box)
    if share < 1.0:
        # darker deep inside, lighter towards the lips
        depth = cv2.GaussianBlur(shape, (0, 0), 4 * feather)[..., None]
        colour = _lip_colour(frame, target, groups).astype(np.float32)
        cavity = CAVITY * colour * (1.4 - 0.8 * depth)
        interior = share * interior + (1.0 - share) * cavity
    mask = cv2.GaussianBlur(shape, (0, 0), feather) * float(strength)
    return _blend(frame, box, mask, interior)


def _ring(points: np.ndarray, centre: np.ndarray, margin: float) -> np.ndarray:
    """``points`` moved ``margin`` pixels farther from ``centre``."""
    away = points - centre
    norm = np.maximum(np.hypot(away[:, 0], away[:, 1]), 1e-6)[:, None]
    return centre + away * (1.0 + margin / norm)


def paste_mouth(
    frame: np.ndarray,
    target: np.ndarray,
    groups: Mapping[str, np.ndarray],
    source: np.ndarray,
    source_points: np.ndarray,
    eye_distance: float,
) -> np.ndarray:
    """``frame`` with ``source``'s lips and mouth (and a margin of skin) laid on the target lips:
    a warp squeezing an open mouth shut leaves the lips smeared over a dark line, while the
    source's own mouth (the photo's, whose expression is kept) shows them as they are.

    The lips' area of ``source`` is mapped onto the target's lips by a thin-plate spline through
    the lip contours and two rings around them, colour-matched to the frame around the mouth and
    feathered into it.

    Args:
        frame: uint8 (H, W, 3), the warped frame (its lips at ``target``).
        target: (N, 2) landmarks of the warped frame (pixels of ``frame``).
        groups: the landmark groups.
        source: uint8 (h, w, 3) the image whose mouth is shown.
        source_points: (N, 2) its landmarks (pixels of ``source``).
        eye_distance: the target face's eye distance in pixels.

    Returns:
        A new frame (``frame`` itself when the mouth is out of the picture).
    """
    names = ("lips_outer_upper", "lips_outer_lower", "lips_inner_upper", "lips_inner_lower")
    lips = np.unique(np.concatenate([groups[n] for n in names]))
    outer = np.concatenate([groups["lips_outer_upper"], groups["lips_outer_lower"][::-1][1:-1]])
    pts_t = np.asarray(target, dtype=np.float64)
    pts_s = np.asarray(source_points, dtype=np.float64)
    centre_t, centre_s = pts_t[lips].mean(0), pts_s[lips].mean(0)
    ratio = face_axes(pts_s, groups)[0] / max(eye_distance, 1e-6)  # source px per target px
    controls_t, controls_s = [pts_t[lips]], [pts_s[lips]]
    for margin in PASTE_RINGS:
        m = margin * eye_distance
        controls_t.append(_ring(pts_t[outer], centre_t, m))
        controls_s.append(_ring(pts_s[outer], centre_s, m * ratio))
    edge = _ring(pts_t[outer], centre_t, PASTE_MARGIN * eye_distance)
    feather = max(0.7, FEATHER * eye_distance)
    h, w = frame.shape[:2]
    reach = np.vstack([edge, controls_t[-1]])
    x0, y0 = np.floor(reach.min(0)).astype(int) - 1
    x1, y1 = np.ceil(reach.max(0)).astype(int) + 2
    box = (max(x0, 0), max(y0, 0), min(x1, w), min(y1, h))
    pasted = _mapped_box(source, np.vstack(controls_t), np.vstack(controls_s), box)
    if pasted is None:
        return frame
    gain = _colour_gain(frame, target, source, source_points, groups)
    shape = _polygon(_ring(pts_t[outer], centre_t, 0.5 * PASTE_MARGIN * eye_distance), box)
    mask = cv2.GaussianBlur(shape, (0, 0), max(feather, 0.25 * PASTE_MARGIN * eye_distance))
    return _blend(frame, box, mask, pasted.astype(np.float32) * gain)
