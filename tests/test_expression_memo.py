"""The expression geometry's remembered face axes and coordinates: the same frames bit for bit."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from fomm.expression import geometry, warp
from fomm.expression.layer import ExpressionLayer
from fomm.expression.options import ExpressionOptions


def test_remembered_results_are_copies_keyed_by_content():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (40, 2))
    groups = {
        "left_eye_upper": np.arange(0, 5),
        "left_eye_lower": np.arange(5, 10),
        "right_eye_upper": np.arange(10, 15),
        "right_eye_lower": np.arange(15, 20),
    }
    plain = geometry._face_coords.__wrapped__
    first = geometry._face_coords(points, groups)
    np.testing.assert_array_equal(first, plain(points, groups))
    first[:] = 0.0  # a caller changing its copy changes nothing remembered
    np.testing.assert_array_equal(geometry._face_coords(points, groups), plain(points, groups))
    moved = points.copy()
    moved[0] += 1.0  # new values: computed anew
    np.testing.assert_array_equal(geometry._face_coords(moved, groups), plain(moved, groups))
    mirrored = {**groups, "left_eye_upper": groups["right_eye_upper"],
                "right_eye_upper": groups["left_eye_upper"]}  # fmt: skip
    np.testing.assert_array_equal(
        geometry._face_coords(points, mirrored), plain(points, mirrored)
    )  # the same points with other groups: not the first result
    dist, axes = geometry.face_axes(points, groups)
    axes[:] = 0.0
    assert geometry.face_axes(points, groups)[0] == dist
    np.testing.assert_array_equal(geometry.face_axes(points, groups)[1],
                                  geometry.face_axes.__wrapped__(points, groups)[1])  # fmt: skip


def _unremembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every module's names for the remembered geometry functions bound to the plain ones."""
    for name, module in list(sys.modules.items()):
        if not name.startswith("fomm.expression") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            plain = getattr(value, "__wrapped__", None)
            if callable(value) and getattr(value, "__module__", "") == geometry.__name__ and plain:
                monkeypatch.setattr(module, attr, plain)


@pytest.fixture(scope="module")
def stream():
    """The astronaut's face crop, FOMM-like results (the crop moved a little) and driving frames
    (the crop with its jaw dropped more and more)."""
    mesh_module = pytest.importorskip("fomm.faces.mesh")
    if not mesh_module.available():
        pytest.skip("FaceMesh model unavailable")
    from skimage.data import astronaut

    crop = cv2.resize(astronaut()[30:250, 120:340], (192, 192), interpolation=cv2.INTER_AREA)
    found = mesh_module.FaceMesh().detect(crop)
    assert found is not None
    pts, groups = np.asarray(found.points, dtype=np.float64), dict(found.groups)
    dist, axes = geometry.face_axes.__wrapped__(pts, groups)
    idx = np.unique(np.concatenate(list(groups.values())))
    below = (pts - pts[groups["lips_inner_upper"]].mean(0)) @ axes[:, 1] > 0
    oval = groups["face_oval"]
    results, driving = [], []
    for k in range(8):
        opened = pts + np.outer(below * 0.03 * k * dist, axes[:, 1])
        driving.append(warp.warp(crop, pts[idx], opened[idx], np.vstack([pts[oval], opened[oval]])))
        move = cv2.getRotationMatrix2D((96.0, 96.0), 2.0 * np.sin(k), 1.0 + 0.01 * k)
        move[:, 2] += (k % 3, -(k % 2))
        results.append(cv2.warpAffine(crop, move, (192, 192), borderMode=cv2.BORDER_REFLECT))
    return crop, results, driving


def _frames(stream, options: ExpressionOptions) -> list[np.ndarray]:
    crop, results, driving = stream
    layer = ExpressionLayer(crop, options)
    layer.set_reference(driving[0])
    return [layer.apply(r, d, layer.observe(d)) for r, d in zip(results, driving, strict=True)]


@pytest.mark.parametrize(
    "options",
    [
        ExpressionOptions(),
        ExpressionOptions(region="expression", scale=1.5),
        ExpressionOptions(region="pose", mouth=0.6, eyes=-0.5, smile=0.4),
        ExpressionOptions(region="eyes", eyes=0.5),
    ],
    ids=["all", "expression", "pose-sliders", "eyes"],
)
def test_the_layer_draws_the_same_frames_bit_for_bit(stream, options, monkeypatch):
    remembered = _frames(stream, options)
    _unremembered(monkeypatch)
    assert not hasattr(geometry.face_axes, "__wrapped__")  # the plain function now
    plain = _frames(stream, options)
    assert any(not np.array_equal(f, r) for f, r in zip(remembered, stream[1], strict=True))
    for a, b in zip(remembered, plain, strict=True):
        np.testing.assert_array_equal(a, b)
