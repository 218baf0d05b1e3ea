"""Config parsing: every preset, both schemas, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fomm.config import ModelConfig, load_config, preset_names
from fomm.errors import ConfigError
from fomm.models import build_models, count_parameters

ORIGINAL = ["vox-256", "vox-adv-256", "taichi-256", "taichi-adv-256", "mgif-256", "bair-256",
            "fashion-256", "nemo-256"]
PADDLE = ["paddle-vox-256", "paddle-vox-512", "paddle-vox-mobile-256", "paddle-fashion-256"]


def test_all_presets_present():
    assert set(ORIGINAL + PADDLE) <= set(preset_names())


@pytest.mark.parametrize("name", sorted(preset_names()))
def test_every_preset_builds_and_runs(name):
    cfg = load_config(name).model
    models = build_models(cfg, discriminator=True)
    assert count_parameters(models.generator) > 0
    # run at 128x128 with the preset's own architecture: shapes must flow end to end
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        kp = models.kp_detector(x)
        out = models.generator(x, kp, kp)
    assert kp.value.shape == (1, cfg.num_kp, 2)
    assert out.prediction.shape == (1, 3, 128, 128)


def test_vox_values_and_flavours():
    cfg = load_config("vox-256")
    assert cfg.model.generator.block_expansion == 64
    assert cfg.model.generator.dense_motion_params.max_features == 1024
    assert cfg.model.discriminator.sn is True
    assert cfg.train.batch_size == 40 and cfg.train.epoch_milestones == (60, 90)
    assert cfg.model.flavour == "original"
    assert load_config("paddle-vox-256").model.flavour == "paddle"
    assert load_config("paddle-vox-mobile-256").model.architecture == "mobile"
    assert load_config("paddle-vox-512").model.image_size == 512
    assert load_config("mgif-256").model.kp_detector.single_jacobian_map is True
    assert load_config("vox-adv-256").model.discriminator.use_kp is True


def test_unknown_key_names_key_and_file(tmp_path):
    import fomm

    text = tmp_path / "x.yaml"
    src = (Path(fomm.__file__).parent / "configs" / "vox-256.yaml").read_text()
    assert "    temperature: 0.1\n" in src
    text.write_text(src.replace("    temperature: 0.1\n",
                                "    temperature: 0.1\n    num_blockz: 5\n"))
    with pytest.raises(ConfigError, match=r"x\.yaml.*num_blockz"):
        load_config(text)


def test_augmentation_sections(tmp_path):
    import fomm

    src = (Path(fomm.__file__).parent / "configs" / "vox-256.yaml").read_text()
    anchor = "  augmentation_params:\n"
    assert anchor in src
    extra = ("    resize_param: {ratio: [0.9, 1.1]}\n    crop_param: {size: [256, 256]}\n"
             "    pair_motion_param: {rotation: 10, scale: 0.1, translation: 0.05}\n")
    path = tmp_path / "aug.yaml"
    path.write_text(src.replace(anchor, anchor + extra))
    aug = load_config(path).dataset.augmentation
    assert aug.resize_ratio == (0.9, 1.1) and aug.crop_size == (256, 256)
    assert (aug.pair_rotation, aug.pair_scale, aug.pair_translation) == (10, 0.1, 0.05)
    assert aug.pair_probability == 1.0  # given without a probability: every pair
    assert load_config("vox-256").dataset.augmentation.pair_probability == 0.0
    path.write_text(src.replace(anchor, anchor + "    pair_motion_param: {rotate: 10}\n"))
    with pytest.raises(ConfigError, match="pair_motion_param.rotate"):
        load_config(path)
    path.write_text(src.replace(anchor, anchor + "    pair_motion_param: {probability: 2}\n"))
    with pytest.raises(ConfigError, match="must be in"):
        load_config(path)


def test_missing_key_and_bad_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model_params:\n  common_params: {num_kp: 10}\n")
    with pytest.raises(ConfigError, match="missing key"):
        load_config(path)
    path.write_text("model_params: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="presets"):
        load_config("no-such-preset")


def test_model_config_dict_round_trip():
    cfg = load_config("paddle-vox-mobile-256").model
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
