"""Training losses: the random TPS Transform, pyramid, perceptual (VGG19, fallback), GAN terms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fomm.config import LossWeights, TransformParams
from fomm.errors import CheckpointError
from fomm.models.discriminator import DiscriminatorOutput
from fomm.models.motion import Keypoints, make_coordinate_grid
from fomm.models.vgg import TAPS, Vgg19, load_vgg19
from fomm.train import losses as L


def test_transform_without_noise_is_the_identity() -> None:
    t = L.Transform(2, TransformParams(sigma_affine=0.0, sigma_tps=0.0, points_tps=5))
    points = torch.rand(2, 7, 2) * 2 - 1
    assert torch.allclose(t.warp_coordinates(points), points, atol=1e-6)
    jac = t.jacobian(points)
    assert torch.allclose(jac, torch.eye(2).expand(2, 7, 2, 2), atol=1e-6)
    frame = torch.rand(2, 3, 16, 16)
    # as the original: the ±1 grid sampled with align_corners=False is a slight zoom, not a copy
    grid = make_coordinate_grid(16, 16).expand(2, 16, 16, 2)
    expected = F.grid_sample(frame, grid, padding_mode="reflection", align_corners=False)
    assert torch.allclose(t.transform_frame(frame), expected, atol=1e-6)


def test_transform_jacobian_matches_finite_differences() -> None:
    torch.manual_seed(0)
    t = L.Transform(1, TransformParams(sigma_affine=0.1, sigma_tps=0.05, points_tps=5))
    p = torch.tensor([[[0.13, -0.41]]], dtype=torch.float64)
    t.theta, t.control_params = t.theta.double(), t.control_params.double()
    t.control_points = t.control_points.double()
    jac = t.jacobian(p)[0, 0]
    eps = 1e-6
    for j in range(2):
        d = torch.zeros_like(p)
        d[..., j] = eps
        column = (t.warp_coordinates(p + d) - t.warp_coordinates(p - d))[0, 0] / (2 * eps)
        assert torch.allclose(jac[:, j], column, atol=1e-6)


def test_transform_draws_from_the_global_rng_like_the_original() -> None:
    params = TransformParams(sigma_affine=0.05, sigma_tps=0.005, points_tps=5)
    torch.manual_seed(7)
    a = L.Transform(3, params)
    torch.manual_seed(7)
    noise = torch.normal(mean=0, std=0.05 * torch.ones([3, 2, 3]))
    ctrl = torch.normal(mean=0, std=0.005 * torch.ones([3, 1, 25]))
    assert torch.equal(a.theta, noise + torch.eye(2, 3).view(1, 2, 3))
    assert torch.equal(a.control_params, ctrl)
    assert torch.equal(a.control_points, make_coordinate_grid(5, 5).view(1, 25, 2))


def test_equivariance_losses_vanish_for_an_equivariant_detector() -> None:
    params = TransformParams(sigma_affine=0.0, sigma_tps=0.0, points_tps=5)
    kp = Keypoints(torch.rand(2, 4, 2) - 0.5, torch.eye(2).repeat(2, 4, 1, 1))
    losses, transformed, kp_t = L.equivariance_losses(lambda x: kp, torch.rand(2, 3, 8, 8), kp,
                                                      params, LossWeights())
    assert set(losses) == {"equivariance_value", "equivariance_jacobian"}
    assert float(losses["equivariance_value"].detach()) < 1e-6
    assert float(losses["equivariance_jacobian"].detach()) < 1e-6


def test_pyramid_keys_and_sizes() -> None:
    pyramid = L.ImagePyramid((1, 0.5, 0.25))
    out = pyramid(torch.rand(2, 3, 32, 32))
    assert {k: tuple(v.shape[2:]) for k, v in out.items()} == {
        "prediction_1": (32, 32), "prediction_0.5": (16, 16), "prediction_0.25": (8, 8)}


def test_perceptual_fallback_is_a_weighted_l1_pyramid() -> None:
    loss = L.PerceptualLoss((1, 0.5), (10, 10, 10, 10, 10), vgg=None)
    x = torch.full((1, 3, 16, 16), 0.25)
    y = torch.full((1, 3, 16, 16), 0.75)
    assert float(loss(x, x)) == 0.0
    px, py = loss.pyramid(x), loss.pyramid(y)
    expected = sum(50 * (px[k] - py[k]).abs().mean() for k in px)
    assert float(loss(x, y)) == pytest.approx(float(expected), rel=1e-6)
    assert float(expected) == pytest.approx(2 * 50 * 0.5, rel=0.02)  # zero-padded blur at edges


def test_perceptual_with_vgg_weights_each_layer() -> None:
    torch.manual_seed(0)
    vgg = Vgg19()
    loss = L.PerceptualLoss((1,), (1, 0, 0, 0, 0), vgg=vgg)
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    expected = (vgg(x)[0] - vgg(y)[0]).abs().mean()
    assert float(loss(x, y)) == pytest.approx(float(expected), rel=1e-5)


def test_vgg19_has_torchvisions_layout_and_loads_its_state_dict(tmp_path: Path) -> None:
    vgg = Vgg19()
    keys = list(vgg.state_dict())
    convs = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28]
    assert keys == [f"features.{i}.{p}" for i in convs for p in ("weight", "bias")]
    assert TAPS == (1, 6, 11, 20, 29)
    shapes = [tuple(x.shape[1:]) for x in vgg(torch.rand(1, 3, 32, 32))]
    assert shapes == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    # a torchvision file also holds the deeper layers and the classifier
    torch.manual_seed(1)
    state = {k: torch.randn_like(v) for k, v in vgg.state_dict().items()}
    state |= {"features.30.weight": torch.zeros(512, 512, 3, 3),
              "classifier.0.weight": torch.zeros(4, 4)}
    torch.save(state, tmp_path / "vgg19.pth")
    loaded = load_vgg19(tmp_path / "vgg19.pth")
    assert torch.equal(loaded.features[28].weight, state["features.28.weight"])
    assert not any(p.requires_grad for p in loaded.parameters())
    loaded.train()
    assert not loaded.training


def test_vgg19_loading_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="VGG19 weights not found"):
        load_vgg19(tmp_path / "missing.pth")
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"features\.0\.bias is missing"):
        load_vgg19(tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable VGG19 state dict"):
        load_vgg19(tmp_path / "junk.pth")


def test_gan_losses_are_lsgan_and_feature_matching() -> None:
    weights = LossWeights(generator_gan=2.0, discriminator_gan=3.0, feature_matching=(1.0, 0.0))
    fake = {"1": DiscriminatorOutput([torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)],
                                     torch.full((1, 1, 4, 4), 0.25))}
    real = {"1": DiscriminatorOutput([torch.ones(1, 2, 4, 4), torch.full((1, 2, 2, 2), 9.0)],
                                     torch.full((1, 1, 4, 4), 0.5))}
    g = L.generator_gan_losses(fake, real, weights)
    assert float(g["gen_gan"]) == pytest.approx(2 * 0.75**2)
    assert float(g["feature_matching"]) == pytest.approx(1.0)  # second layer has weight 0
    d = L.discriminator_loss(fake, real, weights)
    assert float(d) == pytest.approx(3 * (0.5**2 + 0.25**2))


def test_extra_losses() -> None:
    x = torch.rand(2, 3, 16, 16)
    assert float(L.ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.gradient_l1(x, x)) == 0.0
    assert float(L.ssim_loss(x, torch.rand(2, 3, 16, 16))) > 0.5
    flat = torch.full_like(x, 0.5)
    assert float(L.gradient_l1(flat, x)) > 0


def test_keypoint_separation_is_one_when_keypoints_coincide_and_falls_with_distance() -> None:
    together = torch.zeros(2, 5, 2)
    assert L.keypoint_separation(together).item() == pytest.approx(1.0)
    spread = torch.tensor([[[-0.8, -0.8], [0.8, -0.8], [0.0, 0.0], [-0.8, 0.8], [0.8, 0.8]]])
    assert L.keypoint_separation(spread).item() < 1e-3
    near = torch.tensor([[[0.0, 0.0], [0.1, 0.0]]])
    far = torch.tensor([[[0.0, 0.0], [0.3, 0.0]]])
    assert L.keypoint_separation(near) > L.keypoint_separation(far)
    assert L.keypoint_separation(torch.zeros(1, 1, 2)).item() == 0.0


def test_keypoint_separation_pushes_close_keypoints_apart() -> None:
    value = torch.tensor([[[0.0, 0.0], [0.05, 0.0]]], requires_grad=True)
    L.keypoint_separation(value).backward()
    step = -value.grad  # gradient descent moves the left one left, the right one right
    assert step[0, 0, 0] < 0 < step[0, 1, 0]
