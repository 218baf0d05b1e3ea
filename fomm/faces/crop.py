"""Square face crop boxes framed like FOMM's VoxCeleb training data, and crop ⇄ frame affines.

Framing, measured with our detector on already-framed driving clips (lp_d0/3/6/10/11/12/14/18,
pg_fom_dv, tp_driving, pg_mayiyahei; median over 15 frames each, then over clips): the crop side is
1.51× the MTCNN face box height (range 1.32–1.76) and 2.06× its width; the face box centre sits 0.07
face heights below the crop centre and horizontally centred. Hence the defaults ``margin=0.25``
(side = (1 + 2·0.25) × face height) and ``shift_y=-0.07``: the face fills about the central half of
the crop's width and two thirds of its height, with hair above and the chin and neck below.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from fomm.faces.detect import Box, Face

MARGIN = 0.25  # face size added on each side: crop side = (1 + 2 * MARGIN) * face size
SHIFT_Y = -0.07  # crop centre relative to the face box centre, in face sizes (negative: up)
Border = Literal["replicate", "reflect", "black"]
_BORDERS = {
    "replicate": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,
    "black": cv2.BORDER_CONSTANT,
}


def face_size(box: Box) -> float:
    """The size measure the framing scales with: the longer side of the face box (its height
    for MTCNN boxes, which is steadier than the width when the head turns)."""
    return max(box[2] - box[0], box[3] - box[1])


def square_box(
    face_or_box: Face | Box,
    image_shape: tuple[int, ...] | None = None,
    margin: float = MARGIN,
    shift_y: float = SHIFT_Y,
    fit: bool = True,
) -> Box:
    """A square crop box around a face, framed like the training data.

    Args:
        face_or_box: a :class:`Face` or its (x0, y0, x1, y1) box in pixels.
        image_shape: (H, W, ...) of the image; needed only when ``fit`` is True.
        margin: face size added on each side; the side is ``(1 + 2 * margin) * face_size``.
        shift_y: vertical offset of the crop centre from the face centre, in face sizes.
        fit: keep the box inside the image where possible: shrink it to the image's short side
            (never below ``(1 + margin)`` face sizes) and shift it inwards. What still sticks out
            is padded by :func:`crop`.

    Returns:
        (x0, y0, x1, y1) float pixels, x1 - x0 == y1 - y0; it may extend past the image.
    """
    box = face_or_box.box if isinstance(face_or_box, Face) else face_or_box
    size = face_size(box)
    cx = (box[0] + box[2]) / 2
    cy = (box[1] + box[3]) / 2 + shift_y * size
    side = (1 + 2 * margin) * size
    if fit and image_shape is not None:
        return fit_square((cx, cy), side, image_shape, min_side=(1 + margin) * size)
    half = side / 2
    return (cx - half, cy - half, cx + half, cy + half)


def fit_square(
    centre: tuple[float, float], side: float, image_shape: tuple[int, ...], min_side: float = 0.0
) -> Box:
    """A square box moved (and shrunk, down to ``min_side``) to stay inside the image if it can.

    Args:
        centre: (cx, cy) wanted centre in pixels.
        side: wanted side in pixels.
        image_shape: (H, W, ...) of the image.
        min_side: never shrink below this; a box still too large is centred on the image.
    """
    height, width = image_shape[:2]
    side = max(min(side, min(height, width)), min(side, min_side))
    cx = _clamp_centre(centre[0], side, width)
    cy = _clamp_centre(centre[1], side, height)
    half = side / 2
    return (cx - half, cy - half, cx + half, cy + half)


def _clamp_centre(centre: float, side: float, extent: int) -> float:
    if side >= extent:
        return extent / 2
    return min(max(centre, side / 2), extent - side / 2)


def crop_to_image_affine(box: Box, size: int) -> np.ndarray:
    """(2, 3) float64 affine taking crop pixel indices to image pixel indices (cv2's convention)."""
    x0, y0, x1, y1 = box
    sx, sy = (x1 - x0) / size, (y1 - y0) / size
    # continuous coords: crop u maps to x0 + u * sx; cv2 indexes pixel centres, hence the 0.5 terms
    return np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]])


def image_to_crop_affine(box: Box, size: int) -> np.ndarray:
    """(2, 3) float64 inverse of :func:`crop_to_image_affine`."""
    return cv2.invertAffineTransform(crop_to_image_affine(box, size))


def map_points(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) pixel-index points."""
    return np.asarray(points, dtype=np.float64) @ affine[:, :2].T + affine[:, 2]


def crop(image: np.ndarray, box: Box, size: int, border: Border = "replicate") -> np.ndarray:
    """Cut ``box`` out of ``image`` and resize it to size × size, with sub-pixel accuracy.

    Args:
        image: uint8 (H, W, 3) RGB.
        box: (x0, y0, x1, y1) in pixels; may extend past the image.
        size: output side in pixels.
        border: how the parts of the box outside the image are filled: edge pixels repeated,
            mirrored, or black.

    Returns:
        uint8 (size, size, 3) RGB.
    """
    if not box[2] > box[0] or not box[3] > box[1]:
        raise ValueError(f"empty crop box {box}")
    return warp(image, crop_to_image_affine(box, size), (size, size), border)


def warp(
    source: np.ndarray,
    affine: np.ndarray,
    dsize: tuple[int, int],
    border: Border = "replicate",
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Resample ``source`` at ``affine`` (destination pixel index → source pixel index).

    Downscaling is anti-aliased: a Gaussian pyramid brings the scale below 2 before the warp,
    working only on the region of ``source`` that the destination covers.

    Args:
        source: (H, W, C) image.
        affine: (2, 3) map from destination to source pixel indices (an axis-aligned scale).
        dsize: (width, height) of the result.
    """
    affine = np.asarray(affine, dtype=np.float64)
    scale = max(abs(affine[0, 0]), abs(affine[1, 1]))
    if scale >= 2.0:
        # cut the covered integer region first, so the pyramid only works on what we need
        corners = map_points(affine, np.array([[-0.5, -0.5], [dsize[0] - 0.5, dsize[1] - 0.5]]))
        pad = int(np.ceil(4 * scale)) + 2  # room for the pyramid's blur kernels
        height, width = source.shape[:2]
        ix0 = max(int(np.floor(corners[:, 0].min())) - pad, 0)
        iy0 = max(int(np.floor(corners[:, 1].min())) - pad, 0)
        ix1 = min(int(np.ceil(corners[:, 0].max())) + pad, width)
        iy1 = min(int(np.ceil(corners[:, 1].max())) + pad, height)
        if ix1 > ix0 and iy1 > iy0:
            source = source[iy0:iy1, ix0:ix1]
            affine = affine.copy()
            affine[:, 2] -= (ix0, iy0)
        while scale >= 2.0 and min(source.shape[:2]) >= 2:
            source = cv2.pyrDown(source)
            affine = affine / 2.0  # pyrDown's output pixel j is centred on input pixel 2j
            scale /= 2.0
    return cv2.warpAffine(
        source,
        affine,
        dsize,
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=_BORDERS[border],
        borderValue=(0, 0, 0),
    )
