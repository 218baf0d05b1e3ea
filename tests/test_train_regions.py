"""Eyes-and-mouth weights (``--region-weight``): landmark files, maps, augmentation, the loss."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fomm.config import AugmentationParams
from fomm.errors import FommError
from fomm.media.image import write_image
from fomm.train import losses as L
from fomm.train import regions as R
from fomm.train.data import FramesDataset, Video

ROOT = Path(__file__).resolve().parents[1]


def face_points(cx: float = 0.5, cy: float = 0.5, spread: float = 0.2) -> np.ndarray:
    """68 normalised points: eyes above the centre, mouth below, the rest on a ring."""
    rng = np.random.default_rng(0)
    pts = np.zeros((68, 2), np.float32)
    angles = np.linspace(0, 2 * np.pi, 68)
    pts[:] = np.stack([cx + 0.4 * np.cos(angles), cy + 0.4 * np.sin(angles)], 1)
    pts[36:42] = (cx - spread / 2, cy - 0.1) + rng.normal(0, 0.01, (6, 2))
    pts[42:48] = (cx + spread / 2, cy - 0.1) + rng.normal(0, 0.01, (6, 2))
    pts[48:68] = (cx, cy + 0.15) + rng.normal(0, 0.02, (20, 2))
    return pts


def test_region_map_peaks_on_eyes_and_mouth_only() -> None:
    pts = face_points()
    heat = R.region_map(pts, (64, 48))
    assert heat.shape == (48, 64) and heat.dtype == np.uint8
    mouth = (pts[48:68].mean(0) * (64, 48)).astype(int)
    assert heat[mouth[1], mouth[0]] > 200
    jaw = (pts[0] * (64, 48)).astype(int).clip(0, [63, 47])
    assert heat[jaw[1], jaw[0]] == 0  # the face outline is not weighted
    assert heat.mean() < 0.25 * 255  # a small part of the frame


def test_region_map_is_resolution_independent_and_empty_without_a_face() -> None:
    pts = face_points(0.4, 0.6)
    small = R.region_map(pts, (32, 32)).astype(float)
    big = R.region_map(pts, (128, 128)).astype(float)
    shrunk = big.reshape(32, 4, 32, 4).mean((1, 3))
    assert np.abs(small - shrunk).mean() < 6
    assert not R.region_map(np.full((68, 2), np.nan, np.float32), (32, 32)).any()


def write_face_video(folder: Path, n: int = 4, size: int = 32,
                     points: np.ndarray | None = None) -> np.ndarray:
    """Frames that draw their own region map in every channel, and its landmark file."""
    if points is None:
        points = np.stack([face_points(0.4 + 0.05 * t, 0.5) for t in range(n)])
    for t in range(len(points)):
        heat = R.region_map(points[t], (size, size))
        write_image(folder / f"{t:03d}.png", np.repeat(heat[..., None], 3, axis=2))
    np.save(folder / "landmarks.npy", points)
    return points


def test_dataset_weight_goes_through_the_same_augmentation_as_the_frame(tmp_path: Path) -> None:
    write_face_video(tmp_path / "train" / "v0")
    aug = AugmentationParams(horizontal_flip=True, time_flip=True, resize_ratio=(0.8, 1.2),
                             crop_size=(32, 32), pair_rotation=20, pair_scale=0.1,
                             pair_translation=0.1, pair_probability=1.0)
    ds = FramesDataset(tmp_path / "train", (32, 32, 3), num_repeats=8, augmentation=aug,
                       regions=True)
    for i in range(len(ds)):
        pair = ds[i]
        assert pair.weight.shape == (1, 32, 32)
        # the frame is its own map: after flips, zoom, crop and pair motion they still agree
        assert (pair.driving[0] - pair.weight[0]).abs().max() < 0.02
    plain = FramesDataset(tmp_path / "train", (32, 32, 3))
    assert plain[0].weight.numel() == 0


def test_missing_or_wrong_landmarks_are_clear_errors(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "v0"
    write_face_video(folder)
    (folder / "landmarks.npy").unlink()
    with pytest.raises(FommError, match="face_landmarks.py"):
        FramesDataset(tmp_path / "train", (32, 32, 3), regions=True)
    np.save(folder / "landmarks.npy", np.zeros((3, 68, 2), np.float32))  # 4 frames
    with pytest.raises(FommError, match=r"expected \(4, 68, 2\)"):
        FramesDataset(tmp_path / "train", (32, 32, 3), regions=True)
    video = tmp_path / "clip.mp4"
    assert R.landmarks_path(Video(video, "file")) == tmp_path / "clip.mp4.landmarks.npy"


def test_region_l1_is_the_mean_error_under_the_map() -> None:
    pyramid = L.ImagePyramid([1, 0.5])
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    px, py = pyramid(x), pyramid(y)
    ones = torch.ones(2, 1, 16, 16)
    plain = sum((px[k] - py[k]).abs().mean() for k in px)
    assert torch.allclose(L.region_l1(px, py, ones), plain, atol=1e-5)
    assert L.region_l1(px, py, torch.zeros(2, 1, 16, 16)) == 0
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, :8] = 1  # errors outside the map do not count
    y2 = y.clone()
    y2[:, :, 8:] += 5
    full = L.region_l1({"prediction_1": x}, {"prediction_1": y2}, mask)
    assert torch.allclose(full, (x - y)[:, :, :8].abs().mean(), atol=1e-5)


def test_trainer_adds_the_region_term(tmp_path: Path) -> None:
    from test_train import options

    from fomm.train import Trainer

    for i in range(3):
        write_face_video(tmp_path / "data" / "train" / f"v{i}")
    trainer = Trainer(options(tmp_path, tmp_path / "data", region_weight=3.0, max_steps=2))
    result = trainer.fit()
    assert result.step == 2
    batch = next(iter(torch.utils.data.DataLoader(
        FramesDataset(tmp_path / "data" / "train", (32, 32, 3), regions=True), batch_size=2)))
    losses = trainer.step(batch)
    assert 0 < losses["region"] < 3.0 * 3 * 1.0  # three pyramid levels, errors below 1


@pytest.mark.skipif(not __import__("fomm.faces.landmarks", fromlist=["available"]).available(),
                    reason="needs the metrics extra (dlib)")
def test_landmark_script_on_a_portrait(tmp_path: Path) -> None:
    from skimage import data as skdata

    portrait = skdata.astronaut()[:300, 100:400]
    folder = tmp_path / "train" / "astro"
    for t in range(2):
        write_image(folder / f"{t:03d}.png", portrait)
    blank = tmp_path / "test" / "blank"
    write_image(blank / "000.png", np.full((64, 64, 3), 128, np.uint8))
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "face_landmarks.py"),
                          str(tmp_path)], capture_output=True, text=True, check=True)
    assert "astro: 2 frames, face in 100%" in run.stdout
    points = np.load(folder / "landmarks.npy")
    assert points.shape == (2, 68, 2) and np.isfinite(points).all()
    mouth = points[0, 48:68].mean(0) * (300, 300)
    eyes = points[0, 36:48].mean(0) * (300, 300)
    assert mouth[1] > eyes[1] + 20  # the mouth is below the eyes
    assert np.isnan(np.load(blank / "landmarks.npy")).all()


def test_expression_features_measure_mouth_and_eyes() -> None:
    shut, wide = face_points(), face_points()
    wide[[65, 66, 67]] += (0, 0.1)  # lower inner lip down
    f = R.expression_features(np.stack([shut, wide, np.full((68, 2), np.nan, np.float32)]))
    assert f.shape == (3, 3)
    assert f[1, 0] > f[0, 0] + 0.25  # about 0.1 over an eye distance of 0.2
    assert np.allclose(f[1, 1:], f[0, 1:])
    assert np.isnan(f[2]).all()


def test_expressive_pair_is_the_most_different_candidate() -> None:
    features = np.zeros((50, 3), np.float32)
    features[17] = (1, 0, 0)  # the only frame with an open mouth
    rng = np.random.default_rng(0)
    picks = [R.expressive_pair(features, rng, candidates=256) for _ in range(20)]
    assert all(17 in p and p[0] <= p[1] for p in picks)
    none = np.full((5, 3), np.nan, np.float32)
    assert R.expressive_pair(none, rng).shape == (2,)


def test_dataset_draws_expressive_pairs_from_the_landmarks(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "v0"
    points = np.stack([face_points()] * 12)
    points[5, [65, 66, 67]] += (0, 0.1)  # frame 5 alone opens the mouth
    write_face_video(folder, points=points)
    ds = FramesDataset(tmp_path / "train", (32, 32, 3), num_repeats=40, expressive_pairs=1.0)
    open_frame = np.repeat(R.region_map(points[5], (32, 32))[None], 3, 0) / 255
    hits = sum(any(torch.allclose(t, torch.from_numpy(open_frame).float(), atol=0.02)
                   for t in (ds[i].source, ds[i].driving)) for i in range(len(ds)))
    # one of 8 random pairs includes frame 5 in 75 % of the draws, and then it wins; a random
    # pair includes it in 16 %
    assert hits >= 20, hits
    assert ds[0].weight.numel() == 0  # maps only with regions=True


def test_balanced_features_count_a_blink_as_much_as_speech() -> None:
    from fomm.train.regions import balance_features, expressive_pair

    rng = np.random.default_rng(0)
    # two clips: mouth opening varies 10x more than eye opening; one clip has a face-less frame
    a = np.stack([rng.normal(0.3, 0.10, 50), np.full(50, 0.8), rng.normal(0.3, 0.01, 50)], 1)
    b = a[::-1].copy()
    b[4] = np.nan
    balanced = balance_features([a.astype(np.float32), b.astype(np.float32)])
    spread = np.nanstd(np.concatenate(balanced), axis=0)
    np.testing.assert_allclose(spread[[0, 2]], 1.0, rtol=1e-4)
    np.testing.assert_array_equal(balanced[0][:, 1], a[:, 1].astype(np.float32))  # no spread
    # a pair that differs at the eyes now wins over one that differs a little more at the mouth
    clip = np.array([[0.3, 0.8, 0.3], [0.4, 0.8, 0.3], [0.34, 0.8, 0.28]], np.float32)
    rescaled = balance_features([a.astype(np.float32), clip])[1]
    pairs = {tuple(expressive_pair(rescaled, np.random.default_rng(s), candidates=64))
             for s in range(5)}
    assert pairs == {(1, 2)}
    raw = {tuple(expressive_pair(clip, np.random.default_rng(s), candidates=64)) for s in range(5)}
    assert raw == {(0, 1)}
