"""Architecture name → network builders; ``build_models(config)`` is the one way to build them."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from torch import nn

from fomm.config import ModelConfig
from fomm.models.discriminator import MultiScaleDiscriminator
from fomm.models.generator import OcclusionAwareGenerator
from fomm.models.keypoint_detector import KPDetector


class Models(NamedTuple):
    kp_detector: nn.Module
    generator: nn.Module
    discriminator: nn.Module | None = None


def build_models(config: ModelConfig, discriminator: bool = False) -> Models:
    """Build the keypoint detector, generator and (optionally) discriminator of ``config``.

    Networks are returned in ``eval()`` mode on the CPU, float32.
    """
    kp_params = dataclasses.asdict(config.kp_detector)
    gen_params = dataclasses.asdict(config.generator)
    aa_eps = 1e-9 if config.flavour == "paddle" else 0.0
    if config.architecture == "mobile":
        from fomm.models import mobile

        kp_detector: nn.Module = mobile.MobileKPDetector(**kp_params)
        generator: nn.Module = mobile.MobileOcclusionAwareGenerator(
            **gen_params, flavour=config.flavour)
    else:
        kp_detector = KPDetector(**kp_params, aa_eps=aa_eps)
        generator = OcclusionAwareGenerator(**gen_params, flavour=config.flavour, aa_eps=aa_eps)
    disc = None
    if discriminator:
        disc = MultiScaleDiscriminator(**dataclasses.asdict(config.discriminator))
        disc.eval()
    return Models(kp_detector.eval(), generator.eval(), disc)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
