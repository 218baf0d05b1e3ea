"""PaddleGAN .pdparams: restricted unpickling, key renames, parity with PaddleGAN's predictor."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from parity_data import MODES, SOURCES, paddle_inputs
from parity_data import source as fixture_source
from tiny import tiny_config, tiny_models

from fomm.checkpoints import detect_format, load_checkpoint
from fomm.checkpoints.paddle import paddle_to_torch_keys, read_paddle
from fomm.errors import CheckpointError
from fomm.models import build_models
from fomm.models.motion import Keypoints, normalize_kp

ATOL = 1e-4


# ---------------------------------------------------------------------------------------------
# a small .pdparams writer: what PaddleGAN's save helper writes (numpy arrays, Paddle names)


def to_paddle_names(state: dict[str, torch.Tensor], instance_norm: bool = False
                    ) -> dict[str, np.ndarray]:
    """Torch state dict → Paddle names: BN ``_mean``/``_variance``, no ``num_batches_tracked``."""
    out = {}
    for key, value in state.items():
        if key.endswith(".num_batches_tracked"):
            continue
        key = key.replace(".running_mean", "._mean").replace(".running_var", "._variance")
        if instance_norm and key.endswith(".norm.weight"):
            key = key[: -len("weight")] + "scale"  # Paddle's InstanceNorm2D
        out[key] = value.detach().numpy().copy()
    return out


def write_pdparams(path: Path, data: dict, protocol: int = 4) -> Path:
    data = {**data, "StructuredToParameterName@@": {}}
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


def _tiny_pdparams(tmp_path: Path, **extra) -> tuple[Path, object]:
    models, cfg = tiny_models(flavour="paddle")
    path = write_pdparams(tmp_path / "tiny.pdparams", {
        "generator": to_paddle_names(models.generator.state_dict()),
        "kp_detector": to_paddle_names(models.kp_detector.state_dict()), **extra})
    return path, (models, cfg)


def _run(models, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        kp = models.kp_detector(x)
        kp_source = models.kp_detector(x[:1]).expand(2)
        return kp.value, models.generator(x[:1], kp, kp_source).prediction


# ---------------------------------------------------------------------------------------------
# renames and reading


def test_paddle_to_torch_keys_renames_and_adds_bn_counter():
    t = torch.zeros(2)
    state = {"norm._mean": t, "norm._variance": t, "norm.weight": t, "norm.bias": t,
             "conv.weight": t, "down_blocks.1.norm.scale": t, "_layers.final.bias": t,
             "conv.weight_orig": t, "conv.weight_u": t, "conv.weight_v": t}
    before = dict(state)
    out = paddle_to_torch_keys(state)
    assert state == before  # pure
    assert set(out) == {"norm.running_mean", "norm.running_var", "norm.num_batches_tracked",
                        "norm.weight", "norm.bias", "conv.weight", "down_blocks.1.norm.weight",
                        "final.bias", "conv.weight_orig", "conv.weight_u", "conv.weight_v"}
    assert out["norm.running_mean"] is t
    assert out["norm.num_batches_tracked"].dtype == torch.long
    assert int(out["norm.num_batches_tracked"]) == 0


def test_round_trip_loads_strictly_and_matches(tmp_path):
    path, (models, cfg) = _tiny_pdparams(tmp_path)
    assert detect_format(path) == "paddle"
    loaded, cfg2, ckpt = load_checkpoint(path, config=cfg)
    assert cfg2.flavour == "paddle" and ckpt.format == "paddle"
    assert set(ckpt.state) == {"generator", "kp_detector"}
    for a, b in zip(_run(models), _run(loaded), strict=True):
        assert torch.equal(a, b)


def test_numpy1_files_and_paddle_tensor_tuples_load(tmp_path):
    models, cfg = tiny_models(flavour="paddle")
    kp = to_paddle_names(models.kp_detector.state_dict())
    # Paddle 2.x pickles a live tensor as (name, ndarray)
    gen = {k: (f"param_{i}", v)
           for i, (k, v) in enumerate(to_paddle_names(models.generator.state_dict()).items())}
    raw = pickle.dumps({"generator": gen, "kp_detector": kp}, protocol=2)
    assert b"numpy._core.multiarray\n_reconstruct" in raw
    path = tmp_path / "np1.pdparams"
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    assert b"numpy.core.multiarray" in path.read_bytes()
    loaded, _, _ = load_checkpoint(path, config=cfg)
    for a, b in zip(_run(models), _run(loaded), strict=True):
        assert torch.equal(a, b)


def test_training_checkpoint_with_discriminator_and_optimizers(tmp_path):
    models, cfg = tiny_models(flavour="paddle", discriminator=True)
    disc = to_paddle_names(models.discriminator.state_dict(), instance_norm=True)
    assert any(k.endswith(".norm.scale") for k in disc)
    assert any(k.endswith(".weight_orig") for k in disc)
    optimizer = {"conv2d_0.w_0_moment1_0": np.zeros(3, np.float32),
                 "LR_Scheduler": {"last_epoch": 7, "last_lr": 2e-4}}
    path = write_pdparams(tmp_path / "train.pdparams", {
        "generator": to_paddle_names(models.generator.state_dict()),
        "kp_detector": to_paddle_names(models.kp_detector.state_dict()),
        "discriminator": disc, "epoch": 7, "optimizer_KP": optimizer,
        "optimizer_Gen": optimizer, "optimizer_Dis": optimizer})
    assert set(read_paddle(path)) == {"generator", "kp_detector", "discriminator"}
    loaded, _, _ = load_checkpoint(path, config=cfg, discriminator=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = models.discriminator({"prediction_1": x})["1"].prediction_map
        b = loaded.discriminator({"prediction_1": x})["1"].prediction_map
    assert torch.equal(a, b)
    # a predictor file (generator + kp_detector only) cannot provide a discriminator
    predictor, _ = _tiny_pdparams(tmp_path)
    with pytest.raises(CheckpointError, match="no 'discriminator'"):
        load_checkpoint(predictor, config=cfg, discriminator=True)


def test_mismatch_names_parameter_and_both_shapes(tmp_path):
    path, (_, cfg) = _tiny_pdparams(tmp_path)
    bigger = cfg.replace(generator=dataclasses.replace(cfg.generator, block_expansion=8))
    with pytest.raises(CheckpointError, match=r"tiny\.pdparams: generator\..* is \(.*\), "
                                              r"config expects \(.*\)") as err:
        load_checkpoint(path, config=bigger)
    assert "\n" not in str(err.value)


def test_missing_key_is_an_error_not_a_half_load(tmp_path):
    models, cfg = tiny_models(flavour="paddle")
    gen = to_paddle_names(models.generator.state_dict())
    del gen["final.bias"]
    path = write_pdparams(tmp_path / "partial.pdparams", {
        "generator": gen, "kp_detector": to_paddle_names(models.kp_detector.state_dict())})
    with pytest.raises(CheckpointError, match=r"generator\.final\.bias is missing"):
        load_checkpoint(path, config=cfg)


# ---------------------------------------------------------------------------------------------
# unsafe and broken files


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_malicious_pdparams_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"generator": {"first.conv.weight": _Evil(marker)},
                                   "kp_detector": {}}, protocol=4))
    assert detect_format(path) == "paddle"
    with pytest.raises(CheckpointError, match=r"refused to load: the file references "
                                              r"(posix|nt|os)\.system, which could run code"):
        load_checkpoint(path, config=tiny_config(flavour="paddle"))
    with pytest.raises(CheckpointError, match="refused"):
        read_paddle(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"generator": _EvalEvil()}, protocol=2))
    with pytest.raises(CheckpointError, match=r"(__builtin__|builtins)\.eval"):
        read_paddle(path)


def test_truncated_and_foreign_pickles_give_one_line_errors(tmp_path):
    path, _ = _tiny_pdparams(tmp_path)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 20):
        broken = tmp_path / f"cut{cut}.pdparams"
        broken.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
            read_paddle(broken)
        assert "\n" not in str(err.value) and str(broken) in str(err.value)
    listed = tmp_path / "list.pdparams"
    listed.write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    with pytest.raises(CheckpointError, match="not a FOMM checkpoint"):
        read_paddle(listed)
    flat = write_pdparams(tmp_path / "flat.pdparams", {"conv.weight": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match="no 'generator' state dict .found: conv.weight"):
        read_paddle(flat)
    strings = write_pdparams(tmp_path / "str.pdparams",
                             {"generator": {"final.bias": "x"}, "kp_detector": {}})
    with pytest.raises(CheckpointError, match=r"generator\.final\.bias is a str"):
        read_paddle(strings)


# ---------------------------------------------------------------------------------------------
# parity with PaddleGAN's FirstOrderPredictor: its fixture in ../shared (expected outputs in
# tests/data/parity) where present, and one made at test time with ppgan (parity_data.SOURCES)


def close(actual, expected, atol: float = ATOL, stored_error: float = 0.0) -> float:
    """Max abs diff, asserted ≤ ``atol`` less the stored copy's rounding (see parity_data)."""
    actual = np.asarray(actual.detach() if torch.is_tensor(actual) else actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max())
    assert diff <= atol - stored_error, f"max abs diff {diff:.3g} > {atol - stored_error:.3g}"
    return diff


def close_prediction(prediction: torch.Tensor, expected: dict, mode: str) -> None:
    """All frames at a quarter of the resolution, the last frame in full (stored ×65535)."""
    close(prediction[:, :, ::4, ::4], expected[f"prediction_{mode}_q16_sub4"] / 65535.0)
    close(prediction[-1:], expected[f"prediction_{mode}_q16_last"] / 65535.0)


@pytest.fixture(scope="module", params=SOURCES)
def paddle_run(request):
    src = fixture_source(request, "paddle")
    models, config, _ = load_checkpoint(src.checkpoint, config=src.config)
    inputs = paddle_inputs()
    expected = {**src.expected, "stored_error": src.error, "checkpoint": src.checkpoint}
    # the predictor's input: (u8 / 255.0).astype(float32), NCHW
    source = torch.from_numpy((inputs["source_u8"] / 255.0).astype(np.float32))
    source = source.permute(2, 0, 1).unsqueeze(0)
    driving = torch.from_numpy((inputs["driving_u8"] / 255.0).astype(np.float32))
    driving = driving.permute(0, 3, 1, 2)
    with torch.no_grad():
        kp_source = models.kp_detector(source)
        per_frame = [models.kp_detector(driving[t:t + 1]) for t in range(len(driving))]
        kp_driving = Keypoints.cat(per_frame)
        results = {}
        for mode, (relative, adapt) in MODES.items():
            kp_norm, scale = normalize_kp(kp_source, kp_driving, per_frame[0],
                                          relative=relative, adapt_scale=adapt,
                                          relative_jacobian=relative)
            outs = [models.generator(source, kp_norm.select(slice(t, t + 1)), kp_source,
                                     with_deformed=False)
                    for t in range(len(driving)) if f"prediction_{mode}_q16_last" in expected]
            results[mode] = (kp_norm, scale, outs)
    return models, config, source, driving, kp_source, kp_driving, results, expected


def test_fixture_config_is_paddle_flavour(paddle_run):
    config = paddle_run[1]
    assert config.flavour == "paddle" and config.architecture == "fomm"


def test_keypoints_match_paddlegan(paddle_run):
    _, _, _, _, kp_source, kp_driving, _, expected = paddle_run
    close(kp_source.value, expected["kp_source_value"])
    close(kp_source.jacobian, expected["kp_source_jacobian"])
    close(kp_driving.value, expected["kp_driving_value"])
    close(kp_driving.jacobian, expected["kp_driving_jacobian"])


@pytest.mark.parametrize("mode", list(MODES))
def test_normalized_keypoints_match_paddlegan(paddle_run, mode):
    results, expected = paddle_run[6], paddle_run[7]
    kp_norm, scale, _ = results[mode]
    close(kp_norm.value, expected[f"kp_norm_value_{mode}"])
    close(kp_norm.jacobian, expected[f"kp_norm_jacobian_{mode}"])
    if mode == "rel_adapt":
        assert scale == pytest.approx(float(expected["adapt_movement_scale"]), abs=ATOL)


@pytest.mark.parametrize("mode", ["rel_adapt", "abs"])
def test_generator_matches_paddlegan(paddle_run, mode):
    results, expected = paddle_run[6], paddle_run[7]
    outs = results[mode][2]
    close_prediction(torch.cat([o.prediction for o in outs]), expected, mode)
    error = expected["stored_error"]
    key = f"occlusion_map_{mode}"
    close(torch.cat([o.occlusion_map for o in outs]), expected[key],
          stored_error=error.get(key, 0.0))
    # stored before the generator's border blend, which is what our output carries
    key = f"deformation_{mode}"
    close(torch.cat([o.deformation for o in outs]), expected[key],
          stored_error=error.get(key, 0.0))


def test_batched_animation_returns_every_frame_in_order(paddle_run):
    """PaddleGAN's predictor with batch_size 2 returns driving frames [0, 1, 1, 2]; we must not.

    (The frame map is a record of PaddleGAN master's predictor in its shared fixture; ppgan
    2.1.0's predictor, which made the generated one, batches correctly.)
    """
    models, _, source, driving, kp_source, _, results, expected = paddle_run
    reference = expected["prediction_rel_adapt_q16_sub4"] / 65535.0
    # adjacent video frames differ by ~6e-3, 60x the tolerance: a mixed-up frame would show
    assert np.abs(reference[[0, 1, 1, 2]] - reference).max() > 10 * ATOL
    if "batch2_frame_map_rel_adapt" in expected:
        # the bug is visible at our tolerance: PaddleGAN's frames 2 and 3 are the wrong frames
        assert expected["batch2_frame_map_rel_adapt"].tolist() == [0, 1, 1, 2]
    kp_norm, _, per_frame = results["rel_adapt"]
    with torch.no_grad():
        kp_batch = models.kp_detector(driving)  # all four frames in one batch
        close(kp_batch.value, expected["kp_driving_value"])
        encoded = models.generator.encode_source(source)
        batched = models.generator(source, kp_norm, kp_source.expand(len(driving)),
                                   encoded=encoded, with_deformed=False)
    for t, out in enumerate(per_frame):
        close(batched.prediction[t:t + 1], out.prediction.numpy())
        close(batched.occlusion_map[t:t + 1], out.occlusion_map.numpy())
    close_prediction(batched.prediction, expected, "rel_adapt")


def test_fixture_reads_as_numpy_arrays_only(paddle_run):
    state = read_paddle(paddle_run[7]["checkpoint"])
    assert set(state) == {"generator", "kp_detector"}
    assert all(v.dtype in (torch.float32, torch.long) for sd in state.values()
               for v in sd.values())
    own = build_models(paddle_run[1])
    assert set(state["generator"]) == set(own.generator.state_dict())
