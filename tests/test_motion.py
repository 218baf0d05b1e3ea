"""Motion maths: grids, heatmaps, soft-argmax, hull area, relative motion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import ConvexHull

from fomm.models import motion
from fomm.models.motion import Keypoints


def test_coordinate_grid_corners():
    grid = motion.make_coordinate_grid(4, 6)
    assert grid.shape == (4, 6, 2)
    assert grid[0, 0].tolist() == [-1, -1]
    assert grid[-1, -1].tolist() == [1, 1]
    assert grid[0, -1].tolist() == [1, -1]  # x varies along width


def test_heatmap_peak_and_soft_argmax():
    kp = torch.tensor([[[0.25, -0.5]]])
    heat = motion.kp2gaussian(kp, 65, 65, kp_variance=0.001)
    assert heat.shape == (1, 1, 65, 65)
    assert heat.max().item() == pytest.approx(1.0, abs=1e-6)
    recovered = motion.heatmap_to_keypoints(heat / heat.sum(dim=(2, 3), keepdim=True))
    assert torch.allclose(recovered, kp, atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=4, max_size=12))
def test_hull_area_matches_scipy(points):
    pts = np.array(points, dtype=np.float64)
    try:
        expected = ConvexHull(pts).volume
    except Exception:  # degenerate input (collinear points)
        return
    assert float(motion.convex_hull_area(torch.tensor(pts))) == pytest.approx(expected, rel=1e-9,
                                                                              abs=1e-12)


def test_identity_motion_is_identity_grid():
    kp = Keypoints(torch.rand(2, 5, 2) * 2 - 1, torch.eye(2).repeat(2, 5, 1, 1))
    sparse = motion.sparse_motions(kp, kp, 8, 8)
    grid = motion.make_coordinate_grid(8, 8)
    assert sparse.shape == (2, 6, 8, 8, 2)
    assert torch.allclose(sparse, grid.expand_as(sparse), atol=1e-6)


def test_relative_motion_first_frame_is_source():
    src = Keypoints(torch.rand(1, 10, 2), torch.rand(1, 10, 2, 2) + torch.eye(2))
    drv = Keypoints(torch.rand(3, 10, 2), torch.rand(3, 10, 2, 2) + torch.eye(2))
    out, scale = motion.normalize_kp(src, drv, drv.select(slice(0, 1)), relative=True,
                                     adapt_scale=True)
    assert scale > 0
    assert torch.allclose(out.value[0], src.value[0], atol=1e-6)
    assert torch.allclose(out.jacobian[0], src.jacobian[0], atol=1e-5)
    # later frames move by the scaled driving displacement
    expected = (drv.value[2] - drv.value[0]) * scale + src.value[0]
    assert torch.allclose(out.value[2], expected, atol=1e-6)


def test_absolute_motion_is_driving():
    src = Keypoints(torch.rand(1, 4, 2), None)
    drv = Keypoints(torch.rand(2, 4, 2), None)
    out, _ = motion.normalize_kp(src, drv, drv.select(slice(0, 1)), relative=False)
    assert out is drv


def test_border_blend_weights_shape_and_range():
    w = motion.border_blend_weights(64, 64)
    assert w.shape == (1, 64, 64, 1)
    assert w[0, 0, 0, 0] == 0 and w[0, 32, 32, 0] == pytest.approx(1.0)
    assert float(w.min()) >= 0 and float(w.max()) <= 1 + 1e-6
