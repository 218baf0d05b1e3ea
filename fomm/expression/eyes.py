"""Closing eyelids: the upper lid slides down over the eye, the lid skin above it following.

A smooth warp cannot close an eye: pulling the upper lid onto the lower one squeezes the iris
and folds the skin around it. An eyelid instead slides over the eyeball, so the closing is a
column-wise map in the face's axes, within the eye: the lid's edge (its lashes) moves down to
the wanted lid line whole, and a band of lid skin above it stretches down after it; below the
line the eye stays where it is (the part the lid has not yet covered). The face warp only ever
opens eyes (:func:`kept_open` gives it its lid targets); this only closes them, a shut lid just
past the lower one (:func:`shut`). The lids' targets are the driver's alone: a blink or a
squint of the FOMM result's own (which follows the driver's lids loosely, or not at all, and
differently for each face) is not kept.
"""

from __future__ import annotations

import cv2
import numpy as np

from fomm.expression.colour import chroma_stats, tinted
from fomm.expression.geometry import (
    MIN_GAP,
    Groups,
    eye_centres,
    face_axes,
    gap,
    similarity,
    transform,
)
from fomm.expression.mouth import _blend, _mapped_box, _polygon

SHUT_OVERLAP = 0.015  # a shut upper lid covers the lower lid's edge by this (eye distances)
BAND = 0.11  # lid skin above the lid that stretches down over the eye (eye distances)
LASH = 0.025  # the lid's edge (lashes): moved down whole, not stretched
BROW_SHARE = 0.5  # the skin stretched over a closing eye lies in this share of the lid-brow space
PLAIN_SHARE = 0.8  # ... and its plain colour from below this share of it (above the fold)
LIT = 75  # percentile of brightness above which the lid's skin gives its plain colour
INSET = 0.012  # the lid landmarks lie this far inside the lash line (eye distances)
# a photo's lids closer than this (mean gap, eye distances; open eyes measure 0.065-0.13 on the
# tuning clips' drivers) are taken as closing: they open to it while the driver's eyes are open
OPEN_GAP = 0.075
LASH_FULL = 0.04  # a lid come down this far (eye distances) shows its lashes' full dark line ...
LASH_DARK = 0.85  # ... this dark (share of the way to the eye's darkest colour) ...
# ... this thick (its Gaussian's sigma, eye distances; 0.6 px at least): a soft band, as a real
# shut eye shows at this size (a thin line reads to a landmark model as an open eye)
LASH_WIDTH = 0.04
FILL_FROM = 0.01  # an eye opened this much wider than the frame shows it (eye distances) ...
FILL_FULL = 0.025  # ... gets the driver's eye from this much wider on
TINT_PAD = 0.4  # the driver's eye takes the chroma of the face this far around the eye (eye
# distances): its mean, and its spread where the photo's is the smaller (none on a grey photo)


def _curve(u: np.ndarray, pu: np.ndarray, pv: np.ndarray) -> np.ndarray:
    order = np.argsort(pu)
    return np.interp(u, pu[order], pv[order])


def close_lid(
    image: np.ndarray,
    lid: np.ndarray,
    wanted: np.ndarray,
    origin: np.ndarray,
    axes: np.ndarray,
    eye_distance: float,
    brow: np.ndarray | None = None,
) -> np.ndarray:
    """``image`` with one upper lid slid down from ``lid`` to ``wanted``.

    Args:
        image: uint8 (H, W, C), changed in place and returned.
        lid: (k, 2) the upper lid as it is in ``image`` (pixels, corner to corner).
        wanted: (k, 2) where it should be (the same points, lower or equal in the face).
        origin: a point of the face (pixels), the origin of the face coordinates.
        axes: (2, 2) the face's axes (columns: along the eyes, down the face).
        eye_distance: pixels.
        brow: (m, 2) the brow above it (pixels), if known: the stretched skin stays in the lower
            ``BROW_SHARE`` of the space between lid and brow.
    """
    lid_f = (np.asarray(lid, dtype=np.float64) - origin) @ axes / eye_distance
    want_f = (np.asarray(wanted, dtype=np.float64) - origin) @ axes / eye_distance
    drop = want_f[:, 1] - lid_f[:, 1]
    if drop.max() * eye_distance < 0.5:
        return image
    h, w = image.shape[:2]
    band = BAND
    pts = np.vstack([lid, wanted])
    tail = 3 * max(LASH_WIDTH, 0.6 / eye_distance)  # the lashes' line fades out below the lid
    corners_box = np.array([lid_f[:, 1].min() - band, want_f[:, 1].max() + tail])
    top_left = origin + eye_distance * (axes @ np.array([lid_f[:, 0].min(), corners_box[0]]))
    bottom_right = origin + eye_distance * (axes @ np.array([lid_f[:, 0].max(), corners_box[1]]))
    box_pts = np.vstack([pts, top_left, bottom_right])
    x0, y0 = np.floor(box_pts.min(0)).astype(int) - 2
    x1, y1 = np.ceil(box_pts.max(0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    face = (np.stack([xs, ys], axis=-1) - origin) @ axes / eye_distance
    u, v = face[..., 0], face[..., 1]
    inside = (u > lid_f[:, 0].min()) & (u < lid_f[:, 0].max())
    lid_v = _curve(u, lid_f[:, 0], lid_f[:, 1])  # the lid in the image
    want_v = np.maximum(_curve(u, want_f[:, 0], want_f[:, 1]), lid_v)  # where it goes
    lid_v = lid_v - np.minimum(INSET, want_v - lid_v)  # its edge (none where it stays)
    top = lid_v - band
    plain = lid_v - 1.5 * band  # the lid's skin lies below this
    if brow is not None:
        brow_f = (np.asarray(brow, dtype=np.float64) - origin) @ axes / eye_distance
        brow_v = _curve(u, brow_f[:, 0], brow_f[:, 1])
        top = np.maximum(top, lid_v - BROW_SHARE * np.maximum(lid_v - brow_v, 0.0))
        top = np.minimum(top, lid_v - 2 * LASH)
        band = lid_v - top
        plain = lid_v - PLAIN_SHARE * np.maximum(lid_v - brow_v, 2 * LASH)
    # the lid's edge [lid_v - LASH, lid_v] moved down to end at want_v; the skin above it,
    # [top, lid_v - LASH], stretched over [top, want_v - LASH]
    edge = want_v - LASH
    # to the power of the stretch (1 to 2): the identity where the lid stays (no seam beside
    # it), squared where it stretches twice or more (most of a closed lid then shows the smooth
    # skin at the band's top, not the fold)
    power = np.clip((edge - top) / np.maximum(band - LASH, 1e-6), 1.0, 2.0)
    t = np.clip((v - top) / np.maximum(edge - top, 1e-6), 0.0, 1.0)
    skin = top + t**power * (band - LASH)
    stretch = np.where(v > edge, v - (want_v - lid_v), skin)
    covered = inside & (v > top) & (v <= want_v)
    v_src = np.where(covered, stretch, v)
    src = origin + eye_distance * (np.stack([u, v_src], axis=-1) @ axes.T)
    moved = cv2.remap(
        image,
        src[..., 0].astype(np.float32),
        src[..., 1].astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    # where the skin is stretched much, its folds would smear: show its plain colour instead
    # (the lid's skin below the brow, its lighter part), the more it stretches
    box = image[y0:y1, x0:x1].astype(np.float32)
    lid_skin = inside & (v > plain) & (v < lid_v - 0.3 * (lid_v - plain))
    if not lid_skin.any():
        return image
    skin = box[lid_skin]
    light = skin.sum(1)
    flat = skin[light >= np.percentile(light, LIT)].mean(
        0
    )  # the lit part: a shut lid faces the light
    texture = np.clip(2.0 * (band - LASH) / np.maximum(edge - top, 1e-6), 0.5, 1.0)
    texture = np.where(v > edge, 1.0, texture)[..., None]
    moved = texture * moved.astype(np.float32) + (1.0 - texture) * flat
    # a one-pixel soft edge along the lid line
    alpha = np.clip((want_v - v) * eye_distance + 0.5, 0.0, 1.0) * inside
    alpha = np.where(v > top, alpha, 0.0)[..., None]
    out = box + alpha * (moved - box)
    # the lashes along the closing lid's edge: a dark line that reads as a lid come down (the
    # slid lid edge alone is a pixel or two of skin at this size), darker the further it came
    drop_v = want_v - _curve(u, lid_f[:, 0], lid_f[:, 1])
    eye = inside & (v > lid_v) & (v < lid_v + 2 * LASH)
    if eye.any():
        shade = box[eye]
        dark = shade[shade.sum(1) <= np.percentile(shade.sum(1), 20)].mean(0)
        span = max(lid_f[:, 0].max() - lid_f[:, 0].min(), 1e-6)
        along = np.clip((u - lid_f[:, 0].min()) / span, 0.0, 1.0)
        sigma = max(0.6, LASH_WIDTH * eye_distance) / eye_distance
        line = np.exp(-0.5 * ((v - (want_v - 0.3 * LASH)) / sigma) ** 2)
        weight = LASH_DARK * np.clip(drop_v / LASH_FULL, 0.0, 1.0) * np.sqrt(np.sin(np.pi * along))
        weight = (weight * line * inside)[..., None]
        out = out + weight * (dark - out)
    image[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return image


def kept_open(src: np.ndarray, target: np.ndarray, groups: Groups) -> np.ndarray:
    """``target`` with each closing upper lid left where it is in ``src`` (unless it goes up):
    the warp opens eyes, :func:`close_lid` closes them."""
    stable = groups["stable"]
    t_dist, t_axes = face_axes(target, groups)
    origin = np.mean(eye_centres(target, groups), axis=0)
    t_face = (target - origin) @ t_axes / t_dist
    moved = transform(similarity(src[stable], target[stable]), src)
    s_face = (moved - origin) @ t_axes / t_dist  # src in the target's face coordinates
    out = t_face.copy()
    for side in ("left", "right"):
        upper = groups[f"{side}_eye_upper"][1:-1]
        lower = groups[f"{side}_eye_lower"]
        s_gap = np.interp(s_face[upper, 0], *_sorted(s_face[lower])) - s_face[upper, 1]
        t_gap = np.interp(t_face[upper, 0], *_sorted(t_face[lower])) - t_face[upper, 1]
        stay = np.minimum(s_face[upper, 1], t_face[upper, 1])
        out[upper, 1] = np.where(t_gap < s_gap, stay, t_face[upper, 1])
    return out * t_dist @ t_axes.T + origin


def shut(target: np.ndarray, groups: Groups) -> np.ndarray:
    """``target`` with each upper lid that (nearly) meets its lower lid slid just past it, so
    that no white of the eye shows under a closed lid."""
    dist, axes = face_axes(target, groups)
    origin = np.mean(eye_centres(target, groups), axis=0)
    face = (target - origin) @ axes / dist
    for side in ("left", "right"):
        upper = groups[f"{side}_eye_upper"][1:-1]
        low = np.interp(face[upper, 0], *_sorted(face[groups[f"{side}_eye_lower"]]))
        closed = low - face[upper, 1] < 2 * MIN_GAP
        face[upper, 1] = np.where(closed, low + SHUT_OVERLAP, face[upper, 1])
    return face * dist @ axes.T + origin


def opening(
    photo: np.ndarray, groups: Groups, driving: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """Offsets (face units, (N, 2)) that open a photo's closing eyes while the driver's are open.

    The driver's lid motion is relative to its reference frame, whose lids are open: a photo
    taken mid-blink (or squinting) would keep its eyes shut whenever the driver's are open.
    Each upper lid of the photo closer than ``OPEN_GAP`` to its lower lid is lifted to it, as
    far as the driver's lids are open (their gap over the reference's, squared: none in a
    blink).
    """
    out = np.zeros((len(photo), 2))
    dist, axes = face_axes(photo, groups)
    face = (photo - np.mean(eye_centres(photo, groups), axis=0)) @ axes / max(dist, 1e-6)
    for side in ("left", "right"):
        upper, lower = groups[f"{side}_eye_upper"], groups[f"{side}_eye_lower"]
        deficit = OPEN_GAP - gap(photo, upper, lower, groups)
        if deficit <= 0 or len(upper) < 3:
            continue
        ratio = gap(driving, upper, lower, groups) / max(gap(reference, upper, lower, groups),
                                                         1e-6)
        xs = face[upper, 0]
        t = np.clip((xs - xs[0]) / (xs[-1] - xs[0]) if abs(xs[-1] - xs[0]) > 1e-9 else xs * 0,
                    0.0, 1.0)[1:-1]
        weight = np.sin(np.pi * t)
        weight = weight / max(weight.mean(), 1e-6)
        out[upper[1:-1], 1] -= deficit * float(np.clip(ratio, 0.0, 1.0)) ** 2 * weight
    return out


def eye_contour(points: np.ndarray, groups: Groups, side: str) -> np.ndarray:
    """The closed contour of one eye (M, 2): its upper lid, then its lower lid back."""
    upper, lower = groups[f"{side}_eye_upper"], groups[f"{side}_eye_lower"]
    return np.asarray(points, dtype=np.float64)[np.concatenate([upper, lower[::-1][1:-1]])]


def _skin_colour(image: np.ndarray, contour: np.ndarray, dist: float) -> np.ndarray:
    """Mean colour of the skin just below an eye (a band under its contour's box)."""
    h, w = image.shape[:2]
    x0, x1 = np.floor(contour[:, 0].min()), np.ceil(contour[:, 0].max()) + 1
    y0 = np.ceil(contour[:, 1].max()) + 0.05 * dist
    y1 = y0 + max(0.15 * dist, 2.0)
    x0, x1 = int(np.clip(x0, 0, w - 1)), int(np.clip(x1, 1, w))
    y0, y1 = int(np.clip(y0, 0, h - 1)), int(np.clip(y1, 1, h))
    patch = image[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].reshape(-1, image.shape[2])
    return patch.mean(0) + 1.0


def _chroma_stats(image: np.ndarray, contour: np.ndarray, dist: float) -> np.ndarray:
    """Mean and spread of the chroma around an eye (:func:`~fomm.expression.colour.chroma_stats`
    of its contour's box grown by ``TINT_PAD`` eye distances)."""
    h, w = image.shape[:2]
    pad = TINT_PAD * dist
    x0 = int(np.clip(np.floor(contour[:, 0].min() - pad), 0, w - 1))
    y0 = int(np.clip(np.floor(contour[:, 1].min() - pad), 0, h - 1))
    x1 = int(np.clip(np.ceil(contour[:, 0].max() + pad) + 1, x0 + 1, w))
    y1 = int(np.clip(np.ceil(contour[:, 1].max() + pad) + 1, y0 + 1, h))
    return chroma_stats(image[y0:y1, x0:x1, :3])


def fill_eye(
    frame: np.ndarray,
    target: np.ndarray,
    before: np.ndarray,
    groups: Groups,
    source: np.ndarray,
    source_points: np.ndarray,
) -> np.ndarray:
    """``frame`` with each eye the warp opened wider than the frame showed it (``before``: its
    landmarks before the warp) showing the driver's eye (``source``, landmarks
    ``source_points``) inside its lids: a warp lifting a closed lid stretches lid skin, not an
    eyeball. Mapped by a thin-plate spline through the lid contours, its brightness matched
    with the skin under the eye and its chroma with the face around it (a grey photo's eye
    is grey), feathered; a new frame (``frame`` itself when nothing opened)."""
    dist = face_axes(target, groups)[0]
    out = frame
    for side in ("left", "right"):
        upper, lower = groups[f"{side}_eye_upper"], groups[f"{side}_eye_lower"]
        wider = gap(target, upper, lower, groups) - gap(before, upper, lower, groups)
        shown = gap(source_points, upper, lower, groups)
        strength = float(np.clip((wider - FILL_FROM) / (FILL_FULL - FILL_FROM), 0.0, 1.0))
        strength *= float(np.clip(shown / max(gap(target, upper, lower, groups), 1e-6), 0, 1))
        if strength <= 0.0:
            continue
        poly_t = eye_contour(target, groups, side)
        poly_s = eye_contour(source_points, groups, side)
        h, w = out.shape[:2]
        pad = max(2, int(np.ceil(0.05 * dist)))
        x0, y0 = np.floor(poly_t.min(0)).astype(int) - pad
        x1, y1 = np.ceil(poly_t.max(0)).astype(int) + pad + 1
        box = (max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h))
        inside = _mapped_box(source, poly_t, poly_s, box)
        if inside is None:
            continue
        s_dist = face_axes(source_points, groups)[0]
        gain = np.clip(_skin_colour(out, poly_t, dist) / _skin_colour(source, poly_s, s_dist),
                       0.7, 1.4)
        tint = tinted(inside.astype(np.float64) * gain, _chroma_stats(out, poly_t, dist),
                      _chroma_stats(source, poly_s, s_dist))
        mask = cv2.GaussianBlur(_polygon(poly_t, box), (0, 0), max(0.7, 0.015 * dist))
        out = _blend(out, box, mask * strength, tint.astype(np.float32))
    return out


def _sorted(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0])
    return points[order, 0], points[order, 1]
