"""DenseMotionNetwork: keypoints → dense deformation and occlusion map (paper Sec. 3.2)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.models import motion
from fomm.models.blocks import AntiAliasInterpolation2d, Hourglass
from fomm.models.motion import Keypoints


class DenseMotion(NamedTuple):
    sparse_deformed: Tensor  # (B, K + 1, C, h, w) source warped by each local transform
    mask: Tensor  # (B, K + 1, h, w) softmax weights of the local transforms
    deformation: Tensor  # (B, h, w, 2) dense backward sampling grid
    occlusion_map: Tensor | None  # (B, 1, h, w) in [0, 1]


class DenseMotionNetwork(nn.Module):
    """Combines the K + 1 local transforms with predicted masks into one dense motion field."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int,
                 num_channels: int, estimate_occlusion_map: bool = False,
                 scale_factor: float = 1, kp_variance: float = 0.01,
                 align_corners: bool = False, aa_eps: float = 0.0) -> None:
        super().__init__()
        self.hourglass = Hourglass(block_expansion, in_features=(num_kp + 1) * (num_channels + 1),
                                   max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7),
                              padding=(3, 3))
        self.occlusion: nn.Conv2d | None = None
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7),
                                       padding=(3, 3))
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        self.align_corners = align_corners
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor, aa_eps)

    def downsample(self, source_image: Tensor) -> Tensor:
        """The source at the motion resolution; depends on the source only, so callers may cache."""
        return self.down(source_image) if self.scale_factor != 1 else source_image

    def forward(self, source_image: Tensor, kp_driving: Keypoints, kp_source: Keypoints,
                source_small: Tensor | None = None) -> DenseMotion:
        """Args: source (B, C, H, W); keypoints (B, K, ·). ``source_small`` skips the downsample."""
        small = self.downsample(source_image) if source_small is None else source_small
        bs, c, h, w = small.shape
        heatmaps = motion.heatmap_difference(kp_driving.value, kp_source.value, h, w,
                                             self.kp_variance)  # (B, K+1, 1, h, w)
        sparse = motion.sparse_motions(kp_source, kp_driving, h, w)  # (B, K+1, h, w, 2)
        n = self.num_kp + 1
        repeated = small.unsqueeze(1).expand(bs, n, c, h, w).reshape(bs * n, c, h, w)
        sparse_deformed = motion.warp(repeated, sparse.reshape(bs * n, h, w, 2),
                                      self.align_corners).view(bs, n, c, h, w)
        inp = torch.cat([heatmaps, sparse_deformed], dim=2).view(bs, -1, h, w)
        prediction = self.hourglass(inp)
        mask = F.softmax(self.mask(prediction), dim=1)  # (B, K+1, h, w)
        deformation = (sparse * mask.unsqueeze(-1)).sum(dim=1)  # (B, h, w, 2)
        occlusion = None
        if self.occlusion is not None:
            occlusion = torch.sigmoid(self.occlusion(prediction))
        return DenseMotion(sparse_deformed, mask, deformation, occlusion)
