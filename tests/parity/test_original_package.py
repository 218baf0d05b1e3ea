"""Parity with the original first-order-model code as packaged on PyPI (deep-animator 0.1.1).

Needs no data files: the original's networks are built from a small official-layout config,
given seeded random weights (see :func:`parity.packages.perturb`), saved as a ``.pth.tar``
training checkpoint in tmp_path, read back by the original's own ``load_checkpoints`` and by
fomm's ``load_checkpoint``, and run on pictures that come with scikit-image. Batch 1, as the
original demo runs, gives bit-identical keypoints and normalised keypoints; the generator's
outputs (and jacobians composed in relative mode, and batched calls) agree to float32 rounding,
as with the fixture of tests/parity.
(deep-animator's modules reproduce ../shared/fixtures/fomm-parity/expected.npz, the output of the
original repository at commit c027484, with max abs diff 0.0 on all 35 keys.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fomm.checkpoints import load_checkpoint
from fomm.models.motion import Keypoints, normalize_kp

from .packages import (
    drawn_inputs,
    max_diff,
    one_thread,
    original_networks,
    require,
    write_original_config,
)

MODES = {"rel_adapt": (True, True), "rel": (True, False), "abs": (False, False)}
ATOL = 1e-4  # as tests/parity: where sums run in another order (measured: up to 1.1e-5)
pytestmark = [pytest.mark.filterwarnings("ignore:Default grid_sample:UserWarning"),
              pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*DataParallel:UserWarning")]


def _original_checkpoint(folder, seed: int = 7):
    """Build the original's networks, randomise them, save the official checkpoint layout."""
    import yaml

    config_path = write_original_config(folder / "config.yaml")
    params = yaml.safe_load(config_path.read_text())["model_params"]
    source, driving = (torch.from_numpy(a) for a in drawn_inputs())
    generator, kp_detector = original_networks(params, torch.cat([source, driving[-1:]]), seed)
    checkpoint = {
        "generator": generator.state_dict(), "kp_detector": kp_detector.state_dict(),
        "optimizer_generator": torch.optim.Adam(generator.parameters(), lr=2e-4,
                                                betas=(0.5, 0.999)).state_dict(),
        "optimizer_kp_detector": torch.optim.Adam(kp_detector.parameters(), lr=2e-4,
                                                  betas=(0.5, 0.999)).state_dict(),
        "epoch": 0}
    torch.save(checkpoint, folder / "checkpoint.pth.tar")
    return config_path, folder / "checkpoint.pth.tar"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with one_thread():
        return _run(tmp_path_factory)


def _run(tmp_path_factory):
    utils = require("deep_animator.utils")
    config_path, ckpt_path = _original_checkpoint(tmp_path_factory.mktemp("original"))
    # the original's own loader (torch.load, load_state_dict, DataParallelWithCallback, eval)
    generator, kp_detector = (m.module for m in utils.load_checkpoints(str(config_path),
                                                                        str(ckpt_path)))
    models, _, ckpt = load_checkpoint(ckpt_path, config=config_path)
    source, driving = (torch.from_numpy(a) for a in drawn_inputs())
    T = len(driving)
    ref, ours, grids = {}, {}, []
    generator.dense_motion_network.register_forward_hook(
        lambda module, args, out: grids.append(out["deformation"]))
    with torch.no_grad():
        ref["kp_source"] = kp_detector(source)
        ref["kp_driving"] = [kp_detector(driving[t:t + 1]) for t in range(T)]  # batch 1
        ours["kp_source"] = models.kp_detector(source)
        ours["kp_driving"] = [models.kp_detector(driving[t:t + 1]) for t in range(T)]
        for mode, (relative, adapt) in MODES.items():
            norms = [utils.normalize_kp(ref["kp_source"], kp, ref["kp_driving"][0],
                                        adapt_movement_scale=adapt,
                                        use_relative_movement=relative,
                                        use_relative_jacobian=relative)
                     for kp in ref["kp_driving"]]
            outs = [generator(source, kp_driving=kp, kp_source=ref["kp_source"]) for kp in norms]
            for out, motion in zip(outs, grids[-len(outs):], strict=True):
                out["deformation"] = motion  # the dense-motion grid, not in the returned dict
            ref[mode] = norms, outs
            kp_norm, scale = normalize_kp(ours["kp_source"], Keypoints.cat(ours["kp_driving"]),
                                          ours["kp_driving"][0], relative=relative,
                                          adapt_scale=adapt)
            ours[mode + "_scale"] = scale
            ours[mode] = kp_norm, [models.generator(source, kp_norm.select(slice(t, t + 1)),
                                                    ours["kp_source"]) for t in range(T)]
        # batched: all driving frames in one call on both sides
        kp_batch = kp_detector(driving)
        src_batch = source.expand(T, -1, -1, -1)
        kp_src_batch = {k: v.expand(T, *v.shape[1:]) for k, v in ref["kp_source"].items()}
        ref["batched"] = kp_batch, generator(src_batch, kp_driving=kp_batch,
                                             kp_source=kp_src_batch)
        ours_kp = models.kp_detector(driving)
        ours["batched"] = ours_kp, models.generator(src_batch, ours_kp,
                                                    ours["kp_source"].expand(T))
    return ref, ours, ckpt, (generator, kp_detector, models)


def test_checkpoint_is_read_as_the_original_reads_it(run):
    *_, ckpt, (generator, kp_detector, models) = run
    assert ckpt.format == "original" and ckpt.extra["epoch"] == 0
    for name, theirs in (("generator", generator), ("kp_detector", kp_detector)):
        mine = getattr(models, name).state_dict()
        assert set(mine) == set(theirs.state_dict())
        for key, value in theirs.state_dict().items():
            assert torch.equal(mine[key], value), f"{name}.{key}"
    # nothing at its default: every BN has moved stats, the jacobian head is not the identity
    bns = [m for m in kp_detector.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]
    assert bns and all(not torch.equal(m.running_var, torch.ones_like(m.running_var))
                       and not torch.equal(m.weight, torch.ones_like(m.weight)) for m in bns)
    assert kp_detector.jacobian.weight.abs().min() > 0


def test_keypoints(run):
    ref, ours, *_ = run
    assert max_diff(ours["kp_source"].value, ref["kp_source"]["value"]) == 0.0
    assert max_diff(ours["kp_source"].jacobian, ref["kp_source"]["jacobian"]) == 0.0
    for theirs, mine in zip(ref["kp_driving"], ours["kp_driving"], strict=True):
        assert max_diff(mine.value, theirs["value"]) == 0.0
        assert max_diff(mine.jacobian, theirs["jacobian"]) == 0.0
    # inputs that exercise the maths: keypoints spread out, jacobians far from the identity
    value = torch.cat([k["value"] for k in ref["kp_driving"]])
    assert value.std() > 0.05 and (value[1:] - value[:1]).abs().max() > 0.01
    eye = torch.eye(2).expand_as(ref["kp_source"]["jacobian"])
    assert (ref["kp_source"]["jacobian"] - eye).abs().max() > 0.1


@pytest.mark.parametrize("mode", MODES)
def test_normalized_keypoints(run, mode):
    ref, ours, *_ = run
    theirs, mine = ref[mode][0], ours[mode][0]
    assert max_diff(mine.value, torch.cat([k["value"] for k in theirs])) == 0.0
    # J_d @ inv(J_d0) @ J_s: the 2x2 products round differently in relative mode (2e-7)
    diff = max_diff(mine.jacobian, torch.cat([k["jacobian"] for k in theirs]))
    assert diff == 0.0 if mode == "abs" else diff <= ATOL
    if mode == "rel_adapt":
        assert abs(ours[mode + "_scale"] - 1) > 0.05  # a real movement scale


@pytest.mark.parametrize("mode", MODES)
def test_generator_outputs(run, mode):
    ref, ours, *_ = run
    theirs, mine = ref[mode][1], ours[mode][1]
    for key in ("prediction", "mask", "sparse_deformed", "occlusion_map", "deformed",
                "deformation"):
        diff = max(max_diff(getattr(m, key), t[key]) for m, t in zip(mine, theirs, strict=True))
        assert diff <= ATOL, f"{mode} {key}: max abs diff {diff:.3g}"
    prediction = np.stack([t["prediction"].numpy() for t in theirs])
    assert 0.1 < prediction.mean() < 0.9 and prediction.std() > 0.02  # not saturated, not flat


def test_batched_calls_agree_to_rounding(run):
    ref, ours, *_ = run
    (kp_theirs, out_theirs), (kp_mine, out_mine) = ref["batched"], ours["batched"]
    assert max_diff(kp_mine.value, kp_theirs["value"]) <= ATOL
    assert max_diff(kp_mine.jacobian, kp_theirs["jacobian"]) <= ATOL
    for key in ("prediction", "mask", "sparse_deformed", "occlusion_map", "deformed"):
        diff = max_diff(getattr(out_mine, key), out_theirs[key])
        assert diff <= ATOL, f"batched {key}: max abs diff {diff:.3g}"
