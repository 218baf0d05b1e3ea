"""Building blocks of the original FOMM networks: U-Net hourglass, res/up/down blocks, anti-alias.

Attribute names follow first-order-model's ``modules/util.py`` so official state dicts load with
``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ResBlock2d(nn.Module):
    """Pre-activation residual block that keeps the resolution."""

    def __init__(self, in_features: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(in_features, affine=True)
        self.norm2 = nn.BatchNorm2d(in_features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class UpBlock2d(nn.Module):
    """Nearest 2× upsampling, then conv → BN → ReLU."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3,
                 padding: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding,
                              groups=groups)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        out = F.interpolate(x, scale_factor=2)  # nearest, as in the original
        return F.relu(self.norm(self.conv(out)))


class DownBlock2d(nn.Module):
    """conv → BN → ReLU, then 2× average pooling."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3,
                 padding: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding,
                              groups=groups)
        self.norm = nn.BatchNorm2d(out_features, affine=True)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class SameBlock2d(nn.Module):
    """conv → BN → ReLU at the same resolution."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3,
                 padding: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding,
                              groups=groups)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x)))


class Encoder(nn.Module):
    """Hourglass encoder; returns the input and every down block's output (for skips)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else min(max_features, block_expansion * (2**i)),
                        min(max_features, block_expansion * (2 ** (i + 1))))
            for i in range(num_blocks))

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = [x]
        for down_block in self.down_blocks:
            outs.append(down_block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder; concatenates each skip after upsampling."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        super().__init__()
        up_blocks = []
        for i in range(num_blocks)[::-1]:
            mult = 1 if i == num_blocks - 1 else 2
            in_filters = mult * min(max_features, block_expansion * (2 ** (i + 1)))
            out_filters = min(max_features, block_expansion * (2**i))
            up_blocks.append(UpBlock2d(in_filters, out_filters))
        self.up_blocks = nn.ModuleList(up_blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[Tensor]) -> Tensor:
        skips = list(skips)
        out = skips.pop()
        for up_block in self.up_blocks:
            out = torch.cat([up_block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net: ``Decoder(Encoder(x))``, output has ``out_filters`` channels at input resolution."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def gaussian_kernel(channels: int, scale: float, eps: float = 0.0) -> Tensor:
    """Depthwise Gaussian kernel of the anti-alias downsampler, sigma = (1/scale - 1) / 2.

    Returns:
        (channels, 1, k, k) with k = 2 * round(4 sigma) + 1; ``eps`` is added to 2 sigma^2
        (PaddleGAN adds 1e-9).
    """
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2 + eps))
    kernel = g.view(-1, 1) * g.view(1, -1)
    kernel = kernel / kernel.sum()
    return kernel.view(1, 1, size, size).repeat(channels, 1, 1, 1)


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then strided subsampling: downscale by ``scale`` without aliasing."""

    def __init__(self, channels: int, scale: float, eps: float = 0.0) -> None:
        super().__init__()
        kernel = gaussian_kernel(channels, scale, eps)
        size = kernel.shape[-1]
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        self.register_buffer("weight", kernel)
        self.groups = channels
        self.scale = scale
        self.int_inv_scale = int(1 / scale)

    def forward(self, x: Tensor) -> Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, weight=self.weight, groups=self.groups)
        return out[:, :, :: self.int_inv_scale, :: self.int_inv_scale]
