"""The PyPI references are the references: on the parity fixtures' checkpoints, deep-animator
reproduces the original repository's outputs and ppgan (patched as in
:func:`parity.packages.load_ppgan`) PaddleGAN master's. On ../shared/fixtures (where present)
this ties the package tests (test_original_package.py, test_paddlegan_package.py) to the
fixtures made with the upstream repositories; on the fixtures made at test time
(tests/parity/generated.py) it checks that the files written there, read back by the reference
code's own loaders, give the outputs the parity tests compare against.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from parity_data import (
    FOMM_FIXTURE,
    PADDLE_FIXTURE,
    SOURCES,
    fomm_inputs,
    paddle_inputs,
    tolerance,
)

from .packages import max_diff, one_thread, require

pytestmark = [pytest.mark.filterwarnings("ignore:Default grid_sample:UserWarning"),
              pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*ccache:UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _fixture(request: pytest.FixtureRequest, name: str, kind: str):
    """(checkpoint, config, inputs, expected) of the fixture source ``name``: the full files in
    ../shared/fixtures, or the generated fixture with the repo's inputs (the same frames)."""
    if name == "shared":
        folder = FOMM_FIXTURE if kind == "fomm" else PADDLE_FIXTURE
        checkpoint = folder / ("checkpoint.pth.tar" if kind == "fomm" else "weights.pdparams")
        return (checkpoint, folder / "config.yaml", np.load(folder / "inputs.npz"),
                np.load(folder / "expected.npz"))
    made = request.getfixturevalue("original_fixture" if kind == "fomm" else "paddle_fixture")
    inputs = fomm_inputs() if kind == "fomm" else paddle_inputs()
    return made.checkpoint, made.config, inputs, made.expected()


@pytest.mark.parametrize("name", SOURCES)
def test_deep_animator_reproduces_the_original_fixture(request, name):
    utils = require("deep_animator.utils")
    checkpoint, config, inputs, expected = _fixture(request, name, "fomm")
    generator, kp_detector = (m.module for m in utils.load_checkpoints(str(config),
                                                                        str(checkpoint)))
    source = torch.from_numpy(inputs["source"])
    driving = torch.from_numpy(inputs["driving"])
    with one_thread(), torch.no_grad():
        kp_source = kp_detector(source)
        kp_driving = [kp_detector(driving[t:t + 1]) for t in range(len(driving))]
        kp_norm = utils.normalize_kp(kp_source, kp_driving[4], kp_driving[0],
                                     adapt_movement_scale=True, use_relative_movement=True,
                                     use_relative_jacobian=True)
        out = generator(source, kp_driving=kp_norm, kp_source=kp_source)
    exact = tolerance(name, 0.0)  # bit for bit on this machine; float rounding across CPUs
    assert max_diff(kp_source["value"], expected["kp_source_value"]) <= exact
    assert max_diff(kp_source["jacobian"], expected["kp_source_jacobian"]) <= exact
    for key in ("value", "jacobian"):
        assert max_diff(torch.cat([k[key] for k in kp_driving]),
                        expected[f"kp_driving_{key}"]) <= exact
        assert max_diff(kp_norm[key], expected[f"rel_adapt_kp_norm_{key}"][4:]) <= exact
    for key in ("prediction", "mask", "sparse_deformed", "occlusion_map"):
        assert max_diff(out[key], expected[f"full_rel_adapt_t4_{key}"]) <= exact, key
    assert max_diff(out["deformed"][:, :, ::2, ::2],
                    expected["full_rel_adapt_t4_deformed_s2"]) <= exact


@pytest.mark.parametrize("name", SOURCES)
def test_ppgan_reproduces_the_paddlegan_fixture(request, name):
    from .packages import load_ppgan

    paddle = require("paddle")
    kp_mod, gen_mod, animate, _ = load_ppgan()
    checkpoint_path, config, inputs, expected = _fixture(request, name, "paddle")
    model = yaml.safe_load(config.read_text())["model"]
    generator = gen_mod.OcclusionAwareGenerator(**model["generator"]["generator_cfg"],
                                                **model["common_params"], inference=True)
    kp_detector = kp_mod.KPDetector(**model["generator"]["kp_detector_cfg"],
                                    **model["common_params"])
    checkpoint = paddle.load(str(checkpoint_path))
    generator.set_state_dict(checkpoint["generator"])
    kp_detector.set_state_dict(checkpoint["kp_detector"])
    generator.eval()
    kp_detector.eval()

    def nchw(u8):
        return paddle.to_tensor((u8 / 255.0).astype(np.float32).transpose(0, 3, 1, 2))

    with paddle.no_grad():
        source, driving = nchw(inputs["source_u8"][None]), nchw(inputs["driving_u8"])
        kp_source = kp_detector(source)
        kp_driving = [kp_detector(driving[t:t + 1]) for t in range(len(driving))]
        kp_norm = animate.normalize_kp(kp_source, kp_driving[3], kp_driving[0],
                                       adapt_movement_scale=True, use_relative_movement=True,
                                       use_relative_jacobian=True)
        out = generator(source, kp_source=kp_source, kp_driving=kp_norm)
    # one framework's kernels against the same framework's: float32 rounding at most (more
    # against the shared fixture, made on another CPU: parity_data.CROSS_CPU_ATOL)
    rounding = tolerance(name, 1e-7)
    assert max_diff(kp_source["value"].numpy(), expected["kp_source_value"]) <= rounding
    for key in ("value", "jacobian"):
        assert max_diff(np.concatenate([k[key].numpy() for k in kp_driving]),
                        expected[f"kp_driving_{key}"]) <= rounding
        assert max_diff(kp_norm[key].numpy(),
                        expected[f"kp_norm_{key}_rel_adapt"][3:]) <= rounding
    assert max_diff(out["occlusion_map"].numpy(),
                    expected["occlusion_map_rel_adapt"][3:]) <= tolerance(name, 1e-6)
    # stored as round(p * 65535): up to 7.7e-6 of storage error
    prediction = expected["prediction_rel_adapt_q16"][3:] / 65535.0
    assert max_diff(out["prediction"].numpy(), prediction) <= tolerance(name, 1e-5)
