"""PaddleGAN's mobile FOMM: PaddleGAN's names and sizes, our interfaces, a .pdparams round trip."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fomm.checkpoints import load_checkpoint
from fomm.config import (
    DenseMotionParams,
    GeneratorParams,
    KPDetectorParams,
    ModelConfig,
    load_config,
)
from fomm.errors import CheckpointError
from fomm.models import build_models, count_parameters
from fomm.models.generator import GeneratorOutput, OcclusionAwareGenerator
from fomm.models.keypoint_detector import KPDetector
from fomm.models.mobile import (
    MobileAntiAliasInterpolation2d,
    MobileKPDetector,
    MobileOcclusionAwareGenerator,
)
from fomm.models.motion import Keypoints


def tiny_mobile_config(flavour: str = "paddle") -> ModelConfig:
    return ModelConfig(
        kp_detector=KPDetectorParams(num_kp=5, block_expansion=4, max_features=16, num_blocks=3,
                                     scale_factor=0.25),
        generator=GeneratorParams(num_kp=5, block_expansion=4, max_features=16,
                                  num_bottleneck_blocks=2,
                                  dense_motion_params=DenseMotionParams(
                                      block_expansion=4, max_features=16, num_blocks=3,
                                      scale_factor=0.25)),
        image_size=64, architecture="mobile", flavour=flavour)


def randomized(models, seed: int = 0):
    """Every parameter and BN statistic random (as in a trained file), jacobians near identity."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for net in (models.kp_detector, models.generator):
            for name, p in net.named_parameters():
                p.copy_(torch.randn_like(p) * (0.01 if "jacobian" in name else 0.3))
            for name, b in net.named_buffers():
                if name.endswith("running_mean"):
                    b.copy_(torch.randn_like(b) * 0.1)
                elif name.endswith("running_var"):
                    b.copy_(torch.rand_like(b) + 0.5)
        models.kp_detector.jacobian[-1].bias.add_(torch.tensor([1.0, 0, 0, 1] * 5))
    return models


def to_paddle_names(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Torch names → PaddleGAN's (BN ``_mean``/``_variance``, no ``num_batches_tracked``)."""
    return {k.replace(".running_mean", "._mean").replace(".running_var", "._variance"):
            v.detach().numpy().copy()
            for k, v in state.items() if not k.endswith(".num_batches_tracked")}


def _run(models, size: int = 64):
    torch.manual_seed(3)
    x = torch.rand(2, size, size, 3).permute(0, 3, 1, 2)
    with torch.no_grad():
        kp = models.kp_detector(x)
        return kp, models.generator(x[:1], kp, models.kp_detector(x[:1]).expand(2))


@pytest.fixture(scope="module")
def preset_models():
    config = load_config("paddle-vox-mobile-256").model
    torch.manual_seed(0)
    return config, build_models(config)


def test_preset_builds_mobile_networks(preset_models):
    config, models = preset_models
    assert config.architecture == "mobile" and config.flavour == "paddle"
    assert isinstance(models.kp_detector, MobileKPDetector)
    assert isinstance(models.kp_detector, KPDetector)
    assert isinstance(models.generator, MobileOcclusionAwareGenerator)
    assert isinstance(models.generator, OcclusionAwareGenerator)
    assert not models.kp_detector.training and not models.generator.training


def test_parameter_counts_match_paddlegan_layers(preset_models):
    # counted from PaddleGAN's mobile_net layer definitions (ppgan/modules/first_order.py,
    # keypoint_detector.py, dense_motion.py, models/generators/occlusion_aware.py)
    _, models = preset_models
    assert count_parameters(models.kp_detector) == 544_361
    assert count_parameters(models.generator.dense_motion_network) == 703_856
    assert count_parameters(models.generator) == 1_164_801
    full = build_models(load_config("paddle-vox-256").model)
    mobile_total = count_parameters(models.kp_detector) + count_parameters(models.generator)
    assert mobile_total * 10 < count_parameters(full.kp_detector) + count_parameters(
        full.generator)


def test_paddlegan_parameter_names(preset_models):
    _, models = preset_models
    kp = models.kp_detector.state_dict()
    gen = models.generator.state_dict()
    for key in ("kp.2.weight", "jacobian.2.bias", "down.weight",
                "predictor.encoder.down_blocks.0.conv.weight",
                "predictor.encoder.down_blocks.0.conv1.weight",
                "predictor.decoder.up_blocks.0.norm1.running_var"):
        assert key in kp, key
    for key in ("first.0.conv.weight", "first.2.norm.running_mean", "down_blocks.1.conv1.weight",
                "up_blocks.0.norm1.weight", "bottleneck.r5.conv_pw.weight",
                "bottleneck.r5.conv_dw.weight", "bottleneck.r5.norm_pw_linear.running_var",
                "final.0.weight", "final.4.bias", "dense_motion_network.mask.4.weight",
                "dense_motion_network.occlusion.4.bias", "dense_motion_network.down.weight",
                "dense_motion_network.hourglass.decoder.up_blocks.4.conv.weight"):
        assert key in gen, key
    # PaddleGAN's mobile blocks have bias-free convolutions
    assert "first.0.conv.bias" not in gen and "bottleneck.r0.conv_pw.bias" not in gen
    assert gen["bottleneck.r0.conv_dw.weight"].shape == (256, 1, 3, 3)  # depthwise, 2x expand
    assert kp["down.weight"].shape == (3, 1, 3, 3)


def test_mobile_anti_alias_kernel():
    down = MobileAntiAliasInterpolation2d(3, 0.25)
    g = np.exp(-np.arange(-1, 2) ** 2 / (2 * 0.25**2 + 1e-9))
    expected = np.outer(g, g) / np.outer(g, g).sum()
    assert np.allclose(down.weight[0, 0].numpy(), expected, atol=1e-7)
    assert down(torch.rand(1, 3, 256, 256)).shape == (1, 3, 64, 64)


def test_preset_forward_on_256(preset_models):
    _, models = preset_models
    torch.manual_seed(1)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        kp = models.kp_detector(x)
        out = models.generator(x, kp, kp)
    assert isinstance(kp, Keypoints) and isinstance(out, GeneratorOutput)
    assert kp.value.shape == (1, 10, 2) and kp.jacobian.shape == (1, 10, 2, 2)
    assert float(kp.value.abs().max()) <= 1
    # untrained jacobian head starts at the identity
    assert torch.allclose(kp.jacobian, torch.eye(2).expand(1, 10, 2, 2))
    assert out.prediction.shape == (1, 3, 256, 256)
    assert float(out.prediction.min()) >= 0 and float(out.prediction.max()) <= 1
    assert out.mask.shape == (1, 11, 64, 64)
    assert out.sparse_deformed.shape == (1, 11, 3, 64, 64)
    assert out.occlusion_map.shape == (1, 1, 64, 64)
    assert out.deformation.shape == (1, 64, 64, 2)
    assert out.deformed.shape == (1, 3, 256, 256)


def test_encoded_source_and_batches_match_single_frames():
    models = randomized(build_models(tiny_mobile_config()))
    torch.manual_seed(2)
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        kp = models.kp_detector(x)
        kp_source = models.kp_detector(x[:1])
        encoded = models.generator.encode_source(x[:1])
        batched = models.generator(x[:1], kp, kp_source.expand(3), encoded=encoded,
                                   with_deformed=False)
        for t in range(3):
            single = models.generator(x[:1], kp.select(slice(t, t + 1)), kp_source)
            assert torch.allclose(batched.prediction[t], single.prediction[0], atol=1e-5)


def test_mobile_keeps_occlusion_border_but_blends_deformation():
    models = randomized(build_models(tiny_mobile_config()))
    assert models.generator.paddle_inference and not models.generator.occlusion_border
    _, out = _run(models)
    border = torch.cat([out.occlusion_map[..., :5, :].flatten(),
                        out.occlusion_map[..., -5:, :].flatten()])
    assert (border < 1).any()  # PaddleGAN: `if self.inference and not self.mobile_net`


def test_pdparams_round_trip_with_paddle_names(tmp_path: Path):
    cfg = tiny_mobile_config()
    models = randomized(build_models(cfg))
    data = {"generator": to_paddle_names(models.generator.state_dict()),
            "kp_detector": to_paddle_names(models.kp_detector.state_dict()),
            "StructuredToParameterName@@": {}}
    assert "first.0.norm._mean" in data["generator"]
    path = tmp_path / "vox_mobile.pdparams"
    path.write_bytes(pickle.dumps(data, protocol=4))
    loaded, cfg2, ckpt = load_checkpoint(path, config=cfg)
    assert cfg2.architecture == "mobile" and ckpt.format == "paddle"
    kp_a, out_a = _run(models)
    kp_b, out_b = _run(loaded)
    assert torch.equal(kp_a.value, kp_b.value) and torch.equal(kp_a.jacobian, kp_b.jacobian)
    assert torch.equal(out_a.prediction, out_b.prediction)
    # loading is strict: one missing PaddleGAN key is an error, not a half-random model
    del data["generator"]["bottleneck.r1.norm_dw._variance"]
    path.write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(CheckpointError, match=r"bottleneck\.r1\.norm_dw\.running_var is missing"):
        load_checkpoint(path, config=cfg)
