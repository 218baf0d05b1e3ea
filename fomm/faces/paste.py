"""Paste an animated face crop back into the full-resolution frame without a visible seam.

The mask is a rounded square (a superellipse) filling the crop box with a smooth ramp to zero at its
edge. Before blending, each animated crop is shifted in colour so that the mean of its ramp ring
matches the original's there: the generator's slight global tint then leaves no seam. Pixels where
the mask is zero, which includes everything outside the box, are returned exactly unchanged.

With ``stitch``, the background and shoulders inside the box are first moved back to the photo's
place and then replaced by the photo's own pixels (:mod:`fomm.faces.stitch`): only the head and
what joins it move.

Several faces: each mask is clipped to its side of the line between face centres (split in
proportion to the face sizes), so masks never overlap and pasting order does not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from fomm.faces.crop import crop, image_to_crop_affine, warp
from fomm.faces.detect import Box
from fomm.faces.stitch import FLOW_SIZE, Stitcher

FEATHER = 0.08  # width of the mask's ramp, as a fraction of the box side
MAX_COLOUR_SHIFT = 24.0  # the colour correction is clipped to this many 8-bit levels


def _weighted_mean(pixels: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """(3,) mean colour of (h, w, 3) pixels under (h, w) weights; None when the weights are 0."""
    total = float(weights.sum())
    if total <= 0:
        return None
    return np.tensordot(weights, pixels.astype(np.float32), axes=([0, 1], [0, 1])) / total


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class Paster:
    """Blend animated crops of one face back into the frame it was cut from.

    Args:
        full_image: uint8 (H, W, 3) RGB source frame at full resolution.
        box: the square (x0, y0, x1, y1) crop box used to cut the face (may pass the borders).
        crop_size: side of the animated crops that will be pasted (the model size); crops of
            another size are pasted too (``--detail`` makes them at the box's resolution).
        others: crop boxes of the other faces pasted into the same frame; the mask is clipped so
            that it never overlaps theirs.
        feather: ramp width as a fraction of the box side.
        colour_match: shift each crop's colour so its border ring matches the original's.
        stitch: keep what surrounds the head where the photo has it (:mod:`fomm.faces.stitch`);
            an attribute, to switch per frame.
    """

    def __init__(
        self,
        full_image: np.ndarray,
        box: Box,
        crop_size: int,
        others: Sequence[Box] = (),
        feather: float = FEATHER,
        colour_match: bool = True,
        stitch: bool = False,
    ) -> None:
        if full_image.dtype != np.uint8 or full_image.ndim != 3 or full_image.shape[2] != 3:
            raise ValueError(f"expected a uint8 (H, W, 3) frame, got shape {full_image.shape}")
        self.image = full_image
        self.box = tuple(float(v) for v in box)
        self.crop_size = crop_size
        self.colour_match = colour_match
        self.stitch = stitch
        self._stitcher: Stitcher | None = None
        height, width = full_image.shape[:2]
        x0, y0, x1, y1 = self.box
        self.roi = (
            max(int(np.floor(x0)), 0),
            max(int(np.floor(y0)), 0),
            min(int(np.ceil(x1)), width),
            min(int(np.ceil(y1)), height),
        )
        rx0, ry0, rx1, ry1 = self.roi
        if rx1 <= rx0 or ry1 <= ry0:
            raise ValueError(f"crop box {box} lies outside the {width}×{height} image")
        self.alpha = self._mask(feather, others)  # (h, w) float32 in [0, 1]
        self._beta = 1.0 - self.alpha
        # colour matching compares means over the ramp, weighted to peak in its middle: the
        # original's at full resolution once, each crop's on the crop itself (cheap per frame)
        self._ring = self.alpha * (1.0 - self.alpha)
        original = full_image[ry0:ry1, rx0:rx1].astype(np.float32)
        self._original_ring_mean = _weighted_mean(original, self._ring)
        self._geometry: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._crop_geometry(crop_size)  # ready for the usual size

    def _crop_geometry(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(ROI → crop affine, the ramp ring at crop resolution) for crops of side ``size``."""
        if size not in self._geometry:
            rx0, ry0 = self.roi[:2]
            affine = image_to_crop_affine(self.box, size)
            affine[:, 2] += affine[:, :2] @ (rx0, ry0)  # from ROI indices, not image indices
            to_roi = cv2.invertAffineTransform(affine)
            self._geometry[size] = affine, warp(self._ring, to_roi, (size, size), "black")
        return self._geometry[size]

    def _mask(self, feather: float, others: Sequence[Box]) -> np.ndarray:
        rx0, ry0, rx1, ry1 = self.roi
        x0, y0, x1, y1 = self.box
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        xs = np.arange(rx0, rx1, dtype=np.float64) + 0.5  # pixel centres
        ys = np.arange(ry0, ry1, dtype=np.float64) + 0.5
        u = np.abs(xs - cx)[None, :] / ((x1 - x0) / 2)
        v = np.abs(ys - cy)[:, None] / ((y1 - y0) / 2)
        radius = (u**4 + v**4) ** 0.25  # a rounded square: 1 on the box edge
        outer = 1.0 - 1.0 / max(side, 1.0)  # reach zero on the last pixel inside the box
        ramp = max(2.0 * feather, 2.0 / max(side, 1.0))
        alpha = _smoothstep((outer - radius) / ramp)
        for other in others:
            ox, oy = (other[0] + other[2]) / 2, (other[1] + other[3]) / 2
            oside = max(other[2] - other[0], other[3] - other[1])
            normal = np.array([cx - ox, cy - oy])
            distance = float(np.hypot(*normal))
            if distance < 1e-6:
                continue  # the same box twice: nothing sensible to split
            normal /= distance
            # split point between the centres, in proportion to the sizes (bigger face, more room)
            mx, my = cx - (cx - ox) * side / (side + oside), cy - (cy - oy) * side / (side + oside)
            t = (xs[None, :] - mx) * normal[0] + (ys[:, None] - my) * normal[1]
            alpha = alpha * _smoothstep(t / max(feather * side, 1.0))
        return alpha.astype(np.float32)

    def colour_matched(self, animated_crop: np.ndarray) -> np.ndarray:
        """The crop shifted in colour so that its ring mean equals the original's; uint8."""
        crop_mean = _weighted_mean(animated_crop, self._crop_geometry(len(animated_crop))[1])
        if not self.colour_match or self._original_ring_mean is None or crop_mean is None:
            return animated_crop
        shift = np.clip(self._original_ring_mean - crop_mean, -MAX_COLOUR_SHIFT, MAX_COLOUR_SHIFT)
        return np.clip(np.rint(animated_crop + shift), 0, 255).astype(np.uint8)

    def paste(self, animated_crop: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
        """Blend one animated crop into the frame.

        Args:
            animated_crop: uint8 (n, n, 3) RGB, the model's output for this face (n is usually
                ``crop_size``, or the box's resolution with ``--detail``).
            frame: uint8 (H, W, 3) frame to paste into (modified in place), e.g. the result of
                another face's paste; a copy of the original image when None.

        Returns:
            uint8 (H, W, 3), the source resolution.
        """
        side = animated_crop.shape[0]
        if animated_crop.shape != (side, side, 3) or side < 1:
            raise ValueError(f"expected a square n×n×3 crop, got {animated_crop.shape}")
        out = self.image.copy() if frame is None else frame
        if out.shape != self.image.shape:
            raise ValueError(f"frame {out.shape} differs from the source {self.image.shape}")
        rx0, ry0, rx1, ry1 = self.roi
        affine = self._crop_geometry(side)[0]
        animated = np.asarray(animated_crop, dtype=np.uint8)
        alpha, beta = self.alpha, self._beta
        if self.stitch:
            animated, keep = self.stitcher.stitch(animated)
            keep = warp(keep, self._crop_geometry(FLOW_SIZE)[0], (rx1 - rx0, ry1 - ry0),
                        "replicate")
            alpha = alpha * (1.0 - keep)
            beta = 1.0 - alpha
        # shift colour at crop resolution (cheap), then resample onto the frame's pixels
        animated = self.colour_matched(animated)
        tx, ty = int(round(affine[0, 2])), int(round(affine[1, 2]))
        if (np.array_equal(affine, [[1.0, 0.0, tx], [0.0, 1.0, ty]]) and min(tx, ty) >= 0
                and tx + rx1 - rx0 <= side and ty + ry1 - ry0 <= side):
            # a crop on whole pixels at 1:1 (--detail): the pixels themselves, no resampling
            animated = animated[ty:ty + ry1 - ry0, tx:tx + rx1 - rx0]
        else:
            animated = warp(animated, affine, (rx1 - rx0, ry1 - ry0), "replicate",
                            cv2.INTER_CUBIC)
        region = out[ry0:ry1, rx0:rx1]
        # (w1·a + w2·b) / (w1 + w2 + 1e-5), rounded: exactly b where w1 = 0
        out[ry0:ry1, rx0:rx1] = cv2.blendLinear(animated, region, alpha, beta)
        return out

    @property
    def stitcher(self) -> Stitcher:
        """The :class:`~fomm.faces.stitch.Stitcher` of this box (made on first use: it finds
        the head in the photo's crop)."""
        if self._stitcher is None:
            self._stitcher = Stitcher(crop(self.image, self.box, 256))
        return self._stitcher


class MultiPaster:
    """Paste one animated crop per face into the same frame; masks never overlap.

    Args:
        full_image: uint8 (H, W, 3) RGB source frame at full resolution.
        boxes: the square crop box of each face.
        crop_size: side of the animated crops, or one per box (crops at each box's own
            resolution, as ``--detail`` makes them).
        **kwargs: ``feather``, ``colour_match`` and ``stitch``, as for :class:`Paster`.
    """

    def __init__(
        self,
        full_image: np.ndarray,
        boxes: Sequence[Box],
        crop_size: int | Sequence[int],
        **kwargs: Any,
    ) -> None:
        if not boxes:
            raise ValueError("MultiPaster needs at least one box")
        sizes = [crop_size] * len(boxes) if isinstance(crop_size, int) else list(crop_size)
        if len(sizes) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(sizes)} crop sizes")
        self.pasters = [
            Paster(
                full_image,
                box,
                size,
                others=[b for j, b in enumerate(boxes) if j != i],
                **kwargs,
            )
            for i, (box, size) in enumerate(zip(boxes, sizes, strict=True))
        ]

    def paste(self, animated_crops: Sequence[np.ndarray]) -> np.ndarray:
        """Blend the crops (one per box, in the same order) into a copy of the source.

        Returns:
            uint8 (H, W, 3), the source resolution.
        """
        if len(animated_crops) != len(self.pasters):
            raise ValueError(f"{len(self.pasters)} faces but {len(animated_crops)} crops")
        frame = self.pasters[0].paste(animated_crops[0])
        for paster, animated in zip(self.pasters[1:], animated_crops[1:], strict=True):
            frame = paster.paste(animated, frame)
        return frame
