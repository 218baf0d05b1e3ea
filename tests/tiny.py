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
