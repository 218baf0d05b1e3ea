"""OcclusionAwareGenerator: source image + keypoint motion → driven frame (paper Sec. 3.3)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.models import motion
from fomm.models.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from fomm.models.dense_motion import DenseMotionNetwork
from fomm.models.motion import Keypoints


class GeneratorOutput(NamedTuple):
    prediction: Tensor  # (B, C, H, W) in [0, 1]
    mask: Tensor | None = None  # (B, K + 1, h, w)
    sparse_deformed: Tensor | None = None  # (B, K + 1, C, h, w)
    occlusion_map: Tensor | None = None  # (B, 1, h, w)
    deformed: Tensor | None = None  # (B, C, H, W) source warped by the dense motion
    deformation: Tensor | None = None  # (B, h, w, 2)
    blend_mask: Tensor | None = None  # (B, 1, H, W) in [0, 1], 1 = the warped source (blend_output)


class SourceEncoding(NamedTuple):
    """What the generator needs from the source, computed once per source image."""

    features: Tensor  # (1, C', H / 2^d, W / 2^d) encoder output
    small: Tensor  # (1, C, h, w) source at the dense-motion resolution


class OcclusionAwareGenerator(nn.Module):
    """Encoder → warp by the dense motion → mask by occlusion → res bottleneck → decoder.

    ``flavour="paddle"`` reproduces PaddleGAN's predictor: ``align_corners=True`` and, at
    inference, the deformation blended to the identity near the border and the occlusion border
    set to 1 (``occlusion_border`` False for the mobile model).
    """

    def __init__(self, num_channels: int, num_kp: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, num_bottleneck_blocks: int,
                 estimate_occlusion_map: bool = False, dense_motion_params: dict | None = None,
                 estimate_jacobian: bool = False, flavour: str = "original",
                 occlusion_border: bool = True, aa_eps: float = 0.0,
                 blend_output: bool = False) -> None:
        super().__init__()
        self.align_corners = flavour == "paddle"
        self.paddle_inference = flavour == "paddle"
        self.occlusion_border = occlusion_border
        self.dense_motion_network: DenseMotionNetwork | None = None
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(
                num_kp=num_kp, num_channels=num_channels,
                estimate_occlusion_map=estimate_occlusion_map,
                align_corners=self.align_corners, aa_eps=aa_eps, **dense_motion_params)
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(min(max_features, block_expansion * (2**i)),
                        min(max_features, block_expansion * (2 ** (i + 1))))
            for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(min(max_features, block_expansion * (2 ** (num_down_blocks - i))),
                      min(max_features, block_expansion * (2 ** (num_down_blocks - i - 1))))
            for i in range(num_down_blocks))
        self.bottleneck = nn.Sequential()
        in_features = min(max_features, block_expansion * (2**num_down_blocks))
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(in_features, kernel_size=3, padding=1))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.blend: nn.Conv2d | None = None
        if blend_output and dense_motion_params is not None:
            self.blend = nn.Conv2d(block_expansion, 1, kernel_size=(7, 7), padding=(3, 3))
            nn.init.zeros_(self.blend.weight)
            nn.init.constant_(self.blend.bias, 3.0)  # start by copying the warped source (95 %)
        self.estimate_occlusion_map = estimate_occlusion_map
        self.num_channels = num_channels

    def encode(self, source_image: Tensor) -> Tensor:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(self, features: Tensor, warped_source: Tensor | None = None) -> Tensor:
        """Bottleneck → up blocks → final; with ``blend`` also mixes in the warped source."""
        return self._decode(features, warped_source)[0]

    def _decode(self, features: Tensor,
                warped_source: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """:meth:`decode` and the blend mask (None without ``blend`` or a warped source)."""
        out = self.bottleneck(features)
        for block in self.up_blocks:
            out = block(out)
        prediction = torch.sigmoid(self.final(out))
        mask = None
        if self.blend is not None and warped_source is not None:
            mask = torch.sigmoid(self.blend(out))  # (B, 1, H, W), 1 = take the warped source
            prediction = mask * warped_source + (1 - mask) * prediction
        return prediction, mask

    def encode_source(self, source_image: Tensor) -> SourceEncoding:
        """Cache the source-only work for animating many frames from one source."""
        small = source_image
        if self.dense_motion_network is not None:
            small = self.dense_motion_network.downsample(source_image)
        return SourceEncoding(self.encode(source_image), small)

    def deform_input(self, inp: Tensor, deformation: Tensor) -> Tensor:
        """Warp ``inp`` by ``deformation``, resized bilinearly to ``inp``'s size if needed."""
        _, h_old, w_old, _ = deformation.shape
        _, _, h, w = inp.shape
        if h_old != h or w_old != w:
            deformation = deformation.permute(0, 3, 1, 2)
            # align_corners=False in both the original and PaddleGAN
            deformation = F.interpolate(deformation, size=(h, w), mode="bilinear")
            deformation = deformation.permute(0, 2, 3, 1)
        if self.paddle_inference and not self.training:
            weight = motion.border_blend_weights(h, w, 5, deformation.dtype, deformation.device)
            identity = motion.make_coordinate_grid(h, w, deformation.dtype, deformation.device)
            deformation = weight * deformation + (1 - weight) * identity.unsqueeze(0)
        return motion.warp(inp, deformation, self.align_corners)

    def forward(self, source_image: Tensor, kp_driving: Keypoints, kp_source: Keypoints,
                encoded: SourceEncoding | None = None,
                with_deformed: bool = True) -> GeneratorOutput:
        """Args:
            source_image: (B, C, H, W) or (1, C, H, W) with ``encoded`` given and B driving frames.
            kp_driving, kp_source: (B, K, ·) keypoints.
            encoded: cached :meth:`encode_source` of a single source (broadcast over B).
            with_deformed: also warp the full-size source (a visualisation; skip for speed).
        """
        bs = kp_driving.value.shape[0]
        if encoded is None:
            encoded = self.encode_source(source_image)
        out = encoded.features.expand(bs, -1, -1, -1)
        source_image = source_image.expand(bs, -1, -1, -1)
        if self.dense_motion_network is None:
            return GeneratorOutput(self.decode(out))
        dense = self.dense_motion_network(source_image, kp_driving, kp_source,
                                          source_small=encoded.small.expand(bs, -1, -1, -1))
        out = self.deform_input(out, dense.deformation)
        occlusion_map = dense.occlusion_map
        if occlusion_map is not None:
            if out.shape[2:] != occlusion_map.shape[2:]:
                occlusion_map = F.interpolate(occlusion_map, size=out.shape[2:], mode="bilinear")
            if self.paddle_inference and self.occlusion_border and not self.training:
                occlusion_map = occlusion_map.clone()
                h, w = occlusion_map.shape[2:]
                occlusion_map[:, :, :5, :] = 1.0
                occlusion_map[:, :, :, :5] = 1.0
                occlusion_map[:, :, h - 5:, :] = 1.0
                occlusion_map[:, :, :, w - 5:] = 1.0
            out = out * occlusion_map
        deformed = None
        if with_deformed or self.blend is not None:
            deformed = self.deform_input(source_image, dense.deformation)
        prediction, blend_mask = self._decode(out, deformed)
        return GeneratorOutput(prediction, dense.mask, dense.sparse_deformed, occlusion_map,
                               deformed, dense.deformation, blend_mask)
