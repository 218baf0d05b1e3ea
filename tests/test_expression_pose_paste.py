"""Region pose: the photo's mouth is pasted where the result's head is in the same frame."""

from __future__ import annotations

import numpy as np
import pytest
from test_expression_geometry import sim, synthetic_face
from test_expression_layer import ScriptedMesh, frame

from fomm.expression import ExpressionLayer, ExpressionOptions, geometry, mouth, warp


@pytest.fixture
def captured(monkeypatch):
    """The targets region pose pastes the photo's mouth at, and the warp's source controls."""
    seen: dict[str, list[np.ndarray]] = {"target": [], "src": []}
    paste, warped = mouth.paste_mouth, warp.warp

    def paste_mouth(out, target, *args, **kwargs):
        seen["target"].append(np.array(target))
        return paste(out, target, *args, **kwargs)

    def warp_(image, src, dst, *args, **kwargs):
        seen["src"].append(np.array(src))
        return warped(image, src, dst, *args, **kwargs)

    monkeypatch.setattr(mouth, "paste_mouth", paste_mouth)
    monkeypatch.setattr(warp, "warp", warp_)
    return seen


def layer_and_mesh() -> tuple[ExpressionLayer, ScriptedMesh, np.ndarray, dict]:
    mesh = ScriptedMesh()
    pts, groups = synthetic_face(eye_distance=60.0)
    photo = mesh.add(frame(0), pts, groups)
    return ExpressionLayer(photo, ExpressionOptions(region="pose"), mesh=mesh), mesh, pts, groups


def test_pose_pastes_the_mouth_where_the_head_is_now(captured):
    """A head that turns and moves fast: the pasted mouth lies at the photo's mouth posed like
    this frame's head, not behind it by the landmarks' smoothing."""
    layer, mesh, pts, groups = layer_and_mesh()
    for seed in range(1, 6):  # the head still, then a fast turn and shift
        layer.apply(mesh.add(frame(seed), pts, groups), frame(0))
    moved = sim(pts - (128, 110), 1.0, 0.08, (128 + 12.0, 110 - 6.0))
    for seed in range(6, 9):
        layer.apply(mesh.add(frame(seed), moved, groups), frame(0))
        lips = np.concatenate([groups[g] for g in geometry.LIPS])
        np.testing.assert_allclose(captured["target"][-1][lips], moved[lips], atol=0.01)


def test_pose_keeps_the_smoothing_of_the_shape(captured):
    """One frame's landmark noise on the lips (the head still) is smoothed in what the warp
    takes as the frame's lips, as before."""
    layer, mesh, pts, groups = layer_and_mesh()
    for seed in range(1, 6):
        layer.apply(mesh.add(frame(seed), pts, groups), frame(0))
    noisy = pts.copy()
    lip = groups["lips_outer_lower"][len(groups["lips_outer_lower"]) // 2]
    noisy[lip, 1] += 3.0
    layer.apply(mesh.add(frame(6), noisy, groups), frame(0))
    src = captured["src"][-1]
    controls = list(layer._controls)
    moved = src[controls.index(lip), 1] - pts[lip, 1]
    assert 0.0 < moved < 0.9 * 3.0
