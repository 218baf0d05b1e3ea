"""Stitching: the background and shoulders inside a paste box stay where the photo has them.

The motion model warps its whole crop, so what surrounds the head (wall, shoulders, collar)
moves with it, and blending such a crop into the still photo at the box's edge doubles what
crosses the edge (a shoulder line twice, a lighter band where background lies over the shirt).
Stitching undoes the head's motion away from the head, geometrically rather than by blending:

1. the optical flow from the photo's crop to the animated crop (DIS, on small grey copies,
   smoothed: the motion model's motion is smooth): where each photo pixel went;
2. the head (face, hair, a little of the neck): the photo's face oval
   (:mod:`fomm.faces.mesh`, else the crop's framing) grown by :data:`HEAD_SCALE`, joined with
   the same region moved by the flow (where the head is in the animated crop);
3. the animated crop resampled at ``x + w(x)·flow(x)``: ``w`` is 0 on the head and rises to 1
   over :data:`RAMP` of the box side away from it (:data:`RAMP_UP` towards the box's top, where
   hair and wall take the stretch), so the head is untouched, everything farther out comes back
   to the photo's place, and the neck between bends smoothly;
4. a pixel weight that gives the photo's own pixels where the geometry is already the photo's
   (:data:`KEEP`, in ramp lengths), so that the corners do not change at all.

The cost per frame is one flow at :data:`FLOW_SIZE` pixels and a bicubic remap of the parts of
the crop that move back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

FLOW_SIZE = 128  # side of the grey copies the flow is computed on
RAMP = 0.10  # w rises from 0 at the head to 1 this far from it (fraction of the box side)
RAMP_UP = 0.25  # ... and this far at the box's top edge (between, in proportion)
KEEP = (0.6, 1.5)  # the photo's pixels fade in between these distances from the head (ramps)
HEAD_SCALE = (1.25, 1.55, 1.10)  # the face oval grown sideways, up (hair) and down (chin)
SMOOTH = 0.03  # the flow's Gaussian blur, as a fraction of the box side
TILE = 8  # the crop is resampled in tiles of this many FLOW_SIZE pixels, where needed


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _grey(image: np.ndarray, size: int) -> np.ndarray:
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def head_outline(crop: np.ndarray) -> np.ndarray:
    """The head's outline in a face crop: (N, 2) float pixel points of ``crop``.

    The face oval of the 468-point face mesh grown by :data:`HEAD_SCALE` about its centre (more
    upwards, for the hair); without the mesh model, or when it finds no face, an ellipse where
    :func:`fomm.faces.crop.square_box` frames the face (centred, two thirds of the side tall).
    """
    side = crop.shape[0]
    oval = None
    from fomm.faces import mesh

    if mesh.available():
        found = mesh.FaceMesh(refine_eyes=False).detect(np.ascontiguousarray(crop))
        if found is not None:
            oval = found.group("face_oval").astype(np.float64)
    if oval is None:  # the framing: the face box (1/1.5 of the side) 0.07 of it below centre
        t = np.linspace(0, 2 * np.pi, 36, endpoint=False)
        oval = np.stack([0.5 + 0.24 * np.cos(t), 0.55 + 0.30 * np.sin(t)], 1) * side
    centre = (oval.min(0) + oval.max(0)) / 2
    offset = oval - centre
    sx, up, down = HEAD_SCALE
    offset[:, 0] *= sx
    offset[:, 1] *= np.where(offset[:, 1] < 0, up, down)
    return centre + offset


@dataclass
class Stitcher:
    """Keeps what surrounds the head still in animated crops of one photo's face box.

    Args:
        photo_crop: uint8 (S, S, 3) RGB, the photo's crop of the box (any size).
        outline: the head's outline in ``photo_crop``'s pixels (:func:`head_outline` by
            default).

    Thread-safe: the flow is computed under a lock.
    """

    photo_crop: np.ndarray
    outline: np.ndarray | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.outline is None:
            self.outline = head_outline(self.photo_crop)
        n = FLOW_SIZE
        self._photo = _grey(self.photo_crop, n)
        head = np.zeros((n, n), np.uint8)
        points = np.asarray(self.outline, np.float64) * n / self.photo_crop.shape[0]
        cv2.fillPoly(head, [np.round(cv2.convexHull(points.astype(np.float32))).astype(
            np.int32)], 1)
        self.head = head
        # the ramp is longer above the head: hair and wall there take the stretch
        rows = np.nonzero(head.any(1))[0]
        centre = (rows[0] + rows[-1]) / 2 if len(rows) else n / 2
        above = np.clip((centre - np.arange(n)) / max(centre, 1.0), 0.0, 1.0)
        self._ramp = (RAMP + (RAMP_UP - RAMP) * above)[:, None].astype(np.float32)
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._grid = np.stack(np.meshgrid(np.arange(n, dtype=np.float32),
                                          np.arange(n, dtype=np.float32)), -1)

    def fields(self, animated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For an animated crop: the displacement (FLOW_SIZE², 2) in FLOW_SIZE pixels that
        takes each output pixel to where the crop is sampled, and the distance from the head
        (FLOW_SIZE², in ramp lengths: the displacement is all the flow from 1 on)."""
        n = FLOW_SIZE
        small = _grey(animated, n)
        with self._lock:  # one flow object per photo, shared by the threads that paste
            flow = self._flow.calc(self._photo, small, None)  # photo(x) ≈ anim(x + flow)
        # the motion model's motion is smooth; the flow jumps where hair or the head's outline
        # uncovers background (no match there), which would smear the crop
        flow = cv2.GaussianBlur(cv2.medianBlur(flow, 5), (0, 0), SMOOTH * n)
        # the head where the animated crop has it: the photo's head moved by the flow
        back = self._grid - flow
        moved = cv2.remap(self.head, back[..., 0], back[..., 1], cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        outside = (1 - np.maximum(self.head, moved)).astype(np.uint8)
        # distance from the head in ramp lengths
        reach = cv2.distanceTransform(outside, cv2.DIST_L2, 3) / (n * self._ramp)
        return flow * _smoothstep(reach)[..., None], reach

    def stitch(self, animated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``animated`` (uint8 (R, R, 3)) with what surrounds the head moved back to the photo's
        place, and the weight (FLOW_SIZE², float32 in [0, 1]) with which the photo's own pixels
        should replace it (0 on and near the head).

        Only tiles of :data:`TILE` (at FLOW_SIZE) that are moved and not wholly replaced are
        resampled (bicubic); the head's pixels are the crop's own."""
        side = animated.shape[0]
        shift, reach = self.fields(animated)
        keep = _smoothstep((reach - KEEP[0]) / (KEEP[1] - KEEP[0])).astype(np.float32)
        needed = (np.abs(shift).max(-1) > 1e-3) & (keep < 1)
        # a tile's neighbours too: the weights are resized to the frame between their samples
        needed = cv2.dilate(needed.astype(np.uint8), np.ones((5, 5), np.uint8))
        n = FLOW_SIZE // TILE
        tiles = needed.reshape(n, TILE, n, TILE).any((1, 3))
        if not tiles.any():
            return animated, keep
        scale = side / FLOW_SIZE
        full = cv2.resize(shift * scale, (side, side), interpolation=cv2.INTER_LINEAR)
        steps = np.round(np.arange(n + 1) * TILE * scale).astype(int)
        xs = np.arange(side, dtype=np.float32)
        out = animated.copy()
        for ty, tx in zip(*np.nonzero(tiles), strict=True):
            rows, cols = slice(steps[ty], steps[ty + 1]), slice(steps[tx], steps[tx + 1])
            out[rows, cols] = cv2.remap(animated, full[rows, cols, 0] + xs[None, cols],
                                        full[rows, cols, 1] + xs[rows, None], cv2.INTER_CUBIC,
                                        borderMode=cv2.BORDER_REPLICATE)
        return out, keep
