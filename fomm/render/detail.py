"""Detail at the photo's resolution: the dense motion moves the photo's own pixels (``--detail``).

The generator works at the model size S (256), so a face pasted back into a larger photo is an
upscaled S×S image. Its dense motion, though, is smooth: upsampled, it can warp the source crop
cut from the original photo at the output resolution R, which keeps the photo's texture. The
result is a frequency split at the band of ``cutoff`` pixels (at most S): below it, the network's
output everywhere (so colour, shading and anything generated come from the network); above it,
where the model copies the warped source (the bundled model's blend mask, the occlusion map of
official checkpoints), the sharp warp's detail, and elsewhere (an opened mouth, revealed
background) the network's own::

    out = up(net) + m · (H(sharp) − H(up(net))),   H(x) = x − up(down_cutoff(x))

Where the network reproduces the warped source, ``out`` is the sharp warp; where ``m`` is 0 it
is the network's output upsampled; ``m`` is smooth, so there is no seam, and low frequencies are
the network's everywhere, so there is no colour edge.

The sharp warp samples the photo between its pixels almost everywhere (the motion is smooth, not
whole pixels), and a bicubic kernel there keeps only part of pixel-level detail (film grain,
skin pores: 0.6–0.8 of its Laplacian variance at a quarter-pixel shift). So the source is first
doubled once with an interpolating spline of high order (its pixels kept, the spline through
them in between), and the warp samples that bicubically: detail up to the photo's own band
limit is then kept almost whole.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fomm.models import motion
from fomm.models.generator import GeneratorOutput, OcclusionAwareGenerator
from fomm.render.spline import doubled

DETAIL_MAX = 2048  # largest detail resolution (side of the output crop, pixels)
CUTOFF = 0.25  # the band split, as a fraction of the model size: above it, the photo's detail
MASK_CLOSE = 1.0 / 80  # dips in the mask narrower than about twice this (of its side) close
MASK_BLUR = 1.0 / 64  # soften the mask over about this fraction of its side
Sampler = Literal["spline", "bicubic"]


def pixel_box(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """The square box on whole pixels nearest ``box``: a crop of it at its own side copies the
    photo's pixels, and pasting back copies them again, with no resampling blur."""
    side = max(1, int(round(box[2] - box[0])))
    x0, y0 = int(round(box[0])), int(round(box[1]))
    return (x0, y0, x0 + side, y0 + side)


def detail_size(box_side: float, limit: int = DETAIL_MAX) -> int:
    """The detail resolution R for a crop box of ``box_side`` photo pixels: its side (at most
    ``limit``), also below the model size, where the photo's pixels then need no resampling."""
    return max(8, min(int(round(box_side)), limit))


def upsample_deformation(generator: OcclusionAwareGenerator, deformation: Tensor, size: int,
                         model_size: int) -> Tensor:
    """The (B, h, w, 2) dense motion resized to (B, size, size, 2), as the generator applies it.

    Bilinear with ``align_corners=False`` as in :meth:`OcclusionAwareGenerator.deform_input`;
    with PaddleGAN's predictor, first blended to the identity at the border of the model-size
    map, as the generator does for the warped source.
    """
    return _resize_grid(_motion_map(generator, deformation, model_size), size)


def _motion_map(generator: OcclusionAwareGenerator, deformation: Tensor,
                model_size: int) -> Tensor:
    """The (B, h, w, 2) dense motion that :func:`upsample_deformation` resizes: itself, or with
    PaddleGAN's predictor resized to the model size and blended to the identity at its border."""
    if generator.paddle_inference and not generator.training:
        grid = _resize_grid(deformation, model_size)
        weight = motion.border_blend_weights(model_size, model_size, 5, grid.dtype, grid.device)
        identity = motion.make_coordinate_grid(model_size, model_size, grid.dtype, grid.device)
        deformation = weight * grid + (1 - weight) * identity.unsqueeze(0)
    return deformation


def _resize_grid(grid: Tensor, side: int) -> Tensor:
    """(B, h, w, 2) → (B, side, side, 2), bilinear (``align_corners=False``)."""
    if _on_cpu(grid) and grid.shape[1] < side:  # channels last: cv2's own layout
        out = grid.new_empty(grid.shape[0], side, side, 2)
        for src, dst in zip(grid.contiguous().numpy(), out.numpy()):
            cv2.resize(src, (side, side), dst=dst, interpolation=cv2.INTER_LINEAR)
        return out
    grid = F.interpolate(grid.permute(0, 3, 1, 2), size=(side, side), mode="bilinear")
    return grid.permute(0, 2, 3, 1)


def sharp_warp(source: Tensor, grid: Tensor, align_corners: bool,
               sampler: Sampler = "spline", resize: bool = False) -> Tensor:
    """Warp the (1, 3, R, R) high-resolution source by a (B, R, R, 2) grid; (B, 3, R, R) in [0, 1].

    ``spline`` samples the source doubled by :func:`fomm.render.spline.upsample2x` bicubically: the
    source's own pixels where the grid points at them, and sub-pixel detail kept almost whole (a
    bicubic kernel at 2× loses little below the photo's band limit). ``bicubic`` samples the
    source itself. Outside the source the edge is repeated: only its detail is used. With
    ``resize``, ``grid`` is a smaller (B, h, w, 2) motion map, resized to R × R here (after the
    change to the doubled source's coordinates, which costs less on the small map).
    """
    size = source.shape[-1]
    if sampler == "spline":
        scale, shift = _doubled_coordinates(size, align_corners)
        source, grid, align_corners = doubled(source), grid * scale - shift, False
    return _sample(source, _resize_grid(grid, size) if resize else grid, align_corners)


def _doubled_coordinates(side: int, align_corners: bool) -> tuple[float, float]:
    """``(a, b)``: grid ``g`` on a source of ``side`` pixels points where ``a·g − b`` does on
    its doubled copy (pixel p of the source is pixel 2p there, ``align_corners=False``)."""
    return ((side - 1) / side if align_corners else 1.0), 1 / (2 * side)


def _sample(source: Tensor, grid: Tensor, align_corners: bool) -> Tensor:
    """Bicubic ``grid_sample`` of the (1, 3, ·, ·) source, border repeated, clamped to [0, 1]."""
    out = F.grid_sample(source.expand(grid.shape[0], -1, -1, -1), grid, mode="bicubic",
                        padding_mode="border", align_corners=align_corners)
    return out.clamp_(0.0, 1.0)


def copy_mask(out: GeneratorOutput) -> Tensor:
    """Where the network copies the warped source, (B, 1, h, w) in [0, 1]: the blend mask of
    ``blend_output`` models, else the occlusion map, else everywhere (the decoder then only
    redraws warped features)."""
    if out.blend_mask is not None:
        return out.blend_mask
    if out.occlusion_map is not None:
        return out.occlusion_map
    return out.prediction.new_ones(out.prediction.shape[0], 1, 1, 1)


def _on_cpu(image: Tensor) -> bool:
    """Whether cv2 can do ``image``'s resizes and windows: float32 on the CPU, no gradient."""
    return image.device.type == "cpu" and image.dtype == torch.float32 and not image.requires_grad


def _resample(image: Tensor, size: int, mode: str = "bicubic", antialias: bool = True,
              out: Tensor | None = None) -> Tensor:
    """(B, C, h, w) → (B, C, size, size): anti-aliased bilinear when shrinking (``mode`` there
    too without ``antialias``), ``mode`` (bilinear or bicubic) when enlarging; into ``out``.

    Enlarging on the CPU goes through ``cv2.resize`` plane by plane: the same numbers as
    ``F.interpolate`` to float rounding (half-pixel centres, the border repeated; cubic with
    a = −0.75), several times faster there.
    """
    side = image.shape[-1]
    if side < size and _on_cpu(image):
        if out is None:
            out = image.new_empty(*image.shape[:2], size, size)
        flag = cv2.INTER_CUBIC if mode == "bicubic" else cv2.INTER_LINEAR
        planes = out.view(-1, size, size).numpy()
        for src, dst in zip(image.reshape(-1, side, side).contiguous().numpy(), planes):
            cv2.resize(src, (size, size), dst=dst, interpolation=flag)
        return out
    if side == size:
        result = image
    elif side > size and antialias:
        result = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)
    else:
        result = F.interpolate(image, size=(size, size), mode=mode)
    return result if out is None else out.copy_(result)


def _window(mask: Tensor, radius: int, reduce: Literal["amax", "amin", "mean"]) -> Tensor:
    """Max, min or mean of (B, 1, h, w) ``mask`` over a (2r+1)² square, the border repeated.

    On the CPU, ``cv2.dilate``/``erode``/``blur`` per plane (the same numbers, the mean to float
    rounding); elsewhere separable (rows, then columns) through ``unfold``: the same numbers as
    a square ``max_pool2d``/``avg_pool2d`` of the padded mask.
    """
    if _on_cpu(mask):
        kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
        out = torch.empty_like(mask)
        for src, dst in zip(mask.reshape(-1, *mask.shape[-2:]).contiguous().numpy(),
                            out.view(-1, *mask.shape[-2:]).numpy()):
            if reduce == "mean":
                cv2.blur(src, kernel.shape, dst=dst, borderType=cv2.BORDER_REPLICATE)
            else:
                op = cv2.dilate if reduce == "amax" else cv2.erode
                op(src, kernel, dst=dst, borderType=cv2.BORDER_REPLICATE)
        return out
    for dim, pad in ((3, (radius, radius, 0, 0)), (2, (0, 0, radius, radius))):
        windows = F.pad(mask, pad, mode="replicate").unfold(dim, 2 * radius + 1, 1)
        mask = getattr(windows, reduce)(-1)  # (B, 1, h, w, 2r+1) → (B, 1, h, w)
    return mask


def _shape_mask(mask: Tensor) -> Tensor:
    """(B, 1, h, w) mask → (B, 1, h, w) in [0, 1]: :func:`soft_mask` before its resize."""
    mask = mask.float().clamp(0.0, 1.0)
    side = mask.shape[-1]
    close = max(1, round(side * MASK_CLOSE))
    mask = _window(_window(mask, close, "amax"), close, "amin")
    radius = max(1, round(side * MASK_BLUR))
    for _ in range(2):  # two box blurs: close to a Gaussian
        mask = _window(mask, radius, "mean")
    return mask


def soft_mask(mask: Tensor, size: int) -> Tensor:
    """(B, 1, h, w) mask → (B, 1, size, size) in [0, 1], shaped at its own resolution.

    A grey-level closing first drops thin dips (the decoder redraws some edges of eyes and
    lips, which the warp carries just as well) while wide regions it generates (an opened
    mouth) stay; a blur then fades the detail in and out without an edge.
    """
    return _resample(_shape_mask(mask), size, "bilinear", antialias=False)


def combine(network: Tensor, sharp: Tensor, mask: Tensor, cutoff: int,
            out: Tensor | None = None) -> Tensor:
    """Network output below the ``cutoff`` band, the sharp warp's detail above it where ``mask``.

    Args:
        network: (B, 3, S, S) generator output in [0, 1].
        sharp: (B, 3, R, R) source warped at the output resolution R.
        mask: (B, 1, h, w) in [0, 1], 1 where the network copies the warped source.
        cutoff: side of the low band in pixels (<= S).
        out: (B, 3, R, R) float32 to write the result into (not ``sharp``), or None.

    Returns:
        (B, 3, R, R) in [0, 1]: ``out`` when given.
    """
    # H(sharp) - H(net_up) = sharp - net_up - up(down(sharp) - down(net)): one upsampling
    low = _resample(sharp, cutoff) - _resample(network, cutoff)  # (B, 3, cutoff, cutoff)
    shaped = _shape_mask(mask)  # (B, 1, h, w), resized per frame below
    batch, size = sharp.shape[0], sharp.shape[-1]
    out = torch.empty_like(sharp) if out is None else out
    # one frame at a time, into buffers reused: the (3, R, R) intermediates stay in the caches
    # and in memory already mapped (a whole batch at R = 1024 is 100 MB a tensor)
    net_up, low_up = (sharp.new_empty(1, 3, size, size) for _ in range(2))
    soft = sharp.new_empty(1, 1, size, size)
    for b in range(batch):
        frame = slice(b, b + 1)
        _resample(network[frame], size, out=net_up)
        _resample(low[frame], size, "bilinear", out=low_up)
        _resample(shaped[frame if shaped.shape[0] > 1 else slice(0, 1)], size, "bilinear",
                  antialias=False, out=soft)
        result = torch.sub(sharp[frame], net_up, out=out[frame])
        result.sub_(low_up).mul_(soft).add_(net_up)  # net_up + soft · (sharp − net_up − low)
        result.clamp_(0.0, 1.0)
    return out


def render(generator: OcclusionAwareGenerator, out: GeneratorOutput, source: Tensor,
           cutoff: float = CUTOFF, sampler: Sampler = "spline",
           out_frames: Tensor | None = None) -> Tensor:
    """The generator's output at the resolution of ``source`` with the photo's detail.

    Args:
        generator: the generator that produced ``out`` (its flavour decides the sampling).
        out: its output for B frames, with ``deformation`` (and a mask, see :func:`copy_mask`).
        source: (1, 3, R, R) float32 in [0, 1], the source crop at the output resolution.
        cutoff: the band split as a fraction of the model size.
        sampler: see :func:`sharp_warp`.
        out_frames: (B, 3, R, R) float32 to write the frames into, or None.

    Returns:
        (B, 3, R, R) float32 in [0, 1] (``out_frames`` when given); the upsampled network
        output when the model has no dense motion.
    """
    network = out.prediction.float()
    size = source.shape[-1]
    if out.deformation is None:
        frames = _resample(network, size).clamp(0.0, 1.0)
        return frames if out_frames is None else out_frames.copy_(frames)
    mask = copy_mask(out)
    grid = _motion_map(generator, out.deformation.float(), network.shape[-1])
    sharp = sharp_warp(source, grid, generator.align_corners, sampler, resize=True)
    band = max(8, min(network.shape[-1], round(network.shape[-1] * cutoff)))
    return combine(network, sharp, mask, band, out=out_frames)


def render_batched(generator: OcclusionAwareGenerator, out: GeneratorOutput, source: Tensor,
                   pixels: int = 2 * 1024 * 1024, sampler: Sampler = "spline") -> Tensor:
    """:func:`render` a few frames at a time, so that the intermediates of large outputs stay
    within about ``pixels`` output pixels per step (memory does not grow with the batch).

    Returns:
        (B, 3, R, R) float32 in [0, 1].
    """
    size = source.shape[-1]
    step = max(1, pixels // (size * size))
    batch = out.prediction.shape[0]
    result = torch.empty(batch, 3, size, size, dtype=torch.float32, device=source.device)
    for start in range(0, batch, step):
        part = slice(start, start + step)
        render(generator, GeneratorOutput(*(None if field is None else field[part]
                                            for field in out)),
               source, sampler=sampler, out_frames=result[part])
    return result
