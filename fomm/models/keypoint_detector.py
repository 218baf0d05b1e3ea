"""KPDetector: image → keypoints and local jacobians (paper Sec. 3.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.models.blocks import AntiAliasInterpolation2d, Hourglass
from fomm.models.motion import Keypoints, heatmap_to_keypoints


class KPDetector(nn.Module):
    """Predicts K heatmaps with an hourglass; keypoints are their soft-argmax.

    Jacobians are heatmap-weighted averages of a 4-channel-per-keypoint regression map.
    """

    def __init__(self, block_expansion: int, num_kp: int, num_channels: int, max_features: int,
                 num_blocks: int, temperature: float, estimate_jacobian: bool = False,
                 scale_factor: float = 1, single_jacobian_map: bool = False, pad: int = 0,
                 aa_eps: float = 0.0) -> None:
        super().__init__()
        self.predictor = Hourglass(block_expansion, in_features=num_channels,
                                   max_features=max_features, num_blocks=num_blocks)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=(7, 7), padding=pad)
        self.jacobian: nn.Conv2d | None
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * self.num_jacobian_maps,
                                      kernel_size=(7, 7), padding=pad)
            self.jacobian.weight.data.zero_()  # start at the identity
            self.jacobian.bias.data.copy_(
                torch.tensor([1, 0, 0, 1] * self.num_jacobian_maps, dtype=torch.float))
        else:
            self.jacobian = None
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor, aa_eps)

    def forward(self, x: Tensor) -> Keypoints:
        """Args: x (B, C, H, W) in [0, 1]. Returns: Keypoints (B, K, 2) and (B, K, 2, 2)."""
        if self.scale_factor != 1:
            x = self.down(x)
        feature_map = self.predictor(x)
        prediction = self.kp(feature_map)  # (B, K, h, w); h = H * scale - 6 when pad = 0
        b, k, h, w = prediction.shape
        heatmap = F.softmax(prediction.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
        value = heatmap_to_keypoints(heatmap)
        if self.jacobian is None:
            return Keypoints(value, None)
        jacobian_map = self.jacobian(feature_map).reshape(b, self.num_jacobian_maps, 4, h, w)
        jacobian = (heatmap.unsqueeze(2) * jacobian_map).view(b, k, 4, -1).sum(dim=-1)
        return Keypoints(value, jacobian.view(b, k, 2, 2))
