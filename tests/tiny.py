"""Tiny seeded random-weight models for fast tests (block_expansion 4, 64×64 inputs)."""

from __future__ import annotations

import torch

from fomm.config import (
    DenseMotionParams,
    DiscriminatorParams,
    GeneratorParams,
    KPDetectorParams,
    ModelConfig,
)
from fomm.models import Models, build_models


def tiny_config(image_size: int = 64, num_kp: int = 5, flavour: str = "original") -> ModelConfig:
    return ModelConfig(
        kp_detector=KPDetectorParams(num_kp=num_kp, block_expansion=4, max_features=16,
                                     num_blocks=3, scale_factor=0.5),
        generator=GeneratorParams(num_kp=num_kp, block_expansion=4, max_features=16,
                                  num_bottleneck_blocks=1,
                                  dense_motion_params=DenseMotionParams(
                                      block_expansion=4, max_features=16, num_blocks=3,
                                      scale_factor=0.5)),
        discriminator=DiscriminatorParams(num_kp=num_kp, block_expansion=4, max_features=16,
                                          num_blocks=2, sn=True),
        image_size=image_size, flavour=flavour)


def tiny_models(seed: int = 0, discriminator: bool = False, **kwargs) -> tuple[Models,
                                                                               ModelConfig]:
    torch.manual_seed(seed)
    cfg = tiny_config(**kwargs)
    models = build_models(cfg, discriminator=discriminator)
    with torch.no_grad():  # outputs that depend on the inputs (default init gives a flat grey)
        for p in models.kp_detector.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for module in models.generator.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.fill_(0.1)
        models.generator.final.weight.mul_(2)
    return models, cfg


def tiny_blend_models() -> tuple[Models, ModelConfig]:
    """Tiny networks in the bundled model's layout (blend output, occlusion map), with a blend
    mask that depends on the features."""
    import dataclasses

    _, cfg = tiny_models()
    cfg = dataclasses.replace(cfg, generator=dataclasses.replace(
        cfg.generator, blend_output=True, estimate_occlusion_map=True))
    torch.manual_seed(0)
    models = build_models(cfg)
    with torch.no_grad():
        models.generator.blend.weight.normal_(0, 0.1)
    return models, cfg


def moving_frames(n: int, size: int = 64) -> list:
    """``n`` uint8 (size, size, 3) frames: one random image shifted a little more each frame."""
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return [np.roll(base, (3 * i, 2 * i), (0, 1)) for i in range(n)]
