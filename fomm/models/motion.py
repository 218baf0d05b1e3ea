"""Keypoint and motion maths of the First Order Motion Model (Siarohin et al., NeurIPS 2019).

Pure torch: tensors in, tensors out; no modules, no numpy, no I/O.  Coordinates are normalised to
[-1, 1] with (x, y) order in the last dimension, the convention of ``F.grid_sample``.  Letters in
shape comments: B batch, K keypoints, H W spatial size.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class Keypoints(NamedTuple):
    """Keypoints with their local affine approximations (paper Sec. 3.1)."""

    value: Tensor  # (B, K, 2), x and y in [-1, 1]
    jacobian: Tensor | None = None  # (B, K, 2, 2)

    def to(self, *args, **kwargs) -> Keypoints:
        jac = None if self.jacobian is None else self.jacobian.to(*args, **kwargs)
        return Keypoints(self.value.to(*args, **kwargs), jac)

    def select(self, index: slice | Tensor | list[int]) -> Keypoints:
        """The batch items at ``index`` (a slice, index list or index tensor)."""
        jac = None if self.jacobian is None else self.jacobian[index]
        return Keypoints(self.value[index], jac)

    @staticmethod
    def cat(items: list[Keypoints]) -> Keypoints:
        """Join batches of keypoints along the batch dimension."""
        jac = None
        if items[0].jacobian is not None:
            jac = torch.cat([k.jacobian for k in items])
        return Keypoints(torch.cat([k.value for k in items]), jac)

    def expand(self, batch: int) -> Keypoints:
        """Broadcast a batch of one to ``batch`` items (no copy)."""
        jac = None if self.jacobian is None else self.jacobian.expand(batch, -1, -1, -1)
        return Keypoints(self.value.expand(batch, -1, -1), jac)


def make_coordinate_grid(height: int, width: int, dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None) -> Tensor:
    """Identity sampling grid: ``grid[i, j] = (2 j / (W - 1) - 1, 2 i / (H - 1) - 1)``.

    Returns:
        (H, W, 2) tensor, x then y, corners at exactly ±1.
    """
    x = torch.arange(width, dtype=dtype, device=device)
    y = torch.arange(height, dtype=dtype, device=device)
    x = 2 * (x / (width - 1)) - 1
    y = 2 * (y / (height - 1)) - 1
    yy = y.view(-1, 1).expand(height, width)
    xx = x.view(1, -1).expand(height, width)
    return torch.stack([xx, yy], dim=2)


def kp2gaussian(value: Tensor, height: int, width: int, kp_variance: float = 0.01) -> Tensor:
    """Gaussian heatmaps centred on keypoints: ``exp(-|z - p_k|^2 / (2 sigma^2))`` (paper eq. 6).

    Args:
        value: (B, K, 2) keypoint positions.
    Returns:
        (B, K, H, W) heatmaps, peak 1.
    """
    grid = make_coordinate_grid(height, width, value.dtype, value.device)  # (H, W, 2)
    diff = grid.view(1, 1, height, width, 2) - value.unsqueeze(2).unsqueeze(2)  # (B, K, H, W, 2)
    return torch.exp(-0.5 * (diff**2).sum(-1) / kp_variance)


def heatmap_to_keypoints(heatmap: Tensor) -> Tensor:
    """Soft-argmax: the expected coordinate under each normalised heatmap (paper Sec. 3.1).

    Args:
        heatmap: (B, K, H, W), each map sums to 1.
    Returns:
        (B, K, 2) keypoint positions.
    """
    _, _, h, w = heatmap.shape
    grid = make_coordinate_grid(h, w, heatmap.dtype, heatmap.device)  # (H, W, 2)
    return (heatmap.unsqueeze(-1) * grid.view(1, 1, h, w, 2)).sum(dim=(2, 3))


def heatmap_difference(kp_driving: Tensor, kp_source: Tensor, height: int, width: int,
                       kp_variance: float = 0.01) -> Tensor:
    """Heatmap representation H_k = G(p_k^D) - G(p_k^S), plus a zero map for the background.

    Returns:
        (B, K + 1, 1, H, W), background first.
    """
    heatmap = kp2gaussian(kp_driving, height, width, kp_variance) - kp2gaussian(
        kp_source, height, width, kp_variance)
    zeros = heatmap.new_zeros(heatmap.shape[0], 1, height, width)
    return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)


def sparse_motions(kp_source: Keypoints, kp_driving: Keypoints, height: int, width: int) -> Tensor:
    """First-order Taylor approximations of the backward motion around each keypoint (paper eq. 4).

    ``T_k(z) = p_k^S + J_k (z - p_k^D)`` with ``J_k = J_k^S (J_k^D)^-1``; the background
    transform is the identity.

    Returns:
        (B, K + 1, H, W, 2) sampling grids into the source, identity first.
    """
    bs, num_kp, _ = kp_driving.value.shape
    identity = make_coordinate_grid(height, width, kp_source.value.dtype, kp_source.value.device)
    identity = identity.view(1, 1, height, width, 2)
    coords = identity - kp_driving.value.view(bs, num_kp, 1, 1, 2)  # (B, K, H, W, 2)
    if kp_driving.jacobian is not None and kp_source.jacobian is not None:
        jacobian = torch.matmul(kp_source.jacobian, inverse_2x2(kp_driving.jacobian))  # (B,K,2,2)
        # J @ v for every pixel, written as an einsum rather than the original's repeat+matmul
        coords = torch.einsum("bkij,bkhwj->bkhwi", jacobian, coords)
    driving_to_source = coords + kp_source.value.view(bs, num_kp, 1, 1, 2)
    return torch.cat([identity.expand(bs, 1, height, width, 2), driving_to_source], dim=1)


def inverse_2x2(matrix: Tensor) -> Tensor:
    """Closed-form inverse of (..., 2, 2) matrices: ``[[d, -b], [-c, a]] / (ad - bc)``.

    Same values as ``torch.inverse`` up to float rounding, but exportable to ONNX (which has no
    matrix inverse) and cheaper than a batched LU for 2×2 blocks.
    """
    a, b = matrix[..., 0, 0], matrix[..., 0, 1]
    c, d = matrix[..., 1, 0], matrix[..., 1, 1]
    det = a * d - b * c
    row0 = torch.stack([d, -b], dim=-1)
    row1 = torch.stack([-c, a], dim=-1)
    return torch.stack([row0, row1], dim=-2) / det[..., None, None]


def warp(image: Tensor, grid: Tensor, align_corners: bool = False) -> Tensor:
    """Backward warp with bilinear sampling and zero padding.

    The original code passes no options to ``grid_sample`` (so ``align_corners=False`` on
    torch >= 1.3); PaddleGAN samples with ``align_corners=True``.
    """
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=align_corners)


def convex_hull_area(points: Tensor) -> Tensor:
    """Area of the convex hull of 2-D points (Andrew's monotone chain + shoelace), in float64.

    Args:
        points: (N, 2).
    Returns:
        scalar float64 tensor (0 for fewer than three non-collinear points).
    """
    pts = sorted(map(tuple, points.detach().double().cpu().tolist()))
    if len(pts) < 3:
        return torch.zeros((), dtype=torch.float64)

    def cross(o, a, b) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    upper: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    area = 0.0
    for (x0, y0), (x1, y1) in zip(hull, hull[1:] + hull[:1]):
        area += x0 * y1 - x1 * y0
    return torch.tensor(abs(area) / 2, dtype=torch.float64)


def movement_scale(kp_source: Keypoints, kp_driving_initial: Keypoints) -> float:
    """Adapt-scale factor ``sqrt(area(hull(p^S))) / sqrt(area(hull(p^D_1)))`` of the first items.

    Compensates for a source object that is bigger or smaller than the driving one (original
    ``normalize_kp(adapt_movement_scale=True)``).
    """
    source_area = float(convex_hull_area(kp_source.value[0]))
    driving_area = float(convex_hull_area(kp_driving_initial.value[0]))
    if driving_area <= 0:
        return 1.0
    return math.sqrt(source_area) / math.sqrt(driving_area)


def relative_motion(kp_source: Keypoints, kp_driving: Keypoints, kp_driving_initial: Keypoints,
                    scale: float = 1.0, relative_jacobian: bool = True) -> Keypoints:
    """Shift the source keypoints by the driving motion since the first frame (paper Sec. 3.4).

    ``p = p^S + s (p^D_t - p^D_1)`` and ``J = J^D_t (J^D_1)^-1 J^S``.  Batched over driving frames:
    ``kp_driving`` is (B, K, ·), the source and initial keypoints are (1, K, ·) or (B, K, ·).
    """
    diff = kp_driving.value - kp_driving_initial.value
    diff = diff * scale
    value = diff + kp_source.value
    jacobian = kp_driving.jacobian
    if relative_jacobian and kp_driving.jacobian is not None:
        assert kp_driving_initial.jacobian is not None and kp_source.jacobian is not None
        jac_diff = torch.matmul(kp_driving.jacobian, inverse_2x2(kp_driving_initial.jacobian))
        jacobian = torch.matmul(jac_diff, kp_source.jacobian)
    return Keypoints(value, jacobian)


HEAD_FIT_FLOOR = 0.005  # the robust fit's least residual scale (normalised units: 0.64 px at 256)
HEAD_FIT_TUKEY = 4.685  # Tukey's biweight cut-off, in residual scales
HEAD_FIT_STEPS = 3  # reweighted refits after the least-median start
# head_motion: a keypoint within this distance (normalised units) of where the head's transform
# takes it keeps part of its own motion (Tukey's biweight): the head's turn out of the image plane
# (tuning set: head within 1.13 deg, 0.033 eye distances; mouth spread 0.18 with the keypoints
# on the mouth and jaw keeping none: head_motion's ``kept``)
HEAD_KEEP = 0.10


def _complex(points: Tensor) -> Tensor:
    """(..., 2) x, y → (...) complex128 x + iy."""
    return torch.complex(points[..., 0].double(), points[..., 1].double())


def _similarity_fit(zp: Tensor, zq: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted least-squares ``q ≈ a p + b`` of complex points (B, K) with weights (B, K):
    the similarity (rotation, uniform scale, translation) as complex ``a`` and ``b``, (B,)."""
    total = weights.sum(-1).clamp_min(1e-12)
    cp = (weights * zp).sum(-1) / total
    cq = (weights * zq).sum(-1) / total
    dp, dq = zp - cp[:, None], zq - cq[:, None]
    a = (weights * dp.conj() * dq).sum(-1) / (weights * dp.abs() ** 2).sum(-1).clamp_min(1e-12)
    return a, cq - a * cp


def head_transform(points_from: Tensor, points_to: Tensor) -> Tensor:
    """The head's motion between two sets of keypoints: the similarity transform (rotation,
    uniform scale, translation) that maps ``points_from`` onto ``points_to`` where they move
    together, robust to the points that move on their own (a mouth opening, a brow raised).

    A least-median-of-squares start over the similarities that map each pair of points
    exactly, then ``HEAD_FIT_STEPS`` least-squares refits weighted by Tukey's biweight of the
    residuals (scale from the median residual, at least ``HEAD_FIT_FLOOR``). A rigid motion of
    all points is returned exactly; points whose own motion is several residual scales from the
    rest's get no weight.

    Args:
        points_from: (B, K, 2) or (1, K, 2) positions (K ≥ 2).
        points_to: (B, K, 2) positions.
    Returns:
        (B, 2, 3) float64 matrices ``[A | t]``, ``to ≈ A @ from + t`` (``A`` = ``s R``).
    """
    zp = _complex(points_from).expand(points_to.shape[:-1])
    zq = _complex(points_to)
    bs, num = zq.shape
    weights = torch.ones(bs, num, dtype=torch.float64, device=zq.device)
    if num >= 3:
        pairs = torch.combinations(torch.arange(num, device=zq.device), 2)  # (P, 2)
        i, j = pairs[:, 0], pairs[:, 1]
        span = zp[:, j] - zp[:, i]
        span = torch.where(span.abs() > 1e-12, span, torch.full_like(span, 1e-12))
        a = (zq[:, j] - zq[:, i]) / span  # (B, P)
        b = zq[:, i] - a * zp[:, i]
        residual = (a[..., None] * zp[:, None] + b[..., None] - zq[:, None]).abs()  # (B, P, K)
        median, best = residual.kthvalue(num // 2 + 1, dim=-1).values.min(-1)  # (B,)
        # Rousseeuw's consistency factor for the least-median scale of a 4-parameter fit
        scale = 1.4826 * (1 + 5 / max(num - 4, 1)) * median
        cut = HEAD_FIT_TUKEY * scale.clamp_min(HEAD_FIT_FLOOR)[:, None]
        residual = residual[torch.arange(bs, device=zq.device), best]  # (B, K)
        for _ in range(HEAD_FIT_STEPS):
            weights = (1 - (residual / cut).clamp(max=1) ** 2) ** 2
            a, b = _similarity_fit(zp, zq, weights)
            residual = (a[:, None] * zp + b[:, None] - zq).abs()
    else:
        a, b = _similarity_fit(zp, zq, weights)
    linear = torch.stack([torch.stack([a.real, -a.imag], -1), torch.stack([a.imag, a.real], -1)],
                         -2)
    return torch.cat([linear, torch.stack([b.real, b.imag], -1)[..., None]], -1)


def head_motion(kp_source: Keypoints, kp_driving: Keypoints, kp_driving_initial: Keypoints,
                scale: float = 1.0, keep: float = HEAD_KEEP,
                kept: Tensor | None = None) -> Keypoints:
    """The source keypoints moved by the driver's head motion alone (its expression left out).

    The motion since ``kp_driving_initial`` is fitted as one similarity transform
    (:func:`head_transform`); the source keypoints turn and scale by its linear part about their
    centroid, and move by the displacement (times ``scale``) of the initial keypoints' centroid
    under it. The jacobians turn with the linear part: ``J = A J^S``. With the source's
    keypoints at the initial ones' and ``scale`` 1, that is the transform itself.

    A keypoint whose own relative motion (:func:`relative_motion`) ends within ``keep`` of that
    keeps it in part, by Tukey's biweight of the distance (all of it at 0, none from ``keep``
    on): the small departures from a flat transform that a head turning out of the image plane
    makes. A mouth or brow that moves further moves with the head only. ``keep`` 0: the
    transform alone. ``kept``: (K,) or (1 or B, K) factors 0..1 on that share per keypoint
    (None: 1), e.g. 0 for the keypoints on the mouth and jaw, whose small motions are the
    expression's rather than the turn's (:meth:`fomm.expression.ExpressionLayer.head_keep`).

    Returns:
        (B, K, ·) keypoints for the generator, like :func:`relative_motion`'s.
    """
    fit = head_transform(kp_driving_initial.value, kp_driving.value)  # (B, 2, 3) float64
    linear, shift = fit[..., :2], fit[..., 2]
    source = kp_source.value.double()
    initial = kp_driving_initial.value.double().mean(-2)  # (1 or B, 2)
    centre = source.mean(-2, keepdim=True)
    moved = torch.einsum("bij,bj->bi", linear, initial.expand(shift.shape)) + shift
    value = centre + torch.einsum("bij,bkj->bki", linear, source.expand(
        fit.shape[0], -1, -1) - centre) + scale * (moved - initial)[:, None]
    jacobian = None
    if kp_source.jacobian is not None:
        jacobian = torch.matmul(linear[:, None].to(kp_source.jacobian.dtype), kp_source.jacobian)
    head = Keypoints(value.to(kp_source.value.dtype), jacobian)
    if keep <= 0:
        return head
    own = relative_motion(kp_source, kp_driving, kp_driving_initial, scale)
    distance = (own.value - head.value).norm(dim=-1)  # (B, K)
    weight = (1 - (distance / keep).clamp(max=1) ** 2) ** 2
    if kept is not None:
        weight = weight * kept.to(weight)
    value = head.value + weight[..., None] * (own.value - head.value)
    if jacobian is not None and own.jacobian is not None:
        jacobian = jacobian + weight[..., None, None] * (own.jacobian - jacobian)
    return Keypoints(value, jacobian)


def normalize_kp(kp_source: Keypoints, kp_driving: Keypoints, kp_driving_initial: Keypoints,
                 relative: bool = True, adapt_scale: bool = False,
                 relative_jacobian: bool = True, head_only: bool = False,
                 head_keep: Tensor | None = None) -> tuple[Keypoints, float]:
    """The driving keypoints the generator sees, as in the original demo's ``normalize_kp``.

    Absolute mode returns ``kp_driving`` unchanged (the scale is then unused).
    ``head_only``: the source keypoints moved by the driver's head motion only
    (:func:`head_motion`: since ``kp_driving_initial``, or in absolute mode from the source's
    keypoints to the driver's), the expression's motion left out; ``head_keep``: its ``kept``.

    Returns:
        The keypoints and the movement scale used (1.0 unless ``adapt_scale``).
    """
    scale = movement_scale(kp_source, kp_driving_initial) if adapt_scale else 1.0
    if head_only:
        return head_motion(kp_source, kp_driving, kp_driving_initial if relative else kp_source,
                           scale if relative else 1.0, kept=head_keep), scale
    if not relative:
        return kp_driving, scale
    return relative_motion(kp_source, kp_driving, kp_driving_initial, scale,
                           relative_jacobian), scale


def border_blend_weights(height: int, width: int, pad: int = 5, dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None) -> Tensor:
    """PaddleGAN's inference border weights: a box of ones inside ``pad`` px, Gaussian-blurred.

    Same as ``cv2.GaussianBlur(M, (9, 9), 0)`` (zero border) on ``M = 1`` inside the border; the
    deformation is then ``w * deformation + (1 - w) * identity``.

    Cached per size (do not modify the result in place): it depends on the size only, and a
    cached tensor is a constant to the ONNX exporter (which has no float64 convolution).

    Returns:
        (1, H, W, 1) weights in [0, 1].
    """
    # inference-mode tensors cannot meet autograd: one cache entry for each mode
    # int(): the ONNX tracer hands sizes over as tensors; the model size is fixed there
    return _border_blend_weights(int(height), int(width), pad, dtype, device,
                                 torch.is_inference_mode_enabled())


@functools.lru_cache(maxsize=8)
def _border_blend_weights(height: int, width: int, pad: int, dtype: torch.dtype,
                          device: torch.device | str | None, inference: bool) -> Tensor:
    mask = torch.zeros(1, 1, height, width, dtype=torch.float64, device=device)
    mask[:, :, pad:height - pad, pad:width - pad] = 1.0
    # For ksize 9 and sigma 0 OpenCV does not sample a sigma-1.7 Gaussian: getGaussianKernel(9, 0)
    # returns its fixed table [4, 13, 30, 51, 60, 51, 30, 13, 4] / 256 (the sampled Gaussian
    # is off by up to 3e-3 in w, and by 1e-3 in PaddleGAN's predictions).
    taps = [4.0, 13.0, 30.0, 51.0, 60.0, 51.0, 30.0, 13.0, 4.0]
    kernel = torch.tensor(taps, dtype=torch.float64, device=device) / 256
    out = F.conv2d(F.pad(mask, (4, 4, 0, 0)), kernel.view(1, 1, 1, 9))
    out = F.conv2d(F.pad(out, (0, 0, 4, 4)), kernel.view(1, 1, 9, 1))
    return out.to(dtype).view(1, height, width, 1)
