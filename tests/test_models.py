"""Network behaviour beyond parity: identity motion, batching, the blend_output extension."""

from __future__ import annotations

import dataclasses

import torch
from tiny import tiny_config

from fomm.models import build_models


def _with_blend(cfg):
    return cfg.replace(generator=dataclasses.replace(cfg.generator, blend_output=True))


def test_official_configs_have_no_blend_parameters():
    models = build_models(tiny_config())
    assert not any(k.startswith("blend.") for k in models.generator.state_dict())


def test_blend_output_starts_from_the_warped_source():
    torch.manual_seed(0)
    models = build_models(_with_blend(tiny_config()))
    assert "blend.weight" in models.generator.state_dict()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        kp = models.kp_detector(x)
        out = models.generator(x, kp, kp)  # identity motion: the warped source is the source
    # prediction = m * warped + (1 - m) * decoder with m = sigmoid(3) ≈ 0.953 at initialisation
    assert (out.prediction - out.deformed).abs().max() <= 1 - torch.sigmoid(torch.tensor(3.0))
    plain = build_models(tiny_config())
    plain.kp_detector.load_state_dict(models.kp_detector.state_dict())
    plain.generator.load_state_dict(models.generator.state_dict(), strict=False)
    with torch.no_grad():
        decoder_only = plain.generator(x, kp, kp).prediction
    assert (decoder_only - out.deformed).abs().mean() > 0.05


def test_generator_batch_equals_single_frames():
    torch.manual_seed(0)
    models = build_models(tiny_config())
    source = torch.rand(1, 3, 64, 64)
    driving = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        kp_s = models.kp_detector(source)
        kp_d = models.kp_detector(driving)
        enc = models.generator.encode_source(source)
        batched = models.generator(source, kp_d, kp_s.expand(3), encoded=enc).prediction
        single = torch.cat([models.generator(source, kp_d.select(slice(t, t + 1)), kp_s)
                            .prediction for t in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)
