"""Training augmentations of the original recipe: flips, random resize and crop on uint8 frames,
colour jitter on tensors; and fomm's pair motion (the driving frame moved by a random similarity).
:func:`geometric` runs the three geometric steps and moves points (landmarks) with the frames.

The jitter is torchvision's ``ColorJitter`` maths written out (brightness, contrast, saturation,
hue in a random order, one set of factors for the whole clip), drawn from a numpy ``Generator``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fomm.config import AugmentationParams
from fomm.media.image import resize, similarity_matrix, similarity_warp


def _grey(x: Tensor) -> Tensor:
    """ITU-R 601 luma of (N, 3, H, W) → (N, 1, H, W), as PIL's ``convert('L')``."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _rgb_to_hsv(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, (g - b) / safe,
                    torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)),
                    torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(x: Tensor) -> Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = torch.stack([torch.stack(c, 1) for c in
                         ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    index = i.unsqueeze(0).unsqueeze(2).expand(1, -1, 3, -1, -1)  # (1, N, 3, H, W)
    return table.gather(0, index).squeeze(0)


def colour_jitter(frames: Tensor, params: AugmentationParams, rng: np.random.Generator) -> Tensor:
    """Brightness, contrast, saturation and hue in a random order, the same for every frame.

    Factors as torchvision's ColorJitter: U[max(0, 1 - b), 1 + b] for brightness, contrast and
    saturation, U[-h, h] for hue (a rotation of the hue circle).

    Args:
        frames: (N, 3, H, W) float in [0, 1].
    """
    ops = []
    if params.brightness > 0:
        f = rng.uniform(max(0.0, 1 - params.brightness), 1 + params.brightness)
        ops.append(lambda x, f=f: x * f)
    if params.saturation > 0:
        f = rng.uniform(max(0.0, 1 - params.saturation), 1 + params.saturation)
        ops.append(lambda x, f=f: _grey(x) + f * (x - _grey(x)))
    if params.hue > 0:
        f = rng.uniform(-params.hue, params.hue)

        def hue(x: Tensor, f: float = f) -> Tensor:
            hsv = _rgb_to_hsv(x)
            hsv = torch.cat([(hsv[:, :1] + f) % 1.0, hsv[:, 1:]], 1)
            return _hsv_to_rgb(hsv)

        ops.append(hue)
    if params.contrast > 0:
        f = rng.uniform(max(0.0, 1 - params.contrast), 1 + params.contrast)
        ops.append(lambda x, f=f: _grey(x).mean(dim=(1, 2, 3), keepdim=True) * (1 - f) + f * x)
    for i in rng.permutation(len(ops)):
        frames = ops[i](frames).clamp(0.0, 1.0)
    return frames


def flip(frames: np.ndarray, params: AugmentationParams, rng: np.random.Generator) -> np.ndarray:
    """Time flip (reverse the pair) or horizontal flip, each with probability 1/2.

    As the original ``RandomFlip``, a time flip returns at once, so a horizontal flip happens
    only when the time flip did not (probability 1/4 with both on).
    """
    return _flip(frames, None, params, rng)[0]


def _flip(frames: np.ndarray, points: np.ndarray | None, params: AugmentationParams,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    if rng.random() < 0.5 and params.time_flip:
        return frames[::-1], None if points is None else points[::-1]
    if rng.random() < 0.5 and params.horizontal_flip:
        if points is not None:
            points = points.copy()
            points[..., 0] = frames.shape[2] - 1 - points[..., 0]
        return frames[:, :, ::-1], points
    return frames, points


def resize_and_crop(frames: np.ndarray, params: AugmentationParams,
                    rng: np.random.Generator) -> np.ndarray:
    """The original ``RandomResize`` then ``RandomCrop``, the same for every frame of the clip.

    ``resize_param.ratio``: both sides scaled by one factor from U[low, high]. ``crop_param.size``:
    a random (H, W) window, after edge-padding (centred) any side that is shorter.  With a ratio
    around 1 and the frame size as crop size this zooms in and out and shifts the object.

    Args:
        frames: (N, H, W, 3) uint8.
    Returns:
        (N, H', W', 3) uint8: the crop size when ``crop_size`` is set.
    """
    return _resize_and_crop(frames, None, params, rng)[0]


def _resize_and_crop(frames: np.ndarray, points: np.ndarray | None, params: AugmentationParams,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    if points is not None:
        points = points.copy()
    if params.resize_ratio is not None:
        factor = rng.uniform(*params.resize_ratio)
        h, w = frames.shape[1:3]
        size = (max(1, int(w * factor)), max(1, int(h * factor)))
        frames = np.stack([resize(f, size) for f in frames])
        if points is not None:  # pixel centres keep their place in the image
            points = (points + 0.5) * (size[0] / w, size[1] / h) - 0.5
    if params.crop_size is not None:
        ch, cw = (int(v) for v in params.crop_size)
        h, w = frames.shape[1:3]
        pad_h = (0, 0) if ch <= h else ((ch - h) // 2, (ch - h + 1) // 2)
        pad_w = (0, 0) if cw <= w else ((cw - w) // 2, (cw - w + 1) // 2)
        if pad_h != (0, 0) or pad_w != (0, 0):
            frames = np.pad(frames, ((0, 0), pad_h, pad_w, (0, 0)), mode="edge")
        h, w = frames.shape[1:3]
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        frames = frames[:, y:y + ch, x:x + cw]
        if points is not None:
            points += (pad_w[0] - x, pad_h[0] - y)
    return frames, points


def pair_motion(frames: np.ndarray, params: AugmentationParams,
                rng: np.random.Generator) -> np.ndarray:
    """Move the last frame (the driving one) by a random rotation, zoom and shift.

    Face crops made by a stabilised tracker hold the head nearly still, so a model can rebuild
    them with keypoints that sit at fixed image positions; a known extra motion between source
    and driving frame must be explained by keypoints that follow the face. Borders are reflected.

    Args:
        frames: (2, H, W, 3) uint8, source then driving.
    Returns:
        The same array when no motion is drawn, else a new one.
    """
    return _pair_motion(frames, None, params, rng)[0]


def _pair_motion(frames: np.ndarray, points: np.ndarray | None, params: AugmentationParams,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    p = params
    if p.pair_probability <= 0 or rng.random() >= p.pair_probability:
        return frames, points
    h, w = frames.shape[1:3]
    degrees = rng.uniform(-p.pair_rotation, p.pair_rotation)
    scale = rng.uniform(1 - p.pair_scale, 1 + p.pair_scale)
    shift = rng.uniform(-p.pair_translation, p.pair_translation, 2) * (w, h)
    shift = (float(shift[0]), float(shift[1]))
    out = frames.copy()
    out[-1] = similarity_warp(frames[-1], degrees, scale, shift)
    if points is not None:
        matrix = similarity_matrix((w, h), degrees, scale, shift)
        points = points.copy()
        points[-1] = points[-1] @ matrix[:, :2].T + matrix[:, 2]
    return out, points


def geometric(frames: np.ndarray, points: np.ndarray | None, params: AugmentationParams,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`flip`, :func:`resize_and_crop` and :func:`pair_motion` (same draws), moving points.

    Args:
        frames: (N, H, W, C) uint8.
        points: (N, P, 2) float pixel coordinates (x, y) of each frame, pixel centres at integers;
            or None.
    Returns:
        The frames as the three functions return them, and the points where they moved to.
    """
    frames, points = _flip(frames, points, params, rng)
    frames, points = _resize_and_crop(frames, points, params, rng)
    return _pair_motion(frames, points, params, rng)
