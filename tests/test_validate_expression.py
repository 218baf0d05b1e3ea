"""The metric functions of benchmarks/validate_expression.py on synthetic landmark series."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import validate_expression as v  # noqa: E402  (benchmarks/validate_expression.py)

EYE_DISTANCE = 60.0


def face(mouth: float = 0.0, width: float = 50.0, lids: float = 8.0, dx: float = 0.0,
         dy: float = 0.0) -> np.ndarray:
    """(68, 2) iBUG landmarks with the given inner-lip gap, mouth width and lid gap (pixels);
    eye centres 60 pixels apart, everything shifted by (dx, dy)."""
    p = np.zeros((68, 2))
    p[:17] = np.stack([np.linspace(70, 190, 17), np.full(17, 180.0)], 1)  # jaw (unused)
    p[17:27] = np.stack([np.linspace(80, 180, 10), np.full(10, 85.0)], 1)  # brows
    p[27:31] = np.stack([np.full(4, 130.0), np.linspace(100, 140, 4)], 1)  # nose bridge, tip
    p[31:36] = np.stack([np.linspace(120, 140, 5), np.full(5, 145.0)], 1)
    for start, cx in ((36, 100.0), (42, 160.0)):  # corner, upper 2, corner, lower 2
        p[start:start + 6] = [(cx - 15, 100), (cx - 5, 100 - lids / 2), (cx + 5, 100 - lids / 2),
                              (cx + 15, 100), (cx + 5, 100 + lids / 2), (cx - 5, 100 + lids / 2)]
    p[48], p[54] = (130 - width / 2, 170), (130 + width / 2, 170)
    p[49:54] = np.stack([np.linspace(115, 145, 5), np.full(5, 165.0)], 1)
    p[55:60] = np.stack([np.linspace(145, 115, 5), np.full(5, 178.0)], 1)
    p[60], p[64] = (120, 170), (140, 170)
    p[61:64] = np.stack([[125, 130, 135], np.full(3, 170 - mouth / 2)], 1)
    p[65:68] = np.stack([[135, 130, 125], np.full(3, 170 + mouth / 2)], 1)
    return p + (dx, dy)


def series(n: int = 40, **scale: float) -> np.ndarray:
    """A talking, smiling, blinking face over n frames; ``scale`` multiplies each change."""
    t = np.arange(n)
    mouth = 10 + 8 * np.sin(t / 3) * scale.get("mouth", 1.0)
    width = 50 + 6 * np.cos(t / 5) * scale.get("width", 1.0)
    lids = 8 - 6 * (t % 10 == 4) * scale.get("eyes", 1.0)
    shift = scale.get("shift", 0.0)
    nose = scale.get("nose", 1.0)
    return np.stack([face(m, w, e, shift + nose * 4 * np.sin(i / 7), shift)
                     for i, (m, w, e) in enumerate(zip(mouth, width, lids))])


def test_follow_scaled_copy_and_gaps():
    driver = np.sin(np.arange(30) / 4)
    result = 0.5 * driver + 3
    result[[3, 7]] = np.nan  # frames without a face are skipped on both sides
    out = v.follow(driver, result)
    assert out["r"] == pytest.approx(1.0) and out["std_ratio"] == pytest.approx(0.5)
    assert out["frames"] == 28
    anti = v.follow(driver, -driver)
    assert anti["r"] == pytest.approx(-1.0) and anti["std_ratio"] == pytest.approx(1.0)
    assert anti["driver_std"] == pytest.approx(np.std(driver), abs=1e-4)


def test_follow_undefined_cases():
    assert v.follow(np.ones(10), np.arange(10.0))["std_ratio"] is None  # constant driver
    still = v.follow(np.arange(10.0), np.ones(10))
    assert still["r"] is None and still["std_ratio"] == 0.0  # the result never moves
    assert v.follow(np.arange(2.0), np.arange(2.0))["r"] is None  # too few frames


def test_expression_report_tracks_each_feature():
    driver = series()
    result = series(mouth=0.8, width=0.5, eyes=1.0)
    report = v.expression_report(driver, result, driver[0])
    assert report["frames"] == 40 and report["face_found"] == 1.0
    assert report["mouth"]["r"] == pytest.approx(1.0, abs=1e-4)
    assert report["mouth"]["std_ratio"] == pytest.approx(0.8, abs=1e-3)
    assert report["width"]["std_ratio"] == pytest.approx(0.5, abs=1e-3)
    assert report["eyes"]["r"] == pytest.approx(1.0, abs=1e-4)
    assert report["nose_r"] == pytest.approx(1.0, abs=1e-4)


def test_expression_report_frozen_mouth_and_missing_faces():
    driver = series()
    result = series(mouth=0.0)
    result[5] = np.nan
    report = v.expression_report(driver, result, driver[0])
    assert report["face_found"] == pytest.approx(39 / 40)
    assert report["mouth"]["std_ratio"] == 0.0 and report["mouth"]["r"] is None
    assert report["mouth"]["frames"] == 39


def test_head_displacement_in_eye_distances():
    reference = face()
    points = np.stack([face(mouth=12, dx=3.0), face(mouth=2, dx=1.5), face()])
    points = np.concatenate([points, np.full((1, 68, 2), np.nan)])
    head = v.head_displacement(points, reference)  # mouth changes do not count
    assert head["max"] == pytest.approx(3.0 / EYE_DISTANCE)
    assert head["mean"] == pytest.approx(4.5 / 3 / EYE_DISTANCE)
    assert v.head_displacement(np.full((2, 68, 2), np.nan), reference) == {"mean": None,
                                                                           "max": None}


def test_nose_follow_half_the_motion():
    driver = series(nose=1.0)
    result = series(nose=0.5, shift=20.0)  # a constant offset is not motion
    report = v.expression_report(driver, result, driver[0])
    assert report["nose_std_ratio"] == pytest.approx(0.5, abs=1e-3)
    assert report["nose_r"] == pytest.approx(1.0, abs=1e-4)
    assert report["head"]["mean"] == pytest.approx(20 * math.sqrt(2) / EYE_DISTANCE, rel=0.2)


def test_corner_motion_sees_only_the_corners():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    still = v.corner_motion([photo.copy() for _ in range(3)], photo)
    assert still == {"swim": 0.0, "vs_photo": 0.0}
    centre = []
    for i in range(3):  # the face in the middle moves, the corners stay
        f = photo.copy()
        f[24:40, 24:40] = 40 * i
        centre.append(f)
    assert v.corner_motion(centre, photo) == {"swim": 0.0, "vs_photo": 0.0}
    swim = []
    for i in range(3):  # a corner patch brightens by 10 each frame
        f = photo.astype(np.int16)
        rows, cols = v.corner_patches(64)[0]
        f[rows, cols] = np.clip(f[rows, cols] + 10 * i, 0, 255)
        swim.append(f.astype(np.uint8))
    out = v.corner_motion(swim, photo)
    assert 0 < out["swim"] <= 10 / 4 and 0 < out["vs_photo"] < out["swim"] * 2


def test_corner_patches_inside_the_box():
    patches = v.corner_patches(256)  # 10 % to 24 % of the side from each corner
    near, far = slice(26, 61), slice(195, 230)
    assert patches == [(near, near), (near, far), (far, near), (far, far)]


def test_targets_and_judge():
    assert v.passes(0.7, (">=", 0.7)) and not v.passes(0.69, (">=", 0.7))
    assert v.passes(0.2, ("<=", 0.2)) and not v.passes(0.21, ("<=", 0.2))
    assert v.passes(1.3, ("in", (0.7, 1.3))) and not v.passes(0.6, ("in", (0.7, 1.3)))
    assert not v.passes(None, (">=", 0.0)) and not v.passes(math.nan, ("<=", 1.0))
    report = {"mouth": {"r": 0.8, "std_ratio": 1.5}, "eyes": {"r": 0.6}, "width": {"r": None},
              "aed": 0.3}
    verdict = v.judge(report, "self", "all")
    assert verdict == {"mouth.r": True, "mouth.std_ratio": False, "eyes.r": True,
                       "width.r": False, "aed": True}
    assert v.judge({"head": {"max": 0.04}}, "self", "expression") == {"head.max": True}
    # region pose: judged on readings averaged over small shifts, not on single ones
    pose = {"mouth": {"std_ratio": 0.3}, "steady": {"mouth": {"std_ratio": 0.15}}}
    assert v.judge(pose, "self", "pose") == {"steady.mouth.std_ratio": True}
    assert not v.judge({"mouth": {"std_ratio": 0.1}}, "self", "pose")["steady.mouth.std_ratio"]


def test_mean_report_skips_missing_values():
    rows = [{"frames": 10, "mouth": {"r": 0.5, "std_ratio": None}, "aed": 0.2},
            {"frames": 20, "mouth": {"r": 0.7, "std_ratio": 1.0}}]
    mean = v.mean_report(rows)
    assert mean["frames"] == 15 and mean["aed"] == 0.2
    assert mean["mouth"] == {"r": pytest.approx(0.6), "std_ratio": 1.0}


def test_sets_are_disjoint_and_resolved_by_name():
    tuning, heldout = v.SETS["tuning"], v.SETS["heldout"]
    for key in ("clips", "photos"):
        assert not {Path(p).stem for p in tuning[key]} & {Path(p).stem for p in heldout[key]}
    assert v.resolve(["lp_d5"], tuning["clips"]) == [v.DATA / "videos-extra/lp_d5.mp4"]
    assert v.resolve(None, heldout["photos"])[0] == v.DATA / "images/lp_s5.jpg"


def test_series_are_per_frame_features():
    driver = series(n=6)
    result = driver.copy()
    result[2] = np.nan
    report = v.expression_report(driver, result, driver[0], series=True)
    assert len(report["series"]["driver"]) == 6 and report["series"]["result"][2] == [None] * 3
    assert report["series"]["result"][0] == report["series"]["driver"][0]
    assert report["series"]["driver"][0][0] == pytest.approx(10 / EYE_DISTANCE, abs=1e-4)


def test_still_mouth_floor_moves_the_source_with_the_drivers_head(monkeypatch):
    """The floor measures the source moved by the driver's head: a mouth that does not move
    there scores a std ratio near 0 however the driver's mouth and head move."""
    source = np.zeros((256, 256, 3), np.uint8)
    source[128:133, 128:133] = 255  # a marker the fake landmark finder follows

    def fake_landmarks(frame: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(frame[..., 0] > 127)
        return face(mouth=6.0, dx=xs.mean() - 130.0, dy=ys.mean() - 130.0)

    monkeypatch.setattr(v, "landmarks", fake_landmarks)
    shifts = np.linspace(-12, 12, 20)
    driver = np.stack([face(mouth=10.0 + 6.0 * math.sin(i / 2), dx=s, dy=-s / 2)
                       for i, s in enumerate(shifts)])
    driver[5] = np.nan  # no face: not measured
    floor = v.still_mouth_floor(source, face(mouth=6.0), driver)
    assert floor["frames"] == 19
    assert floor["driver_std"] > 0.05
    assert floor["std_ratio"] < 0.02


def test_still_mouth_floor_follows_the_drivers_head_shift(monkeypatch):
    """A landmark finder whose mouth reading drifts with the face's position (as dlib's does
    with the pixels) gives the floor exactly that drift, measured where the driver's head is."""
    source = np.zeros((256, 256, 3), np.uint8)
    source[128:133, 128:133] = 255

    def drifting(frame: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(frame[..., 0] > 127)
        return face(mouth=12.0 + 0.5 * (xs.mean() - 130.0), dx=xs.mean() - 130.0)

    monkeypatch.setattr(v, "landmarks", drifting)
    shifts = np.linspace(-10, 10, 21)
    mouths = 10.0 + 6.0 * np.cos(np.arange(21) / 1.7)
    driver = np.stack([face(mouth=m, dx=s) for m, s in zip(mouths, shifts)])
    floor = v.still_mouth_floor(source, face(mouth=6.0), driver)
    expected = np.std(0.5 * shifts) / np.std(mouths)
    assert floor["std_ratio"] == pytest.approx(expected, rel=0.05)


def test_still_mouth_floor_steady_averages_the_reading_noise(monkeypatch):
    """dlib's reading of a still mouth jumps with where the face lands on the pixel grid; the
    floor's ``steady_std_ratio`` reads each moved source under the small shifts and averages:
    far less spread than the single readings', against the driver's averaged readings."""
    source = np.zeros((256, 256, 3), np.uint8)
    source[128:133, 128:133] = 255

    def grid_noise(frame: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(frame[..., 0] > 127)
        x = np.average(xs, weights=frame[ys, xs, 0])  # sub-pixel: the bilinear marker's centre
        return face(mouth=6.0 + 3.0 * math.sin(x * 37.0), dx=x - 130.0)

    monkeypatch.setattr(v, "landmarks", grid_noise)
    shifts = np.linspace(-10, 10, 25) + 0.37
    mouths = 10.0 + 6.0 * np.cos(np.arange(25) / 1.7)
    driver = np.stack([face(mouth=m, dx=s) for m, s in zip(mouths, shifts)])
    driving = np.zeros((25, 3))
    driving[:, 0] = mouths / EYE_DISTANCE  # the driver's averaged readings: its true mouth
    floor = v.still_mouth_floor(source, face(mouth=6.0), driver, driving)
    assert floor["std_ratio"] > 0.2
    assert floor["steady_std_ratio"] < 0.5 * floor["std_ratio"]
    assert "steady_std_ratio" not in v.still_mouth_floor(source, face(mouth=6.0), driver)


def test_conjugated_moves_another_face_by_the_drivers_head_motion():
    """Cross-reenactment's floor: the driver's head motion since its first frame, on a photo
    whose face is elsewhere and twice as large: a shift doubles, a turn about the driver's
    face turns the photo about its own."""
    first = face()[v.STABLE]
    photo = 2.0 * (first - 100.0) + 40.0
    shift = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0]])
    moved = v._conjugated(shift, first, photo)
    np.testing.assert_allclose(moved, [[1, 0, 10], [0, 1, -6]], atol=1e-9)
    a = math.radians(10)
    turn = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = first.mean(0)
    about = np.hstack([turn, (centre - turn @ centre)[:, None]])  # turns about the centroid
    moved = v._conjugated(about, first, photo)
    np.testing.assert_allclose(moved[:, :2], turn, atol=1e-12)
    np.testing.assert_allclose(moved[:, :2] @ photo.mean(0) + moved[:, 2], photo.mean(0),
                               atol=1e-9)


def test_self_agreement_measures_the_moved_driving_frames(monkeypatch):
    """The ceiling measures each driving frame moved by CEILING_MOVE: a finder that reads the
    expression off the pixels exactly agrees with itself (r 1), and it saw moved frames."""
    seen = []

    def reader(frame: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(frame[..., 2] > 127)
        seen.append((xs.mean(), ys.mean()))
        return face(mouth=float(frame[5, 5, 0]) / 10, lids=float(frame[5, 5, 1]) / 20)

    monkeypatch.setattr(v, "landmarks", reader)
    rng = np.random.default_rng(0)
    frames, driver = [], []
    for _ in range(12):
        frame = np.zeros((256, 256, 3), np.uint8)
        frame[..., 0], frame[..., 1] = rng.integers(60, 200), rng.integers(60, 200)
        frame[60:65, 60:65, 2] = 255  # a marker off the centre: the move shifts it
        frames.append(frame)
        driver.append(face(mouth=float(frame[5, 5, 0]) / 10, lids=float(frame[5, 5, 1]) / 20))
    ceiling = v.self_agreement(frames, np.stack(driver))
    assert ceiling["mouth"]["r"] == pytest.approx(1.0, abs=1e-3)
    assert ceiling["eyes"]["r"] == pytest.approx(1.0, abs=1e-3)
    assert ceiling["width"]["r"] is None  # the width never changes
    x, y = np.mean(seen, axis=0)
    assert math.hypot(x - 62, y - 62) > 4  # moved by the rotation, scale and shift


def test_reading_noise_of_a_reader_that_ignores_the_position(monkeypatch):
    """A finder that reads the mouth off the picture alone has no reading noise: ``within`` 0,
    and the steady spread is the frames' own."""

    def reader(frame: np.ndarray) -> np.ndarray:
        return face(mouth=float(frame[128, 128, 0]) / 10)

    monkeypatch.setattr(v, "landmarks", reader)
    values = np.array([60, 90, 120, 150, 90, 60], np.uint8)
    frames = [np.full((256, 256, 3), value, np.uint8) for value in values]
    mouths = 10.0 + 6.0 * np.sin(np.arange(6.0))
    driver = np.stack([face(mouth=m) for m in mouths])
    noise = v.reading_noise(frames, driver)
    assert noise["frames"] == 6
    assert noise["within"] == pytest.approx(0.0, abs=1e-6)
    assert noise["steady_std_ratio"] == pytest.approx(np.std(values / 10) / np.std(mouths),
                                                      rel=1e-3)


def test_reading_noise_of_a_reader_that_drifts_with_the_position(monkeypatch):
    """A finder whose mouth reading drifts with where the face lies (as dlib's does with its
    face box) reads a still frame differently under each shift: ``within`` is that drift's
    spread over the shifts, the steady spread of identical frames 0; a driver frame without a
    face is left out."""
    frame = np.zeros((256, 256, 3), np.uint8)
    frame[126:131, 126:131] = 255

    def drifting(image: np.ndarray) -> np.ndarray:
        weight = image[..., 0].astype(np.float64)
        x = float((weight.sum(0) * np.arange(image.shape[1])).sum() / weight.sum())
        return face(mouth=12.0 + 0.5 * (x - 128.0))

    monkeypatch.setattr(v, "landmarks", drifting)
    mouths = 10.0 + 6.0 * np.cos(np.arange(8) / 1.7)
    driver = np.stack([face(mouth=m) for m in mouths])
    driver[3] = np.nan
    noise = v.reading_noise([frame] * 8, driver)
    assert noise["frames"] == 7
    dx = np.array([0.0] + [s[0] for s in v.NOISE_SHIFTS])
    expected = 0.5 * np.std(dx, ddof=1) / np.std(np.delete(mouths, 3))
    assert noise["within"] == pytest.approx(expected, rel=1e-3)
    assert noise["steady_std_ratio"] == pytest.approx(0.0, abs=1e-6)


def test_steady_agreement_averages_the_reading_noise_out(monkeypatch):
    """A finder whose lid reading carries an error that changes with where the picture lies
    (zero on average over the shifted readings): single readings of a driver and a result that
    open their eyes alike follow each other poorly; averaged (``steady``) the follow is exact. A
    frame with no face in any reading is left out."""
    rng = np.random.default_rng(3)
    offsets = np.array([0.0] + [dx for dx, _ in v.NOISE_SHIFTS])
    error = rng.normal(0.0, 2.0, (2, 8, len(offsets)))  # (driver|result, frame, reading)
    error -= error.mean(2, keepdims=True)

    def reader(image: np.ndarray) -> np.ndarray:
        frame_id = round(float(image[..., 2].mean()))
        if frame_id == 0:
            return np.full((68, 2), np.nan)
        weight = image[..., 0].astype(np.float64)
        x = float((weight.sum(0) * np.arange(image.shape[1])).sum() / weight.sum()) - 128.0
        reading = int(np.argmin(np.abs(offsets - x)))
        side, i = divmod(frame_id - 1, 8)
        return face(lids=float(image[..., 1].mean()) / 10 + error[side, i, reading])

    monkeypatch.setattr(v, "landmarks", reader)
    lids = [60, 90, 120, 150, 90, 60, 100, 130]

    def frames(side: int) -> list[np.ndarray]:
        out = []
        for i, lid in enumerate(lids):
            frame = np.zeros((256, 256, 3), np.uint8)
            frame[..., 1], frame[..., 2] = lid, 1 + 8 * side + i
            frame[124:133, 124:133, 0] = 255
            out.append(frame)
        return out

    driving, results = frames(0), frames(1)
    results[4][..., 2] = 0  # no face
    steady = v.steady_agreement(driving, results)
    assert steady["eyes"]["frames"] == 7
    assert steady["eyes"]["r"] == pytest.approx(1.0, abs=1e-3)
    assert steady["eyes"]["std_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert steady["mouth"]["r"] is None  # the mouth never changes
    single = v.follow(v.expression_features(np.stack([reader(f) for f in driving]))[:, 2],
                      v.expression_features(np.stack([reader(f) for f in results]))[:, 2])
    assert single["r"] < 0.95
