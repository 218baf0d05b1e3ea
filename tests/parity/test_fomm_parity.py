"""Parity with the original first-order-model code on its random-weight fixtures: the one in
../shared/fixtures/fomm-parity (where present) and one made at test time by the original's code
from PyPI (tests/parity/generated.py); see parity_data.SOURCES."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from parity_data import CROSS_CPU_REL, MODES, SOURCES, fomm_inputs, tolerance
from parity_data import source as fixture_source

from fomm.checkpoints import load_checkpoint
from fomm.models.motion import Keypoints, normalize_kp

ATOL = 1e-4


@pytest.fixture(scope="module", params=SOURCES)
def run(request):
    src = fixture_source(request, "fomm")
    models, config, _ = load_checkpoint(src.checkpoint, config=src.config, discriminator=True)
    inputs = fomm_inputs()
    expected = Expected(src.expected, src.error, tolerance(src.name, ATOL),
                        tolerance(src.name, 1e-9, CROSS_CPU_REL))
    source = torch.from_numpy(inputs["source"])
    driving = torch.from_numpy(inputs["driving"])
    with torch.no_grad():
        kp_source = models.kp_detector(source)
        # batch 1, as the original demo runs it
        per_frame = [models.kp_detector(driving[t:t + 1]) for t in range(len(driving))]
        kp_driving = Keypoints.cat(per_frame)
        results = {}
        for mode, (relative, adapt) in MODES.items():
            kp_norm, scale = normalize_kp(kp_source, kp_driving, per_frame[0], relative=relative,
                                          adapt_scale=adapt)
            outs = [models.generator(source, kp_norm.select(slice(t, t + 1)), kp_source)
                    for t in range(len(driving))]
            results[mode] = (kp_norm, scale, outs)
        disc = models.discriminator({"prediction_1": source}, kp_source)["1"]
    return models, kp_source, kp_driving, results, disc, expected, src


class Expected(dict):
    """Expected outputs by key; ``error[key]`` is the storage rounding of a compacted array,
    ``atol`` the tolerance against them and ``scale_rel`` the relative one for the scale."""

    def __init__(self, values: dict[str, np.ndarray], error: dict[str, float],
                 atol: float = ATOL, scale_rel: float = 1e-9) -> None:
        super().__init__(values)
        self.error = error
        self.atol = atol
        self.scale_rel = scale_rel

    def __getitem__(self, key: str) -> np.ndarray:
        value = super().__getitem__(key)
        if value.dtype.kind != "f":
            return value
        return StoredArray(value, self.error.get(key, 0.0), self.atol)


class StoredArray(np.ndarray):
    """An expected array that knows its storage error (0 for arrays stored exactly) and the
    tolerance of its source (:func:`parity_data.tolerance`)."""

    def __new__(cls, value: np.ndarray, error: float, atol: float = ATOL) -> StoredArray:
        out = np.asarray(value).view(cls)
        out.error = error
        out.atol = atol
        return out

    def __array_finalize__(self, obj) -> None:
        self.error = getattr(obj, "error", 0.0)
        self.atol = getattr(obj, "atol", ATOL)


def close(actual, expected, atol=None):
    """``actual`` is within ``atol`` (default: the source's) of the original numbers: the stored
    copy's rounding error is taken off the tolerance, so a pass holds against the uncompacted
    fixture too."""
    atol = getattr(expected, "atol", ATOL) if atol is None else atol
    actual = np.asarray(actual.detach() if torch.is_tensor(actual) else actual)
    diff = np.abs(actual.astype(np.float64) - np.asarray(expected, np.float64)).max()
    assert actual.shape == expected.shape
    budget = atol - getattr(expected, "error", 0.0)
    assert diff <= budget, f"max abs diff {diff:.3g} > {budget:.3g}"


def test_keypoints(run):
    _, kp_source, kp_driving, _, _, exp, _ = run
    close(kp_source.value, exp["kp_source_value"])
    close(kp_source.jacobian, exp["kp_source_jacobian"])
    close(kp_driving.value, exp["kp_driving_value"])
    close(kp_driving.jacobian, exp["kp_driving_jacobian"])
    close(kp_driving.value[:1], exp["kp_driving_initial_value"])
    close(kp_driving.jacobian[:1], exp["kp_driving_initial_jacobian"])


@pytest.mark.parametrize("mode", MODES)
def test_normalized_keypoints(run, mode):
    _, _, _, results, _, exp, _ = run
    kp_norm, scale, _ = results[mode]
    close(kp_norm.value, exp[f"{mode}_kp_norm_value"])
    close(kp_norm.jacobian, exp[f"{mode}_kp_norm_jacobian"])
    assert scale == pytest.approx(float(exp[f"{mode}_scale"][0]), rel=exp.scale_rel)


@pytest.mark.parametrize("mode", MODES)
def test_generator_outputs(run, mode):
    _, _, _, results, _, exp, _ = run
    outs = results[mode][2]

    def stack(field, index):
        return torch.cat([getattr(o, field)[index] for o in outs]).numpy()

    close(stack("prediction", (slice(None), slice(None), slice(None, None, 8),
                               slice(None, None, 8))), exp[f"{mode}_prediction_sub"])
    close(stack("deformed", (slice(None), slice(None), slice(None, None, 8),
                             slice(None, None, 8))), exp[f"{mode}_deformed_sub"])
    quarter = (slice(None), slice(None), slice(None, None, 4), slice(None, None, 4))
    close(stack("mask", quarter), exp[f"{mode}_mask_sub"])
    close(stack("occlusion_map", quarter), exp[f"{mode}_occlusion_map_sub"])
    close(stack("sparse_deformed", (slice(None), slice(None), slice(None),
                                    slice(None, None, 4), slice(None, None, 4))),
          exp[f"{mode}_sparse_deformed_sub"])
    close(stack("deformation", (slice(None), slice(None, None, 4), slice(None, None, 4))),
          exp[f"{mode}_deformation_sub"])


def warp_tolerance(deformation_diff: float, image: np.ndarray) -> float:
    """How far ``grid_sample(image, grid)`` (bilinear, align_corners=False) can move when the
    grid moves by ``deformation_diff`` in [-1, 1] coordinates: the sampling point moves by
    ``diff * W / 2`` pixels along each axis (the image is square), and bilinear interpolation
    changes by at most the largest step between neighbouring pixels per pixel moved on that axis.

    The warp sees full-resolution edges, so it amplifies the deformation's float rounding: on
    the generated fixture a 6e-6 difference of the deformation (well inside ATOL; it depends on
    the CPU's float kernels, AVX2 or AVX-512/AMX) moves the warped source by up to 1.4e-3.
    """
    image = np.asarray(image, np.float64)  # (C, H, W)
    step_x = np.abs(np.diff(image, axis=-1)).max()
    step_y = np.abs(np.diff(image, axis=-2)).max()
    return deformation_diff * image.shape[-1] / 2 * (step_x + step_y)


def test_warp_tolerance_bounds_a_moved_grid():
    import torch.nn.functional as F

    image = torch.from_numpy(fomm_inputs()["source"])  # (1, 3, 256, 256), sharp edges
    rng = torch.Generator().manual_seed(0)
    grid = torch.rand(1, 256, 256, 2, generator=rng, dtype=torch.float64) * 1.8 - 0.9
    delta = 1e-3
    shift = (torch.randint(0, 2, grid.shape, generator=rng) * 2 - 1) * delta  # ±delta
    image = image.double()
    a = F.grid_sample(image, grid, align_corners=False)
    b = F.grid_sample(image, grid + shift, align_corners=False)
    moved = float((a - b).abs().max())
    assert 0 < moved <= warp_tolerance(delta, image[0].numpy())


def test_full_resolution_last_frame(run):
    _, _, _, results, _, exp, _ = run
    out = results["rel_adapt"][2][4]
    prefix = "full_rel_adapt_t4_"
    close(out.prediction, exp[prefix + "prediction"])
    close(out.mask, exp[prefix + "mask"])
    close(out.sparse_deformed, exp[prefix + "sparse_deformed"])
    close(out.occlusion_map, exp[prefix + "occlusion_map"])
    deformation = exp[prefix + "deformation"]
    close(out.deformation, deformation)
    # the warped source: within what the deformation's own (checked) difference allows
    moved = np.abs(out.deformation.numpy().astype(np.float64) - deformation).max()
    moved += getattr(deformation, "error", 0.0)
    source = fomm_inputs()["source"][0]
    deformed = exp[prefix + "deformed_s2"]
    close(out.deformed[:, :, ::2, ::2], deformed,
          atol=deformed.atol + warp_tolerance(float(moved), source))


def test_discriminator(run):
    *_, disc, exp, _ = run
    for i, fmap in enumerate(disc.feature_maps):
        assert list(fmap.shape) == exp[f"disc_feature_map{i}_shape"].tolist()
        close(fmap[:, :, ::4, ::4], exp[f"disc_feature_map{i}_sub"])
    close(disc.prediction_map, exp["disc_prediction_map"])


def test_batched_animator_matches_per_frame(run):
    """PaddleGAN's predictor returns frames 0,1,1,2 with batch_size 2; ours keeps the order."""
    from fomm.inference.animator import Animator
    from fomm.media.image import to_frames

    models, *_, fixture = run
    inputs = fomm_inputs()
    source = to_frames(torch.from_numpy(inputs["source"]))[0]
    driving = list(to_frames(torch.from_numpy(inputs["driving"])))
    animator = Animator(models, load_checkpoint(fixture.checkpoint, config=fixture.config)[1],
                        device="cpu")
    src = animator.prepare_source(source)
    one = np.stack(list(animator.animate(src, driving, batch_size=1)))
    four = np.stack(list(animator.animate(src, driving, batch_size=4)))
    assert one.shape == (5, 256, 256, 3)
    # uint8 results agree up to one rounding step; any frame mix-up differs by far more
    assert np.abs(one.astype(int) - four.astype(int)).max() <= 1
    for t in range(1, 5):
        assert np.abs(one[t].astype(int) - one[t - 1].astype(int)).mean() > 0.5
