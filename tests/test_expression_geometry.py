"""Expression geometry on synthetic landmarks: head motion out, expression in, regions, sliders,
clamps."""

from __future__ import annotations

import numpy as np
import pytest

from fomm.errors import ConfigError
from fomm.expression import REGIONS, ExpressionOptions, uses_networks
from fomm.expression import geometry as g


def synthetic_face(
    eye_distance: float = 60.0,
    angle: float = 0.0,
    centre: tuple[float, float] = (128.0, 110.0),
    mouth_gap: float = 0.02,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A schematic face with the groups of fomm.faces.mesh (lids and lips share their corners),
    in face units (eye distance 1, eyes on y = 0) mapped to pixels by scale, roll and shift."""
    pts: list[tuple[float, float]] = []
    groups: dict[str, np.ndarray] = {}

    def add(coords: list[tuple[float, float]]) -> np.ndarray:
        start = len(pts)
        pts.extend(coords)
        return np.arange(start, start + len(coords))

    t = np.linspace(0.0, 1.0, 7)
    bump = np.sin(np.pi * t[1:-1])
    for side, cx in (("left", -0.5), ("right", 0.5)):
        corners = add([(cx - 0.25, 0.0), (cx + 0.25, 0.0)])
        xs = cx - 0.25 + 0.5 * t[1:-1]
        upper = add([(x, -0.09 * b) for x, b in zip(xs, bump)])
        lower = add([(x, 0.06 * b) for x, b in zip(xs, bump)])
        groups[f"{side}_eye_upper"] = np.r_[corners[0], upper, corners[1]]
        groups[f"{side}_eye_lower"] = np.r_[corners[0], lower, corners[1]]
        groups[f"{side}_brow"] = add([(cx - 0.3 + 0.15 * i, -0.3) for i in range(5)])
    groups["nose"] = add([(0.0, 0.1 * i) for i in range(1, 7)] + [(-0.15, 0.55), (0.15, 0.55)])
    outer = add([(-0.4, 1.0), (0.4, 1.0)])
    inner = add([(-0.33, 1.0), (0.33, 1.0)])
    xs_o, xs_i = -0.4 + 0.8 * t[1:-1], -0.33 + 0.66 * t[1:-1]
    groups["lips_outer_upper"] = np.r_[
        outer[0], add([(x, 1 - 0.12 * b) for x, b in zip(xs_o, bump)]), outer[1]
    ]
    groups["lips_outer_lower"] = np.r_[
        outer[0], add([(x, 1 + 0.15 * b) for x, b in zip(xs_o, bump)]), outer[1]
    ]
    half = mouth_gap / 2
    groups["lips_inner_upper"] = np.r_[
        inner[0], add([(x, 1 - half * b) for x, b in zip(xs_i, bump)]), inner[1]
    ]
    groups["lips_inner_lower"] = np.r_[
        inner[0], add([(x, 1 + half * b) for x, b in zip(xs_i, bump)]), inner[1]
    ]
    a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    groups["face_oval"] = add([(0.95 * np.sin(v), 0.45 - 1.25 * np.cos(v)) for v in a])
    groups["stable"] = np.r_[
        groups["nose"][:6], groups["left_eye_upper"][-1], groups["right_eye_upper"][0],
        groups["face_oval"][[0, 1, 2, 22, 23]],
    ]  # fmt: skip
    face = np.asarray(pts)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return face @ rot.T * eye_distance + np.asarray(centre), groups


def sim(points: np.ndarray, scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ (scale * np.array([[c, -s], [s, c]])).T + np.asarray(shift)


def test_similarity_recovers_a_known_motion():
    pts, _ = synthetic_face()
    moved = sim(pts, 1.3, 0.2, (5.0, -7.0))
    m = g.similarity(pts, moved)
    np.testing.assert_allclose(g.transform(m, pts), moved, atol=1e-9)


def test_pure_head_motion_is_no_expression():
    ref, groups = synthetic_face()
    driving = sim(ref, 0.8, -0.3, (20.0, 11.0))
    assert np.abs(g.expression_offsets(driving, ref, groups)).max() < 1e-9


def test_lip_opening_transfers_in_eye_distances_onto_a_rolled_photo():
    ref, groups = synthetic_face(eye_distance=50.0)
    driving = ref.copy()
    lower = groups["lips_inner_lower"][1:-1]
    driving[lower, 1] += 10.0  # 0.2 eye distances, the head also moves
    driving = sim(driving, 1.2, 0.1, (3.0, 4.0))
    off = g.expression_offsets(driving, ref, groups)
    moved = np.abs(off).max(axis=1) > 1e-6
    assert set(np.flatnonzero(moved)) <= set(lower)
    np.testing.assert_allclose(off[lower], [[0.0, 0.2]] * len(lower), atol=0.02)
    photo, _ = synthetic_face(eye_distance=80.0, angle=0.3)
    px = g.to_pixels(off, photo, groups)
    down = np.array([-np.sin(0.3), np.cos(0.3)])
    np.testing.assert_allclose(px[lower] @ down, 16.0, atol=1.6)  # 0.2 x 80 px, down the face


@pytest.mark.parametrize("region", REGIONS)
def test_regions_pin_what_they_should(region):
    pts, groups = synthetic_face()
    mask = g.region_mask(groups, len(pts), region)
    lids = np.concatenate([groups[n] for n in g.LIDS])
    lips = np.concatenate([groups[n] for n in g.LIPS])
    if region == "eyes":
        assert set(np.flatnonzero(mask)) == set(lids)
    elif region == "lips":
        assert set(np.flatnonzero(mask)) == set(lips)
    else:
        assert mask.all()


def test_sliders_move_what_they_should():
    pts, groups = synthetic_face()
    lids = np.concatenate([groups[n] for n in g.LIDS])
    lips = np.concatenate([groups[n] for n in g.LIPS])
    closed = g.slider_offsets(pts, groups, eyes=-1.0)
    assert set(np.flatnonzero(np.abs(closed).max(1) > 0)) <= set(lids)
    assert closed[groups["left_eye_upper"][3], 1] > 0.2  # the upper lid comes down
    assert np.abs(closed[groups["left_eye_upper"][[0, -1]]]).max() < 1e-9  # corners stay
    opened = g.slider_offsets(pts, groups, mouth=1.0)
    assert set(np.flatnonzero(np.abs(opened).max(1) > 0)) <= set(lips) | set(groups["face_oval"])
    assert opened[groups["lips_inner_lower"][3], 1] > 0.2
    smile = g.slider_offsets(pts, groups, smile=1.0)
    assert set(np.flatnonzero(np.abs(smile).max(1) > 0)) <= set(lips)
    left, right = groups["lips_outer_upper"][[0, -1]]
    assert smile[left, 0] < 0 < smile[right, 0]  # corners outward
    assert smile[left, 1] < 0 and smile[right, 1] < 0  # and up


def test_clamp_keeps_lids_and_lips_apart():
    pts, groups = synthetic_face(eye_distance=50.0)
    bad = pts.copy()
    up = groups["left_eye_upper"][1:-1]
    bad[up, 1] += 20.0  # upper lid far below the lower one
    lo = groups["lips_inner_lower"][1:-1]
    bad[lo, 1] -= 15.0  # lower lip above the upper one
    fixed = g.clamp(bad, groups, like=pts)
    gap_eye = g.gap(fixed, groups["left_eye_upper"], groups["left_eye_lower"], groups)
    gap_lips = g.gap(fixed, groups["lips_inner_upper"], groups["lips_inner_lower"], groups)
    assert gap_eye == pytest.approx(g.MIN_GAP, abs=1e-3)
    assert gap_lips == pytest.approx(g.MIN_GAP, abs=1e-3)
    np.testing.assert_allclose(fixed[groups["nose"]], pts[groups["nose"]])
    np.testing.assert_allclose(g.clamp(pts, groups), pts, atol=1e-9)  # a fine face is unchanged


def test_options_validate():
    assert ExpressionOptions().region == "all"
    for bad in ({"region": "ears"}, {"scale": 2.5}, {"eyes": -1.5}, {"smile": float("nan")}):
        with pytest.raises(ConfigError):
            ExpressionOptions(**bad)
    assert uses_networks("all") and uses_networks("pose")
    assert not any(uses_networks(r) for r in ("expression", "eyes", "lips"))


def test_one_euro_steadies_jitter_and_follows_jumps():
    from fomm.expression.smoothing import OneEuro

    rng = np.random.default_rng(0)
    still = OneEuro(min_cutoff=3.0, beta=2.0)
    noisy = 0.5 + 0.01 * rng.normal(size=(100, 4))
    out = np.array([still(x) for x in noisy])
    assert out[20:].std() < 0.6 * noisy[20:].std()
    jump = OneEuro(min_cutoff=3.0, beta=30.0, d_cutoff=5.0)
    values = [jump(np.array([0.0]))[0] for _ in range(5)]
    values += [jump(np.array([0.3]))[0] for _ in range(3)]
    assert values[-1] > 0.25  # a blink-sized jump is followed within 3 frames
    jump.reset()
    np.testing.assert_array_equal(jump(np.array([7.0])), [7.0])


def test_lid_gain_leaves_a_whole_eye_shift_alone():
    ref, groups = synthetic_face(eye_distance=50.0)
    driving = ref.copy()
    eye = np.unique(np.r_[groups["left_eye_upper"], groups["left_eye_lower"]])
    driving[eye, 0] += 2.0  # the whole eye 0.04 eye distances sideways: no lid motion
    upper = groups["left_eye_upper"][1:-1]
    off = g.expression_offsets(driving, ref, groups)
    assert np.abs(off[eye] - off[eye].mean(0)).max() < 0.005  # moved together, not amplified
    driving[upper, 1] += 2.0  # the upper lid 0.04 down: amplified by the gain
    off = g.expression_offsets(driving, ref, groups)
    corners = groups["left_eye_upper"][[0, -1]]
    closing = off[upper, 1] - off[corners, 1].mean()
    np.testing.assert_allclose(closing, 0.04 * g.LID_GAIN, atol=0.01)


def test_without_pose_keeps_the_head_and_the_expression():
    pts, groups = synthetic_face()
    rng = np.random.default_rng(0)
    off = rng.normal(0.0, 0.05, pts.shape)
    kept = g.without_pose(off, pts, groups)
    for name in ("stable", "nose"):
        assert np.abs(kept[groups[name]]).max() == 0.0
    for side in ("left", "right"):
        assert np.abs(kept[groups[f"{side}_eye_upper"][[0, -1]]]).max() == 0.0  # eye corners
    assert np.abs(kept[groups["face_oval"], 0]).max() == 0.0  # the outline does not swing
    lips = np.unique(np.concatenate([groups[n] for n in g.LIPS]))
    assert abs(kept[lips, 0].mean()) < 1e-12  # the mouth does not slide sideways
    np.testing.assert_allclose(kept[lips, 1], off[lips, 1])  # it opens and closes
    brow = groups["left_brow"]
    np.testing.assert_allclose(kept[brow], off[brow])  # brows as they are
    # lid motion off the corners' line kept: a lid closing with its eye shifted
    shifted = np.zeros_like(off)
    upper = groups["left_eye_upper"]
    eye = np.unique(np.r_[upper, groups["left_eye_lower"]])
    shifted[eye, 0] += 0.1
    shifted[upper[1:-1], 1] += 0.05
    kept = g.without_pose(shifted, pts, groups)
    np.testing.assert_allclose(kept[upper[1:-1]], [[0.0, 0.05]] * (len(upper) - 2), atol=1e-9)
