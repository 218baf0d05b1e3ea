"""Parity with PaddleGAN's FOMM code as packaged on PyPI (ppgan 2.1.0, run by paddlepaddle).

Needs no data files: PaddleGAN's networks are built from a small config in its YAML layout,
given seeded random weights, saved with PaddleGAN's own checkpoint writer as a ``.pdparams`` in
tmp_path, read back the way ``FirstOrderPredictor.load_checkpoints`` does (generator built with
``inference=True``) and by fomm's ``load_checkpoint``, and run on scikit-image's pictures.
See :func:`parity.packages.load_ppgan` for the one line of ppgan 2.1.0 that paddle 3 needs
changed. (ppgan 2.1.0 so patched, on paddle 3.3.1, reproduces
../shared/fixtures/paddlegan-parity/expected.npz, computed with PaddleGAN master: keypoints
within 1.5e-8, predictions within their 16-bit storage error.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fomm.checkpoints import load_checkpoint
from fomm.models.motion import Keypoints, normalize_kp

from .packages import (
    drawn_inputs,
    load_ppgan,
    max_diff,
    one_thread,
    paddle_networks,
    require,
    write_paddle_config,
)

MODES = {"rel_adapt": (True, True), "rel": (True, False), "abs": (False, False)}
GENERATOR_MODES = ("rel_adapt", "abs")  # as the fixture: "rel" differs only in the scale
SIZE = 128  # PaddleGAN's predictor blends a 5-pixel border of the 32x32 motion field
# Two frameworks' kernels sum in other orders: measured up to 6e-6 (keypoints, jacobians,
# motion, masks, predictions), within a 3e-5 budget; the warps of the raw picture (deformed,
# sparse_deformed) turn a 3e-6 grid difference into up to 1.1e-4 at the picture's sharp edges.
ATOL = {"prediction": 3e-5, "mask": 3e-5, "occlusion_map": 3e-5, "deformation": 3e-5,
        "kp": 3e-5, "sparse_deformed": 5e-4, "deformed": 5e-4}
KEYS = ("prediction", "mask", "sparse_deformed", "occlusion_map", "deformed", "deformation")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore:.*ccache:UserWarning")


def _paddle_checkpoint(folder, seed: int = 7):
    """Build PaddleGAN's networks, randomise them, save them as PaddleGAN's trainer does."""
    import yaml

    _, _, _, filesystem = load_ppgan()
    config_path = write_paddle_config(folder / "config.yaml", SIZE)
    model = yaml.safe_load(config_path.read_text())["model"]
    source, driving = drawn_inputs(size=SIZE)
    generator, kp_detector = paddle_networks(model, np.concatenate([source, driving[-1:]]), seed)
    path = folder / "vox-tiny.pdparams"
    filesystem.save({"generator": generator.state_dict(),
                     "kp_detector": kp_detector.state_dict()}, str(path))
    return config_path, path


def _predictor_networks(config_path, ckpt_path):
    """``FirstOrderPredictor.load_checkpoints`` (ppgan/apps/first_order_predictor.py)."""
    import yaml

    paddle = require("paddle")
    kp_mod, gen_mod, _, _ = load_ppgan()
    config = yaml.safe_load(config_path.read_text())
    generator = gen_mod.OcclusionAwareGenerator(**config["model"]["generator"]["generator_cfg"],
                                                **config["model"]["common_params"],
                                                inference=True)
    kp_detector = kp_mod.KPDetector(**config["model"]["generator"]["kp_detector_cfg"],
                                    **config["model"]["common_params"])
    checkpoint = paddle.load(str(ckpt_path))
    generator.set_state_dict(checkpoint["generator"])
    kp_detector.set_state_dict(checkpoint["kp_detector"])
    generator.eval()
    kp_detector.eval()
    return generator, kp_detector


def _numpy(out: dict) -> dict:
    return {k: v.numpy() for k, v in out.items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with one_thread():
        return _run(tmp_path_factory)


def _run(tmp_path_factory):
    paddle = require("paddle")
    _, _, animate, _ = load_ppgan()
    config_path, ckpt_path = _paddle_checkpoint(tmp_path_factory.mktemp("paddlegan"))
    generator, kp_detector = _predictor_networks(config_path, ckpt_path)
    models, config, ckpt = load_checkpoint(ckpt_path, config=config_path)
    source_np, driving_np = drawn_inputs(size=SIZE)
    T = len(driving_np)
    grids = []  # the dense-motion grid, before the predictor's border blend
    generator.dense_motion_network.register_forward_post_hook(
        lambda layer, args, out: grids.append(out["deformation"].numpy()))
    ref, ours = {}, {}
    with paddle.no_grad():
        source, driving = paddle.to_tensor(source_np), paddle.to_tensor(driving_np)
        kp_source = kp_detector(source)
        kp_driving = [kp_detector(driving[t:t + 1]) for t in range(T)]  # batch 1
        ref["kp_source"] = _numpy(kp_source)
        ref["kp_driving"] = [_numpy(kp) for kp in kp_driving]
        for mode, (relative, adapt) in MODES.items():
            norms = [animate.normalize_kp(kp_source, kp, kp_driving[0],
                                          adapt_movement_scale=adapt,
                                          use_relative_movement=relative,
                                          use_relative_jacobian=relative) for kp in kp_driving]
            outs = [_numpy(generator(source, kp_source=kp_source, kp_driving=kp))
                    for kp in norms if mode in GENERATOR_MODES]
            for out, grid in zip(outs, grids[len(grids) - len(outs):], strict=True):
                out["deformation"] = grid
            ref[mode] = [_numpy(kp) for kp in norms], outs
        # batched, as the predictor runs with --batch_size 4
        kp_batch = kp_detector(driving)
        tile = {k: paddle.tile(v, [T] + [1] * (v.ndim - 1)) for k, v in kp_source.items()}
        ref["batched"] = _numpy(kp_batch), _numpy(generator(
            paddle.tile(source, [T, 1, 1, 1]), kp_source=tile, kp_driving=kp_batch))
    source, driving = torch.from_numpy(source_np), torch.from_numpy(driving_np)
    with torch.no_grad():
        ours["kp_source"] = models.kp_detector(source)
        ours["kp_driving"] = [models.kp_detector(driving[t:t + 1]) for t in range(T)]
        for mode, (relative, adapt) in MODES.items():
            kp_norm, scale = normalize_kp(ours["kp_source"], Keypoints.cat(ours["kp_driving"]),
                                          ours["kp_driving"][0], relative=relative,
                                          adapt_scale=adapt, relative_jacobian=relative)
            ours[mode + "_scale"] = scale
            ours[mode] = kp_norm, [models.generator(source, kp_norm.select(slice(t, t + 1)),
                                                    ours["kp_source"])
                                   for t in range(T) if mode in GENERATOR_MODES]
        kp_batch = models.kp_detector(driving)
        ours["batched"] = kp_batch, models.generator(source.expand(T, -1, -1, -1), kp_batch,
                                                     ours["kp_source"].expand(T))
    return ref, ours, config, ckpt


def test_pdparams_loads_as_paddle_flavour(run):
    *_, config, ckpt = run
    assert ckpt.format == "paddle" and config.flavour == "paddle"
    assert set(ckpt.state) == {"generator", "kp_detector"}


def test_keypoints(run):
    ref, ours, *_ = run
    assert max_diff(ours["kp_source"].value, ref["kp_source"]["value"]) <= ATOL["kp"]
    assert max_diff(ours["kp_source"].jacobian, ref["kp_source"]["jacobian"]) <= ATOL["kp"]
    for theirs, mine in zip(ref["kp_driving"], ours["kp_driving"], strict=True):
        assert max_diff(mine.value, theirs["value"]) <= ATOL["kp"]
        assert max_diff(mine.jacobian, theirs["jacobian"]) <= ATOL["kp"]
    value = np.concatenate([k["value"] for k in ref["kp_driving"]])
    assert value.std() > 0.05 and np.abs(value[1:] - value[:1]).max() > 0.01
    jacobians = np.concatenate([ref["kp_source"]["jacobian"]]
                               + [k["jacobian"] for k in ref["kp_driving"]])
    assert np.abs(jacobians - np.eye(2)).max() > 0.1
    assert np.abs(np.linalg.det(jacobians)).min() > 0.3


@pytest.mark.parametrize("mode", MODES)
def test_normalized_keypoints(run, mode):
    ref, ours, *_ = run
    theirs, mine = ref[mode][0], ours[mode][0]
    assert max_diff(mine.value, np.concatenate([k["value"] for k in theirs])) <= ATOL["kp"]
    assert max_diff(mine.jacobian, np.concatenate([k["jacobian"] for k in theirs])) <= ATOL["kp"]
    if mode == "rel_adapt":
        assert abs(ours[mode + "_scale"] - 1) > 0.05


@pytest.mark.parametrize("mode", GENERATOR_MODES)
def test_generator_outputs(run, mode):
    ref, ours, *_ = run
    theirs, mine = ref[mode][1], ours[mode][1]
    for key in KEYS:
        diff = max(max_diff(getattr(m, key), t[key]) for m, t in zip(mine, theirs, strict=True))
        assert diff <= ATOL[key], f"{mode} {key}: max abs diff {diff:.3g}"
    prediction = np.stack([t["prediction"] for t in theirs])
    assert 0.1 < prediction.mean() < 0.9 and prediction.std() > 0.02


def test_batched_calls(run):
    ref, ours, *_ = run
    (kp_theirs, out_theirs), (kp_mine, out_mine) = ref["batched"], ours["batched"]
    assert max_diff(kp_mine.value, kp_theirs["value"]) <= ATOL["kp"]
    for key in KEYS[:-1]:
        diff = max_diff(getattr(out_mine, key), out_theirs[key])
        assert diff <= ATOL[key], f"batched {key}: max abs diff {diff:.3g}"
