"""The driver's head motion alone (``--animation-region pose``): fomm.models.motion.head_transform
and head_motion on synthetic keypoints."""

from __future__ import annotations

import math

import pytest
import torch

from fomm.models import motion
from fomm.models.motion import Keypoints

MOUTH = [4, 5, 6]  # keypoints moved by a synthetic expression


def _keypoints(batch: int = 1, num: int = 10, seed: int = 0) -> Keypoints:
    generator = torch.Generator().manual_seed(seed)
    value = torch.rand(batch, num, 2, generator=generator) * 1.6 - 0.8
    jacobian = torch.eye(2) + 0.2 * torch.randn(batch, num, 2, 2, generator=generator)
    return Keypoints(value, jacobian)


def _similarity(angle: float, scale: float, shift: tuple[float, float]) -> torch.Tensor:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return torch.tensor([[c, -s, shift[0]], [s, c, shift[1]]], dtype=torch.float64)


def _moved(points: torch.Tensor, fit: torch.Tensor) -> torch.Tensor:
    return (points.double() @ fit[..., :2].transpose(-1, -2) + fit[..., None, :, 2]).float()


@pytest.mark.parametrize("fit", [
    _similarity(0.0, 1.0, (0.0, 0.0)),
    _similarity(0.25, 1.0, (0.0, 0.0)),
    _similarity(-0.1, 1.15, (0.06, -0.04)),
    _similarity(0.05, 0.9, (-0.1, 0.02)),
])
def test_a_similarity_motion_is_kept_exactly(fit):
    start = _keypoints().value
    got = motion.head_transform(start, _moved(start, fit))
    torch.testing.assert_close(got[0], fit, atol=1e-6, rtol=0)


def test_a_mouth_only_motion_is_no_head_motion():
    start = _keypoints().value
    mouth = start.clone()
    mouth[0, MOUTH] += torch.tensor([[0.0, 0.08], [0.03, 0.12], [-0.04, 0.05]])
    got = motion.head_transform(start, mouth)
    torch.testing.assert_close(got[0], _similarity(0.0, 1.0, (0.0, 0.0)), atol=1e-9, rtol=0)


def test_the_head_is_found_under_an_expression():
    start = _keypoints(seed=3).value
    fit = _similarity(0.2, 1.1, (0.05, 0.03))
    moved = _moved(start, fit)
    moved[0, MOUTH] += torch.tensor([0.0, 0.1])
    got = motion.head_transform(start, moved)
    torch.testing.assert_close(got[0], fit, atol=1e-6, rtol=0)
    # plain least squares would be pulled by the mouth
    everything = motion._similarity_fit(motion._complex(start), motion._complex(moved),
                                        torch.ones(1, 10, dtype=torch.float64))
    assert abs(everything[1][0].imag - (fit[1, 2] + 0.0)) > 1e-3


def test_each_frame_of_a_batch_gets_its_own_fit():
    start = _keypoints().value
    fits = torch.stack([_similarity(0.1 * i, 1 + 0.05 * i, (0.02 * i, -0.01 * i))
                        for i in range(4)])
    driving = _moved(start.expand(4, -1, -1), fits)
    torch.testing.assert_close(motion.head_transform(start, driving), fits, atol=1e-6, rtol=0)


def test_head_motion_moves_the_source_rigidly_and_turns_its_jacobians():
    initial = _keypoints(seed=1)
    fit = _similarity(0.3, 1.2, (0.04, -0.05))
    linear = fit[:, :2].float()
    driving = Keypoints(_moved(initial.value, fit), linear @ initial.jacobian)
    driving.value[0, MOUTH] += torch.tensor([0.03, 0.15])  # an expression on top (beyond HEAD_KEEP)
    # the source where the initial frame is: the transform itself
    out = motion.head_motion(initial, driving, initial)
    torch.testing.assert_close(out.value, _moved(initial.value, fit), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.jacobian, linear @ initial.jacobian, atol=1e-6, rtol=0)
    # another source: turned about its own centroid, which moves as the initial one's does
    source = _keypoints(seed=2)
    out = motion.head_motion(source, driving, initial, scale=0.5, keep=0)
    centre = source.value.double().mean(1)
    shift = (_moved(initial.value, fit).double().mean(1) - initial.value.double().mean(1))
    expected = (centre + (source.value.double() - centre[:, None]) @ fit[:, :2].T
                + 0.5 * shift)
    torch.testing.assert_close(out.value.double(), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.jacobian, linear @ source.jacobian, atol=1e-6, rtol=0)


def test_normalize_kp_head_only():
    source, initial = _keypoints(seed=4), _keypoints(seed=5)
    fit = _similarity(-0.2, 0.95, (0.03, 0.01))
    driving = Keypoints(_moved(initial.value, fit), initial.jacobian)
    driving.value[0, MOUTH] -= torch.tensor([0.0, 0.07])
    relative, _ = motion.normalize_kp(source, driving, initial, head_only=True)
    torch.testing.assert_close(relative.value, motion.head_motion(source, driving, initial).value)
    # no motion at all: the source as it is
    still, _ = motion.normalize_kp(source, initial, initial, head_only=True)
    torch.testing.assert_close(still.value, source.value, atol=1e-6, rtol=0)
    torch.testing.assert_close(still.jacobian, source.jacobian, atol=1e-6, rtol=0)
    # absolute: the source taken to the driver's head pose, its own shape kept
    absolute_driving = Keypoints(_moved(source.value, fit), source.jacobian)
    absolute_driving.value[0, MOUTH] += 0.1
    absolute, _ = motion.normalize_kp(source, absolute_driving, initial, relative=False,
                                      head_only=True)
    torch.testing.assert_close(absolute.value, _moved(source.value, fit), atol=1e-6, rtol=0)


def test_small_departures_from_the_head_motion_are_kept_in_part():
    initial = _keypoints(seed=6)
    fit = _similarity(0.1, 1.05, (0.02, 0.01))
    driving = Keypoints(_moved(initial.value, fit), fit[:, :2].float() @ initial.jacobian)
    driving.value[0, 2] += torch.tensor([0.0, 0.025])  # a turn's small departure
    driving.value[0, MOUTH] += torch.tensor([0.0, 0.1])  # a mouth opening
    keep = 0.03
    rigid = _moved(initial.value, fit)
    out = motion.head_motion(initial, driving, initial, keep=keep)
    weight = (1 - (0.025 / keep) ** 2) ** 2
    torch.testing.assert_close(out.value[0, 2], rigid[0, 2] + torch.tensor([0.0, 0.025 * weight]),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(out.value[0, MOUTH], rigid[0, MOUTH], atol=1e-6, rtol=0)
    still = [k for k in range(10) if k not in (2, *MOUTH)]
    torch.testing.assert_close(out.value[0, still], rigid[0, still], atol=1e-6, rtol=0)
    # keep 0: the transform alone
    torch.testing.assert_close(motion.head_motion(initial, driving, initial, keep=0).value, rigid,
                               atol=1e-6, rtol=0)
