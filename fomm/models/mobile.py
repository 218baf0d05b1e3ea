"""PaddleGAN's mobile FOMM (``firstorder_vox_mobile_256``, ``mobile_net: True``): the same networks
built from depthwise-separable blocks.

Reproduces ``ppgan/modules/first_order.py`` (``MobileResBlock2d``, ``MobileUpBlock2d``,
``MobileDownBlock2d``, ``mobile_net`` hourglass and anti-alias), ``keypoint_detector.py``,
``dense_motion.py`` and ``models/generators/occlusion_aware.py`` with ``mobile_net=True``.
Attribute names are PaddleGAN's, so a ``vox_mobile.pdparams`` loads strictly after
:func:`fomm.checkpoints.paddle.paddle_to_torch_keys`.  Each network subclasses its full-size
counterpart and swaps blocks and heads; ``forward`` (and the returned types) are inherited.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.models.blocks import AntiAliasInterpolation2d, Decoder, Encoder, Hourglass, SameBlock2d
from fomm.models.dense_motion import DenseMotionNetwork
from fomm.models.generator import OcclusionAwareGenerator
from fomm.models.keypoint_detector import KPDetector

# PaddleGAN adds this to 2 sigma^2 in every anti-alias kernel; the mobile model exists only there.
_PADDLE_AA_EPS = 1e-9


class MobileResBlock2d(nn.Module):
    """Inverted residual: BN → ReLU → 1×1 expand (×2) → BN → 3×3 depthwise → BN → ReLU → 1×1 → BN.

    PaddleGAN applies no ReLU after the expanding 1×1 convolution; convolutions have no bias.
    """

    def __init__(self, in_features: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        out_features = in_features * 2
        self.conv_pw = nn.Conv2d(in_features, out_features, kernel_size=1, bias=False)
        self.conv_dw = nn.Conv2d(out_features, out_features, kernel_size, padding=padding,
                                 groups=out_features, bias=False)
        self.conv_pw_linear = nn.Conv2d(out_features, in_features, kernel_size=1, bias=False)
        self.norm1 = nn.BatchNorm2d(in_features)
        self.norm_pw = nn.BatchNorm2d(out_features)
        self.norm_dw = nn.BatchNorm2d(out_features)
        self.norm_pw_linear = nn.BatchNorm2d(in_features)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_pw(F.relu(self.norm1(x)))
        out = self.conv_dw(self.norm_pw(out))
        out = self.conv_pw_linear(F.relu(self.norm_dw(out)))
        return self.norm_pw_linear(out) + x


class MobileUpBlock2d(nn.Module):
    """Nearest 2× upsampling → 3×3 depthwise → BN → ReLU → 1×1 → BN → ReLU (no biases)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3,
                 padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, in_features, kernel_size, padding=padding,
                              groups=in_features, bias=False)
        self.conv1 = nn.Conv2d(in_features, out_features, kernel_size=1, bias=False)
        self.norm = nn.BatchNorm2d(in_features)
        self.norm1 = nn.BatchNorm2d(out_features)

    def forward(self, x: Tensor) -> Tensor:
        out = F.interpolate(x, scale_factor=2)  # nearest, as in PaddleGAN
        out = F.relu(self.norm(self.conv(out)))
        return F.relu(self.norm1(self.conv1(out)))


class MobileDownBlock2d(nn.Module):
    """3×3 depthwise → BN → ReLU → 1×1 → BN → ReLU, then 2× average pooling (no biases)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3,
                 padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, in_features, kernel_size, padding=padding,
                              groups=in_features, bias=False)
        self.norm = nn.BatchNorm2d(in_features)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))
        self.conv1 = nn.Conv2d(in_features, out_features, kernel_size=1, bias=False)
        self.norm1 = nn.BatchNorm2d(out_features)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm(self.conv(x)))
        out = F.relu(self.norm1(self.conv1(out)))
        return self.pool(out)


class MobileSameBlock2d(SameBlock2d):
    """conv → BN → ReLU, the convolution without bias (``SameBlock2d(mobile_net=True)``)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3,
                 padding: int = 1) -> None:
        super().__init__(in_features, out_features, kernel_size, padding)
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding, bias=False)


class MobileEncoder(Encoder):
    """Hourglass encoder of :class:`MobileDownBlock2d`."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        nn.Module.__init__(self)  # the parent would build full-size blocks only to drop them
        self.down_blocks = nn.ModuleList(
            MobileDownBlock2d(
                in_features if i == 0 else min(max_features, block_expansion * (2**i)),
                min(max_features, block_expansion * (2 ** (i + 1))))
            for i in range(num_blocks))


class MobileDecoder(Decoder):
    """Hourglass decoder of :class:`MobileUpBlock2d`."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        nn.Module.__init__(self)
        up_blocks = []
        for i in range(num_blocks)[::-1]:
            mult = 1 if i == num_blocks - 1 else 2  # skips double the input after the first
            in_filters = mult * min(max_features, block_expansion * (2 ** (i + 1)))
            out_filters = min(max_features, block_expansion * (2**i))
            up_blocks.append(MobileUpBlock2d(in_filters, out_filters))
        self.up_blocks = nn.ModuleList(up_blocks)
        self.out_filters = block_expansion + in_features


class MobileHourglass(Hourglass):
    """U-Net of mobile blocks; same interface and ``out_filters`` as :class:`Hourglass`."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        nn.Module.__init__(self)
        self.encoder = MobileEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = MobileDecoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters


class MobileAntiAliasInterpolation2d(AntiAliasInterpolation2d):
    """PaddleGAN's mobile downsampler: a fixed 3×3 Gaussian (sigma 0.25) whatever the scale,
    then ``[::1/scale, ::1/scale]`` subsampling."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__(channels, scale, _PADDLE_AA_EPS)
        sigma, size = 0.25, 3
        coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-(coords**2) / (2 * sigma**2 + _PADDLE_AA_EPS))
        kernel = g.view(-1, 1) * g.view(1, -1)
        kernel = (kernel / kernel.sum()).view(1, 1, size, size).repeat(channels, 1, 1, 1)
        self.weight = kernel  # replaces the registered buffer
        self.ka = self.kb = size // 2


def _head(channels: int, out_channels: int, padding: int, relu: bool) -> nn.Sequential:
    """Three 3×3 convolutions (PaddleGAN's mobile heads); ReLUs in between when ``relu``."""
    layers: list[nn.Module] = [nn.Conv2d(channels, channels, 3, padding=padding)]
    if relu:
        layers.append(nn.ReLU())
    layers.append(nn.Conv2d(channels, channels, 3, padding=padding))
    if relu:
        layers.append(nn.ReLU())
    layers.append(nn.Conv2d(channels, out_channels, 3, padding=padding))
    return nn.Sequential(*layers)


class MobileKPDetector(KPDetector):
    """:class:`KPDetector` with a mobile hourglass and three-conv keypoint / jacobian heads.

    The heads have no activations between their convolutions (as in PaddleGAN); with ``pad=0``
    each trims 6 pixels, like the full-size 7×7 head.
    """

    def __init__(self, block_expansion: int, num_kp: int, num_channels: int, max_features: int,
                 num_blocks: int, temperature: float, estimate_jacobian: bool = False,
                 scale_factor: float = 1, single_jacobian_map: bool = False,
                 pad: int = 0) -> None:
        super().__init__(block_expansion, num_kp, num_channels, max_features, num_blocks,
                         temperature, estimate_jacobian, scale_factor, single_jacobian_map, pad,
                         _PADDLE_AA_EPS)
        self.predictor = MobileHourglass(block_expansion, in_features=num_channels,
                                         max_features=max_features, num_blocks=num_blocks)
        features = self.predictor.out_filters
        self.kp = _head(features, num_kp, pad, relu=False)
        if estimate_jacobian:
            head = _head(features, 4 * self.num_jacobian_maps, pad, relu=False)
            for conv in head:
                nn.init.zeros_(conv.weight)  # start at the identity, as PaddleGAN does
                nn.init.zeros_(conv.bias)
            head[-1].bias.data.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0] * self.num_jacobian_maps))
            self.jacobian = head
        if scale_factor != 1:
            self.down = MobileAntiAliasInterpolation2d(num_channels, scale_factor)


class MobileDenseMotionNetwork(DenseMotionNetwork):
    """:class:`DenseMotionNetwork` with a mobile hourglass and conv-ReLU-conv-ReLU-conv heads."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int,
                 num_channels: int, estimate_occlusion_map: bool = False,
                 scale_factor: float = 1, kp_variance: float = 0.01,
                 align_corners: bool = False) -> None:
        super().__init__(block_expansion, num_blocks, max_features, num_kp, num_channels,
                         estimate_occlusion_map, scale_factor, kp_variance, align_corners,
                         _PADDLE_AA_EPS)
        self.hourglass = MobileHourglass(block_expansion,
                                         in_features=(num_kp + 1) * (num_channels + 1),
                                         max_features=max_features, num_blocks=num_blocks)
        features = self.hourglass.out_filters
        self.mask = _head(features, num_kp + 1, padding=1, relu=True)
        if estimate_occlusion_map:
            self.occlusion = _head(features, 1, padding=1, relu=True)
        if scale_factor != 1:
            self.down = MobileAntiAliasInterpolation2d(num_channels, scale_factor)


class MobileOcclusionAwareGenerator(OcclusionAwareGenerator):
    """:class:`OcclusionAwareGenerator` built from mobile blocks.

    ``first`` is three bias-free 3×3 same blocks, ``final`` three 3×3 convolutions with ReLUs.
    PaddleGAN's predictor blends the deformation at the border for this model too, but leaves
    the occlusion border alone (``inference and not mobile_net``), hence ``occlusion_border``
    False.
    """

    def __init__(self, num_channels: int, num_kp: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, num_bottleneck_blocks: int,
                 estimate_occlusion_map: bool = False, dense_motion_params: dict | None = None,
                 estimate_jacobian: bool = False, flavour: str = "original",
                 blend_output: bool = False) -> None:
        super().__init__(num_channels, num_kp, block_expansion, max_features, num_down_blocks,
                         num_bottleneck_blocks, estimate_occlusion_map, dense_motion_params,
                         estimate_jacobian, flavour, occlusion_border=False,
                         aa_eps=_PADDLE_AA_EPS, blend_output=blend_output)
        if dense_motion_params is not None:
            self.dense_motion_network = MobileDenseMotionNetwork(
                num_kp=num_kp, num_channels=num_channels,
                estimate_occlusion_map=estimate_occlusion_map,
                align_corners=self.align_corners, **dense_motion_params)
        self.first = nn.Sequential(
            MobileSameBlock2d(num_channels, num_channels),
            MobileSameBlock2d(num_channels, num_channels),
            MobileSameBlock2d(num_channels, block_expansion))
        self.down_blocks = nn.ModuleList(
            MobileDownBlock2d(min(max_features, block_expansion * (2**i)),
                              min(max_features, block_expansion * (2 ** (i + 1))))
            for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            MobileUpBlock2d(min(max_features, block_expansion * (2 ** (num_down_blocks - i))),
                            min(max_features, block_expansion * (2 ** (num_down_blocks - i - 1))))
            for i in range(num_down_blocks))
        in_features = min(max_features, block_expansion * (2**num_down_blocks))
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", MobileResBlock2d(in_features))
        self.final = _head(block_expansion, num_channels, padding=1, relu=True)
