"""Training losses of first-order-model's ``modules/model.py``: perceptual pyramid, GAN, feature
matching and equivariance (with the random affine + TPS ``Transform``), plus optional extras.

Each function takes tensors and networks and returns scalar tensors already multiplied by their
weight from ``train_params.loss_weights``; the trainer sums them.  Without VGG19 weights the
perceptual term falls back to a multi-scale L1 pyramid on pixels (see :class:`PerceptualLoss`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.config import LossWeights, TransformParams
from fomm.models.blocks import AntiAliasInterpolation2d
from fomm.models.discriminator import DiscriminatorOutput
from fomm.models.motion import Keypoints, make_coordinate_grid
from fomm.models.vgg import Vgg19


def scale_key(scale: float) -> str:
    """``'prediction_<scale>'`` spelt as the original does: ``str(scale)`` (YAML ``1`` → ``1``)."""
    return "prediction_" + str(scale)


class ImagePyramid(nn.Module):
    """Anti-aliased downscales of an image (first-order-model's ``ImagePyramide``)."""

    def __init__(self, scales: Sequence[float], num_channels: int = 3) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.downs = nn.ModuleDict({str(s).replace(".", "-"): AntiAliasInterpolation2d(
            num_channels, float(s)) for s in self.scales})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Args: x (B, C, H, W). Returns: ``'prediction_<scale>'`` → (B, C, H*s, W*s)."""
        return {"prediction_" + key.replace("-", "."): down(x) for key, down in self.downs.items()}


class PerceptualLoss(nn.Module):
    """Pyramid perceptual loss: ``sum_s sum_i w_i |VGG_i(x_s) - VGG_i(y_s)|`` (paper Sec. 3.3).

    Fallback without VGG19 weights (``vgg=None``): each pyramid level contributes
    ``sum(w) * |x_s - y_s|``, an L1 loss on pixels at every scale with the total perceptual
    weight (so 50x the pixel L1 per scale with the official weights).
    """

    def __init__(self, scales: Sequence[float], weights: Sequence[float],
                 vgg: Vgg19 | None = None) -> None:
        super().__init__()
        self.pyramid = ImagePyramid(scales)
        self.weights = tuple(float(w) for w in weights)
        self.vgg = vgg

    def forward(self, prediction: Tensor, target: Tensor,
                pyramid_prediction: dict[str, Tensor] | None = None,
                pyramid_target: dict[str, Tensor] | None = None) -> Tensor:
        pred = self.pyramid(prediction) if pyramid_prediction is None else pyramid_prediction
        real = self.pyramid(target) if pyramid_target is None else pyramid_target
        total = prediction.new_zeros((), dtype=torch.float32)
        for scale in self.pyramid.scales:
            x, y = pred[scale_key(scale)], real[scale_key(scale)]
            if self.vgg is None:
                total = total + sum(self.weights) * (x - y.detach()).abs().float().mean()
                continue
            for weight, fx, fy in zip(self.weights, self.vgg(x), self.vgg(y), strict=False):
                if weight != 0:
                    total = total + weight * (fx - fy.detach()).abs().float().mean()
        return total


class Transform:
    """Random affine + thin-plate-spline warp of the equivariance constraints (paper Sec. 3.3).

    ``T(z) = A z + b + sum_j c_j phi(|z - q_j|_1)`` with ``phi(r) = r^2 log r`` on a
    ``points_tps`` x ``points_tps`` grid of control points q_j; A, b ~ identity + N(0, sigma_affine)
    and c ~ N(0, sigma_tps).  Noise is drawn on the CPU from torch's global RNG, as the original.
    """

    def __init__(self, batch: int, params: TransformParams, device: torch.device | None = None,
                 generator: torch.Generator | None = None) -> None:
        noise = torch.normal(mean=0.0, std=params.sigma_affine * torch.ones(batch, 2, 3),
                             generator=generator)
        self.theta = (noise + torch.eye(2, 3).view(1, 2, 3)).to(device)  # (B, 2, 3)
        self.batch = batch
        n = params.points_tps
        self.control_points = make_coordinate_grid(n, n).view(1, -1, 2).to(device)  # (1, N, 2)
        self.control_params = torch.normal(
            mean=0.0, std=params.sigma_tps * torch.ones(batch, 1, n * n),
            generator=generator).to(device)  # (B, 1, N)

    def transform_frame(self, frame: Tensor) -> Tensor:
        """Warp (B, C, H, W) frames: reflection padding, ``align_corners=False`` (original)."""
        b, _, h, w = frame.shape
        grid = make_coordinate_grid(h, w, frame.dtype, frame.device).view(1, h * w, 2)
        grid = self.warp_coordinates(grid).view(b, h, w, 2)
        # the ±1 grid with align_corners=False zooms in by (H-1)/H even with no noise (original)
        return F.grid_sample(frame, grid, padding_mode="reflection", align_corners=False)

    def warp_coordinates(self, coordinates: Tensor) -> Tensor:
        """Args: (B or 1, N, 2) points. Returns: (B, N, 2) warped points."""
        theta = self.theta.to(coordinates.dtype).unsqueeze(1)  # (B, 1, 2, 3)
        out = torch.matmul(theta[:, :, :, :2], coordinates.unsqueeze(-1)) + theta[:, :, :, 2:]
        out = out.squeeze(-1)  # (B, N, 2)
        ctrl = self.control_points.to(coordinates.dtype)
        distances = coordinates.view(coordinates.shape[0], -1, 1, 2) - ctrl.view(1, 1, -1, 2)
        distances = distances.abs().sum(-1)  # (B, N, P) L1 distances, as the original
        result = distances**2 * torch.log(distances + 1e-6) * self.control_params.to(
            coordinates.dtype)
        return out + result.sum(dim=2).view(self.batch, coordinates.shape[1], 1)

    def jacobian(self, coordinates: Tensor) -> Tensor:
        """d T(z) / dz at each point, by autograd (kept in the graph). Returns (B, N, 2, 2)."""
        with torch.enable_grad():
            if not coordinates.requires_grad:
                coordinates = coordinates.detach().requires_grad_(True)
            new = self.warp_coordinates(coordinates)
            grad_x = torch.autograd.grad(new[..., 0].sum(), coordinates, create_graph=True)[0]
            grad_y = torch.autograd.grad(new[..., 1].sum(), coordinates, create_graph=True)[0]
        return torch.stack([grad_x, grad_y], dim=-2)


def equivariance_losses(kp_detector: Callable[[Tensor], Keypoints], driving: Tensor,
                        kp_driving: Keypoints, params: TransformParams,
                        weights: LossWeights) -> tuple[dict[str, Tensor], Tensor, Keypoints]:
    """Keypoints must move with a random warp of the frame: value and jacobian terms.

    ``|p - T(p')|`` and ``|I - J^-1 (dT(p') J')|`` with p, J the driving keypoints and p', J'
    those of the warped frame.

    Returns:
        ``{"equivariance_value", "equivariance_jacobian"}`` (weighted; only the non-zero ones),
        the warped frame (B, C, H, W) and its keypoints.
    """
    transform = Transform(driving.shape[0], params, device=driving.device)
    transformed = transform.transform_frame(driving)
    kp_t = kp_detector(transformed)
    losses: dict[str, Tensor] = {}
    if weights.equivariance_value != 0:
        value = (kp_driving.value - transform.warp_coordinates(kp_t.value)).abs().float().mean()
        losses["equivariance_value"] = weights.equivariance_value * value
    if weights.equivariance_jacobian != 0:
        assert kp_t.jacobian is not None and kp_driving.jacobian is not None
        warped = torch.matmul(transform.jacobian(kp_t.value).float(), kp_t.jacobian.float())
        value = torch.matmul(torch.inverse(kp_driving.jacobian.float()), warped)  # (B, K, 2, 2)
        eye = torch.eye(2, device=value.device).view(1, 1, 2, 2)
        losses["equivariance_jacobian"] = weights.equivariance_jacobian * (eye - value).abs().mean()
    return losses, transformed, kp_t


def discriminator_inputs(pyramid: dict[str, Tensor], scales: Sequence[float],
                         image: Tensor) -> dict[str, Tensor]:
    """The pyramid levels the discriminator reads, computing any level the pyramid lacks."""
    out = {}
    for scale in scales:
        key = scale_key(scale)
        out[key] = pyramid[key] if key in pyramid else AntiAliasInterpolation2d(
            image.shape[1], float(scale)).to(image.device, image.dtype)(image)
    return out


def generator_gan_losses(fake: dict[str, DiscriminatorOutput],
                         real: dict[str, DiscriminatorOutput],
                         weights: LossWeights) -> dict[str, Tensor]:
    """LSGAN generator term ``(1 - D(G))^2`` and feature matching ``|D_i(x) - D_i(G)|``."""
    gan = 0.0
    for out in fake.values():
        gan = gan + weights.generator_gan * ((1 - out.prediction_map) ** 2).float().mean()
    losses = {"gen_gan": gan}
    if sum(weights.feature_matching) != 0:
        matching = 0.0
        for scale, out in fake.items():
            for i, (a, b) in enumerate(zip(real[scale].feature_maps, out.feature_maps,
                                           strict=False)):
                if i < len(weights.feature_matching) and weights.feature_matching[i] != 0:
                    matching = matching + weights.feature_matching[i] * (a - b).abs().float().mean()
        losses["feature_matching"] = matching
    return losses


def discriminator_loss(fake: dict[str, DiscriminatorOutput], real: dict[str, DiscriminatorOutput],
                       weights: LossWeights) -> Tensor:
    """LSGAN discriminator term ``(1 - D(x))^2 + D(G)^2``, summed over scales."""
    total = 0.0
    for scale, out in fake.items():
        value = (1 - real[scale].prediction_map) ** 2 + out.prediction_map**2
        total = total + weights.discriminator_gan * value.float().mean()
    return total


# --------------------------------------------------------------------------------------------
# optional extras (not in the original recipe): sharper early training for small models


def gradient_l1(prediction: Tensor, target: Tensor) -> Tensor:
    """L1 between horizontal and vertical finite differences: penalises blurred edges."""
    dx = lambda t: t[:, :, :, 1:] - t[:, :, :, :-1]  # noqa: E731
    dy = lambda t: t[:, :, 1:, :] - t[:, :, :-1, :]  # noqa: E731
    return ((dx(prediction) - dx(target)).abs().float().mean()
            + (dy(prediction) - dy(target)).abs().float().mean())


def ssim_loss(prediction: Tensor, target: Tensor, window: int = 7) -> Tensor:
    """``1 - SSIM`` with a uniform window (C1 = 0.01^2, C2 = 0.03^2 for [0, 1] images)."""
    x, y = prediction.float(), target.float()
    pad = window // 2
    pool = lambda t: F.avg_pool2d(F.pad(t, [pad] * 4, mode="reflect"), window, 1)  # noqa: E731
    mu_x, mu_y = pool(x), pool(y)
    var_x = pool(x * x) - mu_x**2
    var_y = pool(y * y) - mu_y**2
    cov = pool(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1)
                                                         * (var_x + var_y + c2))
    return 1 - ssim.mean()


def region_l1(pyramid_prediction: dict[str, Tensor], pyramid_target: dict[str, Tensor],
              weight: Tensor) -> Tensor:
    """L1 averaged under a weight map, summed over the pyramid levels (``--region-weight``).

    ``sum_s sum(w_s |x_s - y_s|) / (C sum(w_s))`` with ``w_s`` the map area-resized to level s:
    a mean error over the weighted pixels, whatever their share of the frame (the eyes and
    mouth of :mod:`fomm.train.regions`), so small regions count as much as the whole frame.

    Args:
        pyramid_prediction, pyramid_target: ``'prediction_<scale>'`` → (B, C, h, w).
        weight: (B, 1, H, W) in [0, 1]; all zero gives 0.
    """
    total = weight.new_zeros((), dtype=torch.float32)
    for key, x in pyramid_prediction.items():
        y = pyramid_target[key].detach()
        w = F.interpolate(weight.float(), size=x.shape[2:], mode="area")
        error = (w * (x.float() - y.float()).abs()).sum()
        total = total + error / (w.sum() * x.shape[1]).clamp_min(1e-6)
    return total


def keypoint_separation(value: Tensor, sigma: float = 0.15) -> Tensor:
    """Mean over keypoint pairs of ``exp(-|k_i - k_j|^2 / (2 sigma^2))`` (Zhang et al., CVPR 2018).

    Not in the original recipe: early in training FOMM's keypoints tend to gather in one spot
    of the face, where they cannot describe the mouth moving apart from the head. This term
    pushes apart keypoints closer than about ``2 sigma`` (in the [-1, 1] coordinates) and is
    flat beyond, so it spreads them without pinning them anywhere.

    Args:
        value: (B, K, 2) keypoint positions.
    Returns:
        A scalar in [0, 1] (1 when all keypoints coincide).
    """
    k = value.shape[1]
    if k < 2:
        return value.new_zeros(())
    d2 = (value.unsqueeze(2) - value.unsqueeze(1)).pow(2).sum(-1)  # (B, K, K)
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=value.device)
    return torch.exp(-d2 / (2 * sigma**2))[:, off_diagonal].mean()


def landmark_guidance(value: Tensor, targets: Tensor, keypoints: Sequence[int]) -> Tensor:
    """Mean L1 distance of the guided keypoints from their landmark targets (``--landmark-weight``).

    Args:
        value: (B, K, 2) keypoints in [-1, 1].
        targets: (B, G, 2) targets (:func:`fomm.train.regions.guide_targets`), NaN where unknown.
        keypoints: the keypoint tied to each of the G targets.
    Returns:
        The mean over known targets of ``|k_x - t_x| + |k_y - t_y|``; 0 when none is known.
    """
    guided = value[:, list(keypoints)].float()  # (B, G, 2)
    known = torch.isfinite(targets).all(-1)  # (B, G)
    error = (guided - torch.nan_to_num(targets.float())).abs().sum(-1)
    return (error * known).sum() / known.sum().clamp_min(1)
