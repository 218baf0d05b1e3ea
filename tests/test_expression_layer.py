"""ExpressionLayer: with scripted landmarks (always) and on a real portrait with FaceMesh."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from test_expression_geometry import sim, synthetic_face

from fomm.errors import NoFaceError
from fomm.expression import ExpressionLayer, ExpressionOptions, geometry, warp


@dataclass(frozen=True)
class Marks:
    points: np.ndarray
    groups: dict
    score: float = 1.0

    def scaled(self, factor: float) -> Marks:
        return Marks(self.points * factor, self.groups)


class ScriptedMesh:
    """Landmarks looked up by image content (None for an unknown image)."""

    def __init__(self) -> None:
        self.known: dict[str, np.ndarray] = {}
        self.groups: dict = {}

    def add(self, image: np.ndarray, points: np.ndarray, groups: dict) -> np.ndarray:
        self.known[hashlib.md5(image.tobytes()).hexdigest()] = points
        self.groups = groups
        return image

    def detect(self, image: np.ndarray, box=None) -> Marks | None:
        points = self.known.get(hashlib.md5(np.ascontiguousarray(image).tobytes()).hexdigest())
        return None if points is None else Marks(points, self.groups)


def frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8)


@pytest.fixture
def scripted():
    mesh = ScriptedMesh()
    pts, groups = synthetic_face(eye_distance=60.0)
    photo = mesh.add(frame(0), pts, groups)
    reference = mesh.add(frame(1), sim(pts, 0.9, 0.1, (10.0, 5.0)), groups)
    return mesh, photo, reference, pts, groups


def test_head_motion_alone_leaves_the_photo_unchanged(scripted):
    mesh, photo, reference, pts, groups = scripted
    layer = ExpressionLayer(photo, ExpressionOptions(region="expression"), mesh=mesh)
    assert layer.set_reference(reference)
    moved = mesh.add(frame(2), sim(pts, 1.1, -0.2, (-8.0, 3.0)), groups)
    np.testing.assert_array_equal(layer.apply(photo, moved), photo)


def test_driver_expression_moves_the_face_only(scripted):
    mesh, photo, reference, pts, groups = scripted
    layer = ExpressionLayer(photo, ExpressionOptions(region="expression"), mesh=mesh)
    layer.set_reference(reference)
    opened = sim(pts, 0.9, 0.1, (10.0, 5.0))
    opened[groups["lips_inner_lower"][1:-1], 1] += 9.0
    out = layer.apply(photo, mesh.add(frame(3), opened, groups))
    assert out.shape == photo.shape and out.dtype == np.uint8
    changed = (out != photo).any(-1)
    assert changed.sum() > 200
    ys, xs = np.nonzero(changed)
    mouth = pts[groups["lips_outer_lower"]]
    assert abs(np.median(ys) - mouth[:, 1].mean()) < 40  # around the mouth
    oval = pts[groups["face_oval"]]
    outer = warp.expanded_outline(oval)
    assert xs.min() >= outer[:, 0].min() - 2 and xs.max() <= outer[:, 0].max() + 2


def test_regions_and_sliders(scripted):
    mesh, photo, reference, pts, groups = scripted
    layer = ExpressionLayer(photo, ExpressionOptions(region="eyes", smile=1.0), mesh=mesh)
    np.testing.assert_array_equal(layer.apply(photo, reference), photo)  # smile: not the eyes
    layer.options = ExpressionOptions(region="eyes", eyes=-1.0)
    closed = layer.apply(photo, reference)
    changed = np.nonzero((closed != photo).any(-1))[0]
    assert changed.size and changed.max() < pts[groups["nose"]][:, 1].max()  # above the mouth
    layer.options = ExpressionOptions(region="lips", mouth=1.0)
    opened = layer.apply(photo, reference)
    changed = np.nonzero((opened != photo).any(-1))[0]
    assert changed.size and changed.min() > pts[groups["left_eye_lower"]][:, 1].max()


def test_missed_faces_hold_then_pass_through(scripted):
    mesh, photo, reference, pts, groups = scripted
    layer = ExpressionLayer(photo, ExpressionOptions(region="expression"), mesh=mesh)
    unknown = frame(9)
    np.testing.assert_array_equal(layer.apply(photo, unknown), photo)  # no reference yet
    opened = sim(pts, 0.9, 0.1, (10.0, 5.0))
    opened[groups["lips_inner_lower"][1:-1], 1] += 9.0
    driven = mesh.add(frame(4), opened, groups)
    layer.set_reference(reference)
    first = layer.apply(photo, driven)
    held = layer.apply(photo, unknown)
    np.testing.assert_array_equal(held, first)
    for _ in range(10):
        last = layer.apply(photo, unknown)
    np.testing.assert_array_equal(last, photo)
    layer.reset()
    assert not layer.set_reference(unknown)
    with pytest.raises(NoFaceError):
        ExpressionLayer(unknown, mesh=mesh)


# --- a real portrait with FaceMesh --------------------------------------------------------------


@pytest.fixture(scope="module")
def portrait():
    mesh_module = pytest.importorskip("fomm.faces.mesh")
    if not mesh_module.available():
        pytest.skip("FaceMesh model unavailable")
    from skimage.data import astronaut

    crop = cv2.resize(astronaut()[30:250, 120:340], (256, 256), interpolation=cv2.INTER_AREA)
    found = mesh_module.FaceMesh().detect(crop)
    assert found is not None
    return crop, np.asarray(found.points, dtype=np.float64), dict(found.groups), mesh_module


def eyes_drawn_shut(crop: np.ndarray, pts: np.ndarray, groups: dict) -> np.ndarray:
    """``crop`` with both upper lids drawn down to the shut position (the eye slider at -1)."""
    from fomm.expression import eyes

    dist, axes = geometry.face_axes(pts, groups)
    origin = np.mean(geometry.eye_centres(pts, groups), axis=0)
    lowered = pts + geometry.to_pixels(geometry.slider_offsets(pts, groups, eyes=-1.0), pts, groups)
    shut = eyes.shut(geometry.clamp(lowered, groups), groups)
    closed = crop.copy()
    for side in ("left", "right"):
        upper = groups[f"{side}_eye_upper"]
        closed = eyes.close_lid(closed, pts[upper], shut[upper], origin, axes, dist)
    return closed


def inner_gap(points: np.ndarray, groups: dict) -> float:
    return geometry.gap(points, groups["lips_inner_upper"], groups["lips_inner_lower"], groups)


def jaw_dropped(crop: np.ndarray, pts: np.ndarray, groups: dict) -> tuple[np.ndarray, np.ndarray]:
    """``crop`` with everything below the mouth dropped (an opened mouth), and its landmarks."""
    dist, axes = geometry.face_axes(pts, groups)
    idx = np.unique(np.concatenate(list(groups.values())))
    down = (pts - pts[groups["lips_inner_upper"]].mean(0)) @ axes[:, 1] > 0
    opened = pts + np.outer(down * 0.12 * dist, axes[:, 1])
    oval = groups["face_oval"]
    return warp.warp(crop, pts[idx], opened[idx], np.vstack([pts[oval], opened[oval]])), opened


def test_real_portrait_follows_an_opened_mouth(portrait):
    """Self-reenactment: driven by itself with its jaw dropped, the photo should become that
    driving frame around the mouth (and stay itself with region eyes)."""
    crop, pts, groups, mesh_module = portrait
    driving, opened = jaw_dropped(crop, pts, groups)
    lips = np.r_[groups["lips_outer_upper"], groups["lips_outer_lower"]]
    (x0, y0), (x1, y1) = opened[lips].min(0).astype(int) - 4, opened[lips].max(0).astype(int) + 4

    def error(image: np.ndarray) -> float:
        diff = image[y0:y1, x0:x1].astype(float) - driving[y0:y1, x0:x1]
        return float(np.abs(diff).mean())

    mesh = mesh_module.FaceMesh()
    layer = ExpressionLayer(crop, ExpressionOptions(region="expression"), mesh=mesh)
    assert layer.set_reference(crop)
    out = layer.apply(crop, driving)
    assert error(out) < 0.8 * error(crop)

    layer.options = ExpressionOptions(region="eyes")  # the mouth stays
    out = layer.apply(crop, driving)
    np.testing.assert_array_equal(out[y0:y1, x0:x1], crop[y0:y1, x0:x1])

    big = cv2.resize(crop, (512, 512), interpolation=cv2.INTER_CUBIC)
    layer = ExpressionLayer(big, ExpressionOptions(region="expression"), mesh=mesh)
    layer.set_reference(crop)
    out = layer.apply(big, driving)
    assert out.shape == big.shape
    small = cv2.resize(out, (256, 256), interpolation=cv2.INTER_AREA)
    assert error(small) < 0.8 * error(crop)


def test_real_portrait_pose_keeps_the_photos_mouth(portrait):
    """Region pose: a result whose mouth opened (the driver's) gets the photo's mouth back."""
    crop, pts, groups, mesh_module = portrait
    result, opened = jaw_dropped(crop, pts, groups)
    layer = ExpressionLayer(crop, ExpressionOptions(region="pose"), mesh=mesh_module.FaceMesh())
    out = layer.apply(result, crop)
    found = mesh_module.FaceMesh().detect(out)
    assert found is not None
    gap_out = inner_gap(np.asarray(found.points, dtype=np.float64), groups)
    opening = inner_gap(opened, groups) - inner_gap(pts, groups)
    assert opening > 0.05
    assert abs(gap_out - inner_gap(pts, groups)) < 0.15 * opening


def test_result_eyelids_refined_where_it_matters(portrait):
    """The result's eyelids: the iris network's on a closing eye, close to them on open ones."""
    crop, pts, groups, mesh_module = portrait
    closed = eyes_drawn_shut(crop, pts, groups)
    lids = np.unique(np.concatenate([groups[g] for g in geometry.LIDS]))
    layer = ExpressionLayer(crop)
    full = mesh_module.FaceMesh(track=True)
    for k, image in enumerate([np.roll(crop, s, axis=1) for s in (0, 1, 2, 1, 0, 1)] + [closed]):
        got = layer._result_landmarks(image)
        want = np.asarray(full.detect(image).points, dtype=np.float64)
        assert got is not None
        assert np.abs(got[lids] - want[lids]).max() < (1e-3 if k == 6 else 1.0)
    left = groups["left_eye_upper"], groups["left_eye_lower"]
    assert geometry.gap(want, *left, groups) < 0.6 * geometry.gap(pts, *left, groups)  # closing
