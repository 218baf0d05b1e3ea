"""A smooth landmark-driven warp of the face, confined to it.

The backward map (for each output pixel, where to sample the input) is a thin-plate spline
through the control points (the spline of ``scipy.interpolate.RBFInterpolator``, evaluated
here in float32), pinned to zero on an
expanded face outline and faded to exactly zero outside it, so the warp has no edge and
everything outside the face keeps its pixels. The spline is evaluated on a coarse grid over the
face's box only (``GRID`` points a side), resized to the box with ``cv2.resize`` and sampled with
``cv2.remap`` (bicubic), so its cost hardly grows with the crop and the photo's detail is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.linalg

GRID = 28  # the spline is evaluated on at most GRID x GRID points over the face's box
EXPAND = 1.3  # the warp fades to zero on the face outline scaled by this about its centre
FOCUS_GRID = 16  # ... and on at most FOCUS_GRID x FOCUS_GRID points over a focus box
ANCHORS = 24  # points on the expanded outline pinned to zero motion
SMOOTHING = 1e-5  # spline regularisation (box units): near-coincident controls stay stable


def expanded_outline(outline: np.ndarray, factor: float = EXPAND) -> np.ndarray:
    """The convex hull of ``outline`` (M, 2) scaled by ``factor`` about its centroid."""
    hull = cv2.convexHull(np.asarray(outline, dtype=np.float32)).reshape(-1, 2).astype(np.float64)
    centre = hull.mean(0)
    return centre + factor * (hull - centre)


def _kernel(d2: np.ndarray, inplace: bool = False) -> np.ndarray:
    """The thin-plate kernel r^2 log r, from squared distances (``inplace``: in ``d2``'s
    memory, the same values with fewer temporaries)."""
    if not inplace:
        return 0.5 * d2 * np.log(np.maximum(d2, 1e-20))
    log = np.maximum(d2, 1e-20)
    np.log(log, out=log)
    d2 *= 0.5
    d2 *= log
    return d2


def thin_plate(
    centres: np.ndarray, values: np.ndarray, points: np.ndarray, smoothing: float = SMOOTHING
) -> np.ndarray | None:
    """The thin-plate spline through ``values`` (K, C) at ``centres`` (K, 2), regularised by
    ``smoothing``, evaluated at ``points`` (P, 2); None when the system is singular.

    Same spline as ``scipy.interpolate.RBFInterpolator(kernel="thin_plate_spline")``, evaluated
    in float32 with one matrix product (several times faster on a few thousand points).
    """
    k = len(centres)
    system = np.zeros((k + 3, k + 3))
    system[:k, :k] = _kernel(_squared_distances(centres, centres))
    system[:k, :k] += smoothing * np.eye(k)
    system[:k, k] = 1.0
    system[:k, k + 1 :] = centres
    system[k:, :k] = system[:k, k:].T
    rhs = np.zeros((k + 3, values.shape[1]))
    rhs[:k] = values
    try:
        coef = scipy.linalg.solve(system, rhs, assume_a="sym", check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        return None
    coef = coef.astype(np.float32)
    p32 = points.astype(np.float32)
    c32 = centres.astype(np.float32)
    d2 = (p32**2).sum(1)[:, None] + (c32**2).sum(1)[None]
    d2 -= 2 * (p32 @ c32.T)
    np.maximum(d2, 0.0, out=d2)
    out = _kernel(d2, inplace=True) @ coef[:k]
    out += coef[k]
    return out + p32 @ coef[k + 1 :]


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a[:, None, 0] - b[None, :, 0]) ** 2 + (a[:, None, 1] - b[None, :, 1]) ** 2


def _resample(poly: np.ndarray, n: int) -> np.ndarray:
    closed = np.vstack([poly, poly[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], n, endpoint=False)
    return np.stack([np.interp(t, s, closed[:, 0]), np.interp(t, s, closed[:, 1])], axis=1)


@dataclass(frozen=True)
class Field:
    """A backward displacement (sample the input at ``p + d(p)``), cell-centred on coarse grids
    (as ``cv2.resize`` expects): over ``box`` (x0, y0, x1, y1) and, finer, over ``focus``."""

    box: tuple[int, int, int, int]
    coarse: np.ndarray  # (g_h, g_w, 2) float32
    focus: tuple[int, int, int, int] | None = None
    fine: np.ndarray | None = None


def _grid(box: tuple[int, int, int, int], grid: int) -> tuple[int, int, np.ndarray]:
    x0, y0, x1, y1 = box
    gw, gh = min(grid, x1 - x0), min(grid, y1 - y0)
    gx = x0 + (np.arange(gw) + 0.5) * (x1 - x0) / gw - 0.5
    gy = y0 + (np.arange(gh) + 0.5) * (y1 - y0) / gh - 0.5
    return gw, gh, np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)


def displacement(
    src: np.ndarray,
    dst: np.ndarray,
    outline: np.ndarray,
    shape: tuple[int, int],
    grid: int = GRID,
    focus: tuple[float, float, float, float] | None = None,
) -> Field | None:
    """The backward displacement that moves ``src`` onto ``dst``.

    Args:
        src: (K, 2) control points where they are in the input (pixels).
        dst: (K, 2) where they go in the output.
        outline: (M, 2) the face outline; the warp is zero outside its expansion by ``EXPAND``
            (controls outside it are pinned).
        shape: (H, W) of the image.
        grid: spline samples a side over the face's box.
        focus: a box well inside the face (x0, y0, x1, y1) where the spline is also sampled on
            a finer grid (``FOCUS_GRID`` a side): where the motion changes fast (a closing mouth).

    Returns:
        The field; None when there is nothing to warp.
    """
    h, w = shape
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        return None
    outer = expanded_outline(outline)
    x0, y0 = np.floor(outer.min(0)).astype(int)
    x1, y1 = np.ceil(outer.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2 or np.abs(dst - src).max() < 1e-3:
        return None
    box = (int(x0), int(y0), int(x1), int(y1))
    side = float(max(x1 - x0, y1 - y0))
    anchors = _resample(outer, ANCHORS)
    centres = np.vstack([dst, anchors])
    values = np.vstack([src - dst, np.zeros_like(anchors)])
    # coincident controls (shared corners) would make the system singular: keep the first
    _, keep = np.unique(np.round(centres / side * 4096), axis=0, return_index=True)
    keep = np.sort(keep)
    centres = (centres[keep] - (x0, y0)) / side
    gw, gh, pts = _grid(box, grid)
    fine_box = None
    if focus is not None:
        fx0, fy0 = max(int(np.floor(focus[0])), x0), max(int(np.floor(focus[1])), y0)
        fx1, fy1 = min(int(np.ceil(focus[2])), x1), min(int(np.ceil(focus[3])), y1)
        if fx1 - fx0 >= 4 and fy1 - fy0 >= 4:
            fine_box = (fx0, fy0, fx1, fy1)
            fw, fh, fine_pts = _grid(fine_box, FOCUS_GRID)
            pts = np.vstack([pts, fine_pts])
    values_at = thin_plate(centres, values[keep] / side, (pts - (x0, y0)) / side)
    if values_at is None or not np.isfinite(values_at).all():
        return None
    values_at = values_at * side
    field = values_at[: gw * gh].reshape(gh, gw, 2)
    # fade to exactly zero at the expanded outline
    scale = np.array([gw / (x1 - x0), gh / (y1 - y0)])
    poly = np.round(((outer - (x0, y0) + 0.5) * scale - 0.5) * 8).astype(np.int32)
    mask = np.zeros((gh, gw), np.uint8)
    cv2.fillPoly(mask, [poly], 1, lineType=cv2.LINE_8, shift=3)
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    ramp = max(2.0, 0.08 * min(gw, gh))
    # zero on the outline's first row of cells too: resized, the field stays zero outside it
    weight = np.clip((inside - 1.0) / ramp, 0.0, 1.0)
    weight = weight * weight * (3 - 2 * weight)
    field *= weight[..., None]
    fine = None if fine_box is None else values_at[gw * gh :].reshape(fh, fw, 2)
    return Field(box, field.astype(np.float32), fine_box,
                 None if fine is None else fine.astype(np.float32))  # fmt: skip


def _window(n: int) -> np.ndarray:
    """1 in the middle, falling to 0 over the outer quarter at each end."""
    t = (np.arange(n) + 0.5) / n
    return np.clip(np.minimum(t, 1 - t) * 4, 0.0, 1.0).astype(np.float32)


def remap(image: np.ndarray, field: Field) -> np.ndarray:
    """``image`` with ``field`` applied (bicubic)."""
    x0, y0, x1, y1 = field.box
    bw, bh = x1 - x0, y1 - y0
    full = cv2.resize(field.coarse, (bw, bh), interpolation=cv2.INTER_LINEAR)
    if field.focus is not None and field.fine is not None:
        fx0, fy0, fx1, fy1 = field.focus
        fine = cv2.resize(field.fine, (fx1 - fx0, fy1 - fy0), interpolation=cv2.INTER_LINEAR)
        blend = np.outer(_window(fy1 - fy0), _window(fx1 - fx0))[..., None]
        part = full[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
        part += blend * (fine - part)
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    full[..., 0] += xs
    full[..., 1] += ys
    out = image.copy()
    # fixed-point maps: faster, and exact (the input's own pixels) where the field is zero
    map1, map2 = cv2.convertMaps(full, None, cv2.CV_16SC2)
    out[y0:y1, x0:x1] = cv2.remap(
        image, map1, map2, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
    )
    return out


def warp(
    image: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    outline: np.ndarray,
    grid: int = GRID,
    focus: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """``image`` (H, W, C) warped so that the points ``src`` move to ``dst``, confined to the
    face ``outline`` expanded by ``EXPAND`` (finer in ``focus``, see :func:`displacement`); a
    copy of ``image`` when nothing moves."""
    found = displacement(src, dst, outline, image.shape[:2], grid, focus)
    if found is None:
        return image.copy()
    return remap(image, found)
