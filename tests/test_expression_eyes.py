"""Eyelids of the expression layer: the driver's lids set the result's, a lid slides shut."""

from __future__ import annotations

import cv2
import numpy as np
from test_expression_geometry import synthetic_face
from test_expression_layer import (  # noqa: F401 (portrait: a fixture)
    ScriptedMesh,
    eyes_drawn_shut,
    frame,
    portrait,
)

from fomm.expression import ExpressionLayer, ExpressionOptions, eyes, geometry, layer


def _lid_gap(points: np.ndarray, groups: dict, side: str) -> float:
    upper, lower = groups[f"{side}_eye_upper"], groups[f"{side}_eye_lower"]
    return geometry.gap(points, upper, lower, groups)


def test_the_results_own_blink_does_not_override_the_drivers_open_eyes(monkeypatch):
    mesh = ScriptedMesh()
    pts, groups = synthetic_face(eye_distance=60.0)
    photo = mesh.add(frame(0), pts, groups)
    driving = mesh.add(frame(1), pts, groups)  # the driver keeps its eyes open
    blinked = pts.copy()  # the FOMM result shut its left eye on its own
    upper, lower = groups["left_eye_upper"][1:-1], groups["left_eye_lower"][1:-1]
    blinked[upper, 1] = np.interp(pts[upper, 0], pts[lower, 0], pts[lower, 1]) - 0.5
    result = mesh.add(frame(2), blinked, groups)
    seen = {}
    original = layer.warp.warp

    def warp(image, src, dst, *args, **kwargs):
        seen["src"], seen["dst"] = src, dst
        return original(image, src, dst, *args, **kwargs)

    monkeypatch.setattr(layer.warp, "warp", warp)
    expression = ExpressionLayer(photo, ExpressionOptions(region="all"), mesh=mesh)
    assert expression.set_reference(driving)
    expression.apply(result, driving)
    controls = expression._controls
    wanted = np.full_like(pts, np.nan)
    wanted[controls] = seen["dst"]
    assert _lid_gap(blinked, groups, "left") < 0.02
    # the warp opens the result's lid as far as the photo's (the driver's expression: none)
    opened = pts.copy()
    opened[upper] = wanted[upper]
    assert abs(_lid_gap(opened, groups, "left") - _lid_gap(pts, groups, "left")) < 0.01


def test_a_lid_that_stays_leaves_the_skin_beside_it_as_it_is():
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (128, 128, 3), dtype=np.uint8)  # textured skin
    lid = np.stack([np.linspace(30, 98, 9), np.full(9, 50.0)], axis=1)
    wanted = lid.copy()
    wanted[1:4, 1] = 66.0  # the lid comes down at its left end only
    out = eyes.close_lid(image.copy(), lid, wanted, np.array([64.0, 60.0]), np.eye(2), 60.0)
    assert (out[40:66, 36:52] != image[40:66, 36:52]).any()  # where it came down
    # where it stays (from its fifth point on) the image is unchanged: no seam beside the
    # part that moved
    np.testing.assert_array_equal(out[:, 66:], image[:, 66:])


def test_a_shut_lid_still_covers_the_eye():
    image = np.full((128, 128, 3), 200, np.uint8)  # skin
    image[50:70, 30:98] = (20, 20, 250)  # the eye: blue
    lid = np.stack([np.linspace(30, 98, 9), np.full(9, 50.0)], axis=1)
    wanted = lid.copy()
    wanted[1:-1, 1] = 68.0
    out = eyes.close_lid(image.copy(), lid, wanted, np.array([64.0, 60.0]), np.eye(2), 60.0)
    eye = out[52:62, 40:88]
    assert (np.abs(eye.astype(int) - 200).max(axis=-1) < 30).mean() > 0.95  # lid skin


def test_the_drivers_eye_drawn_in_takes_a_grey_photos_colour():
    pts, groups = synthetic_face(eye_distance=60.0)
    before = pts.copy()
    upper = groups["left_eye_upper"][1:-1]
    before[upper, 1] += 4.0  # the photo's eye nearly shut, the target open: the driver's is drawn
    rng = np.random.default_rng(1)
    grey = rng.integers(90, 200, (256, 256, 1), dtype=np.uint8)
    photo = np.repeat(grey, 3, axis=2)  # a black-and-white photo
    driver = np.empty((256, 256, 3), np.uint8)
    driver[:] = (205, 160, 135)  # skin
    poly = np.round(eyes.eye_contour(pts, groups, "left")).astype(np.int32)
    cv2.fillPoly(driver, [poly], (235, 235, 230))  # the white of the eye
    centre = np.round(pts[groups["left_eye_lower"][3]] * 0.5
                      + pts[groups["left_eye_upper"][3]] * 0.5).astype(int)
    cv2.circle(driver, (int(centre[0]), int(centre[1])), 5, (40, 150, 60), -1)  # a green iris
    out = eyes.fill_eye(photo, pts, before, groups, driver, pts)
    eye = out[centre[1] - 3 : centre[1] + 4, centre[0] - 3 : centre[0] + 4].astype(int)
    assert (eye != photo[centre[1] - 3 : centre[1] + 4, centre[0] - 3 : centre[0] + 4]).any()
    assert np.abs(eye - eye.mean(axis=-1, keepdims=True)).max() <= 2  # grey, as the photo
    assert eye.mean() < 110  # the iris is still there, dark
    # a colour photo keeps the driver's green iris
    skin = np.array([190, 150, 125])
    colour = np.clip(skin + rng.normal(0, 25, (256, 256, 3)), 0, 255).astype(np.uint8)
    out = eyes.fill_eye(colour, pts, before, groups, driver, pts)
    iris = out[centre[1] - 1 : centre[1] + 2, centre[0] - 1 : centre[0] + 2].astype(int)
    assert (iris[..., 1] - iris[..., [0, 2]].max(axis=-1) > 40).all()


def test_the_drivers_lids_lie_between_the_face_and_the_iris_networks(portrait):  # noqa: F811
    """The driver's eyelids: ``LID_BLEND`` of the way from the iris network's to the face
    network's (each has slow errors of its own); the rest of the face is the face network's."""
    crop, _, groups, mesh_module = portrait
    driving = np.roll(crop, 3, axis=0)
    got = ExpressionLayer(crop).observe(driving).points
    mesh = mesh_module.FaceMesh(refine_eyes=False)
    found = mesh.detect(driving)
    face = np.asarray(found.points, dtype=np.float64)
    iris = np.asarray(mesh.refined(driving, found).points, dtype=np.float64)
    lids = np.unique(np.concatenate([groups[g] for g in geometry.LIDS]))
    assert np.abs(iris[lids] - face[lids]).max() > 0.2  # the two networks differ here
    want = iris[lids] + layer.LID_BLEND * (face[lids] - iris[lids])
    np.testing.assert_allclose(got[lids], want, atol=1e-3)
    rest = np.setdiff1d(np.arange(len(face)), lids)
    np.testing.assert_allclose(got[rest], face[rest], atol=1e-3)


def test_a_drivers_shut_eyes_shut_the_photos(portrait):  # noqa: F811
    """With the driver's lids between the two networks' (the face network leaves a shut eye
    half open), a driver whose eyes shut still shuts the photo's."""
    crop, pts, groups, mesh_module = portrait
    closed = eyes_drawn_shut(crop, pts, groups)
    expression = ExpressionLayer(crop, ExpressionOptions(region="eyes"))
    assert expression.set_reference(crop)
    out = expression.apply(crop, closed)
    found = np.asarray(mesh_module.FaceMesh().detect(out).points, dtype=np.float64)
    for side in ("left", "right"):
        lids = groups[f"{side}_eye_upper"], groups[f"{side}_eye_lower"]
        assert geometry.gap(found, *lids, groups) < 0.5 * geometry.gap(pts, *lids, groups)
