"""Multi-scale patch discriminator (training only), as in first-order-model's discriminator.py."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.models.motion import Keypoints, kp2gaussian


def _spectral_norm(module: nn.Module) -> nn.Module:
    # The parametrization-free API keeps the official keys: weight_orig, weight_u, weight_v.
    return nn.utils.spectral_norm(module)


class DiscriminatorOutput(NamedTuple):
    feature_maps: list[Tensor]  # one per down block
    prediction_map: Tensor  # (B, 1, h, w) patch scores


class DownBlock2d(nn.Module):
    """conv → (instance norm) → LeakyReLU(0.2) → (2× average pool)."""

    def __init__(self, in_features: int, out_features: int, norm: bool = False,
                 kernel_size: int = 4, pool: bool = False, sn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size)
        if sn:
            self.conv = _spectral_norm(self.conv)
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        if self.pool:
            out = F.avg_pool2d(out, (2, 2))
        return out


class Discriminator(nn.Module):
    """Patch discriminator; with ``use_kp`` the keypoint heatmaps are concatenated to the input."""

    def __init__(self, num_channels: int = 3, block_expansion: int = 64, num_blocks: int = 4,
                 max_features: int = 512, sn: bool = False, use_kp: bool = False,
                 num_kp: int = 10, kp_variance: float = 0.01, **_: object) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(num_channels + num_kp * use_kp if i == 0
                        else min(max_features, block_expansion * (2**i)),
                        min(max_features, block_expansion * (2 ** (i + 1))),
                        norm=(i != 0), kernel_size=4, pool=(i != num_blocks - 1), sn=sn)
            for i in range(num_blocks))
        last = min(max_features, block_expansion * (2**num_blocks))
        self.conv = nn.Conv2d(last, 1, kernel_size=1)
        if sn:
            self.conv = _spectral_norm(self.conv)
        self.use_kp = use_kp
        self.kp_variance = kp_variance

    def forward(self, x: Tensor, kp: Keypoints | None = None) -> DiscriminatorOutput:
        out = x
        if self.use_kp:
            assert kp is not None, "this discriminator needs keypoints (use_kp)"
            heatmap = kp2gaussian(kp.value, x.shape[2], x.shape[3], self.kp_variance)
            out = torch.cat([out, heatmap], dim=1)
        feature_maps = []
        for block in self.down_blocks:
            out = block(out)
            feature_maps.append(out)
        return DiscriminatorOutput(feature_maps, self.conv(out))


class MultiScaleDiscriminator(nn.Module):
    """One :class:`Discriminator` per pyramid scale; keys ``discs.<scale with '-' for '.'>``."""

    def __init__(self, scales: tuple[float, ...] = (1,), **kwargs: object) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.discs = nn.ModuleDict(
            {str(scale).replace(".", "-"): Discriminator(**kwargs) for scale in self.scales})

    def forward(self, pyramid: dict[str, Tensor],
                kp: Keypoints | None = None) -> dict[str, DiscriminatorOutput]:
        """Args: pyramid maps ``'prediction_<scale>'`` to images. Returns: scale → output."""
        out = {}
        for key, disc in self.discs.items():
            scale = key.replace("-", ".")
            out[scale] = disc(pyramid["prediction_" + scale], kp)
        return out
