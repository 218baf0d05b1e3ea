"""The confined face warp, the sliding eyelid and the mouth fill on synthetic images."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator
from test_expression_geometry import synthetic_face

from fomm.expression import eyes, geometry, mouth, warp


def noise(size: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def outside(outline: np.ndarray, shape: tuple[int, int], margin: int = 3) -> np.ndarray:
    """Pixels farther than ``margin`` outside the warp's expanded outline."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 1)
    return cv2.dilate(mask, np.ones((2 * margin + 1,) * 2, np.uint8)) == 0


def test_thin_plate_matches_scipy():
    rng = np.random.default_rng(1)
    centres, values, points = rng.random((30, 2)), rng.normal(size=(30, 2)), rng.random((50, 2))
    ours = warp.thin_plate(centres, values, points, smoothing=1e-4)
    ref = RBFInterpolator(centres, values, kernel="thin_plate_spline", smoothing=1e-4)(points)
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_identity_when_targets_equal_sources():
    image = noise()
    pts, groups = synthetic_face()
    out = warp.warp(image, pts, pts, pts[groups["face_oval"]])
    np.testing.assert_array_equal(out, image)


def test_warp_is_confined_to_the_face():
    image = noise(seed=2)
    pts, groups = synthetic_face(eye_distance=50.0)
    dst = pts.copy()
    dst[groups["lips_inner_lower"][1:-1], 1] += 12.0
    dst[groups["left_eye_upper"][1:-1], 1] -= 4.0
    oval = groups["face_oval"]
    out = warp.warp(image, pts, dst, np.vstack([pts[oval], dst[oval]]))
    assert out.shape == image.shape and out.dtype == image.dtype
    far = outside(warp.expanded_outline(np.vstack([pts[oval], dst[oval], pts, dst])), (256, 256))
    assert far.sum() > 10_000
    np.testing.assert_array_equal(out[far], image[far])
    assert (out != image).any(axis=-1).sum() > 500


def test_warp_moves_content_to_the_targets():
    image = np.full((256, 256, 3), 40, np.uint8)
    pts, groups = synthetic_face(eye_distance=60.0)
    i = groups["lips_inner_lower"][3]
    x, y = pts[i]
    cv2.circle(image, (round(x), round(y)), 3, (255, 255, 255), -1)
    dst = pts.copy()
    dst[np.concatenate([groups[name] for name in geometry.LIPS])] += (6.0, 9.0)
    out = warp.warp(image, pts, dst, pts[groups["face_oval"]]).astype(float)[..., 0]
    ys, xs = np.nonzero(out > 150)
    assert abs(xs.mean() - (x + 6)) < 1.5 and abs(ys.mean() - (y + 9)) < 1.5


def test_displacement_is_finite_with_near_coincident_controls():
    pts, groups = synthetic_face()
    dst = pts.copy()
    up, low = groups["left_eye_upper"][1:-1], groups["left_eye_lower"][1:-1]
    dst[up] = dst[low] - (0.0, 0.5)  # the upper lid half a pixel above the lower one
    found = warp.displacement(pts, dst, pts[groups["face_oval"]], (256, 256))
    assert found is not None and np.isfinite(found.coarse).all()


def test_close_lid_covers_the_eye_with_lid_skin():
    image = np.full((128, 128, 3), 200, np.uint8)  # skin
    image[50:70, 30:98] = (20, 20, 250)  # the eye: blue
    lid = np.stack([np.linspace(30, 98, 9), np.full(9, 50.0)], axis=1)
    wanted = lid.copy()
    wanted[1:-1, 1] = 68.0
    axes = np.eye(2)
    out = eyes.close_lid(image.copy(), lid, wanted, np.array([64.0, 60.0]), axes, 60.0)
    eye = out[52:62, 40:88]  # the lid edge (the band's last row) lies at 68
    assert (np.abs(eye.astype(int) - 200).max(axis=-1) < 30).mean() > 0.95  # skin now
    np.testing.assert_array_equal(out[:30], image[:30])
    np.testing.assert_array_equal(out[80:], image[80:])
    assert np.abs(out[75:80].astype(int) - image[75:80]).max() <= 2  # the lashes' soft tail


def test_fill_mouth_shows_the_source_interior_inside_the_lips():
    pts, groups = synthetic_face(eye_distance=60.0, mouth_gap=0.02)
    target = pts.copy()
    target[groups["lips_inner_lower"][1:-1], 1] += 12.0
    target[groups["lips_outer_lower"][1:-1], 1] += 12.0
    frame = np.full((256, 256, 3), 150, np.uint8)
    source = np.full((256, 256, 3), 150, np.uint8)
    source_pts = target.copy()  # a driver with its mouth open, its interior white
    poly = mouth.inner_contour(source_pts, groups)
    cv2.fillPoly(source, [np.round(poly).astype(np.int32)], (255, 255, 255))
    gaps = [geometry.gap(p, groups["lips_inner_upper"], groups["lips_inner_lower"], groups)
            for p in (target, pts, source_pts)]  # fmt: skip
    strength = mouth.fill_strength(gaps[0], gaps[1])
    assert strength == 1.0 and mouth.source_share(gaps[0], gaps[2]) == 1.0
    out = mouth.fill_mouth(frame, target, groups, source, source_pts, strength, 60.0)
    centre = np.round(poly.mean(0)).astype(int)
    assert out[centre[1], centre[0]].min() > 200
    assert (out[:60] == 150).all() and (out[200:] == 150).all()
    assert mouth.fill_strength(0.01, 0.0) == 0.0  # a closed target: nothing to fill
    assert mouth.fill_strength(0.2, 0.2) == 0.0  # the frame already shows it open
    assert mouth.source_share(0.2, 0.0) == 0.0  # a closed source: a dark cavity instead
    dark = mouth.fill_mouth(frame, target, groups, source, source_pts, 1.0, 60.0, share=0.0)
    assert dark[centre[1], centre[0]].max() < 100


def test_a_closed_lid_shows_its_lashes():
    image = np.full((128, 128, 3), 200, np.uint8)  # skin
    image[50:70, 30:98] = (30, 30, 30)  # the eye: dark
    lid = np.stack([np.linspace(30, 98, 9), np.full(9, 50.0)], axis=1)
    wanted = lid.copy()
    wanted[1:-1, 1] = 68.0
    out = eyes.close_lid(image.copy(), lid, wanted, np.array([64.0, 60.0]), np.eye(2), 60.0)
    middle = out[:, 60:68].astype(int).sum(axis=(1, 2))
    line = middle[62:70].min()
    assert line < 0.6 * middle[55]  # a dark line at the lid's new edge, skin above it


def test_opening_lifts_a_closed_photo_lid_only_while_the_driver_looks():
    photo, groups = synthetic_face(eye_distance=60.0)
    upper = groups["left_eye_upper"][1:-1]
    closed = photo.copy()
    closed[upper, 1] += 8.0  # the photo's left eye nearly shut
    reference = photo.copy()
    lifted = eyes.opening(closed, groups, reference, reference)
    assert (lifted[upper, 1] < -0.05).all()  # the lid goes up (face units)
    assert np.abs(lifted[groups["right_eye_upper"]]).max() == 0.0  # the open eye is left alone
    blink = reference.copy()
    blink[upper, 1] += 8.0  # the driver blinks: nothing to open
    assert np.abs(eyes.opening(closed, groups, blink, reference)).max() < 0.01
    assert np.abs(eyes.opening(photo, groups, reference, reference)).max() == 0.0


def test_fill_eye_shows_the_drivers_eye_where_the_lid_lifted():
    pts, groups = synthetic_face(eye_distance=60.0)
    before = pts.copy()
    upper = groups["left_eye_upper"][1:-1]
    before[upper, 1] += 4.0  # the frame's eye nearly shut, the target open
    frame = np.random.default_rng(0).integers(110, 250, (256, 256, 3), dtype=np.uint8)  # colour
    source = np.full((256, 256, 3), 180, np.uint8)
    poly = np.round(eyes.eye_contour(pts, groups, "left")).astype(np.int32)
    cv2.fillPoly(source, [poly], (20, 60, 200))
    out = eyes.fill_eye(frame, pts, before, groups, source, pts)
    centre = np.round(pts[groups["left_eye_lower"][3]] * 0.5
                      + pts[groups["left_eye_upper"][3]] * 0.5).astype(int)
    assert out[centre[1], centre[0], 2] > 150 and out[centre[1], centre[0], 0] < 80
    far = pts[groups["nose"][-1]].astype(int)
    np.testing.assert_array_equal(out[far[1], far[0]], frame[far[1], far[0]])
    assert eyes.fill_eye(frame, pts, pts, groups, source, pts) is frame  # nothing opened
