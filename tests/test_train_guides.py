"""Landmark guidance: points follow the frames through the augmentations; targets; the loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fomm.config import AugmentationParams
from fomm.errors import ConfigError
from fomm.train.augment import flip, geometric, pair_motion, resize_and_crop
from fomm.train.losses import landmark_guidance
from fomm.train.regions import assign_guides, guide_points, guide_targets

AUG = AugmentationParams(horizontal_flip=True, time_flip=True, resize_ratio=(0.85, 1.15),
                         crop_size=(64, 64), pair_probability=1.0, pair_rotation=15,
                         pair_scale=0.12, pair_translation=0.08)


def _dots(points: np.ndarray, size: int = 64) -> np.ndarray:
    """(N, size, size, P) uint8: a Gaussian dot per channel at each point."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((len(points), size, size, points.shape[1]), np.uint8)
    for n, frame in enumerate(points):
        for p, (x, y) in enumerate(frame):
            out[n, :, :, p] = 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_points_move_with_the_frames(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    points = rng.uniform(20, 44, (2, 3, 2))
    frames = _dots(points)
    moved_frames, moved = geometric(frames, points, AUG, np.random.default_rng(seed))
    assert moved_frames.shape == frames.shape
    for n in range(2):
        for p in range(3):
            dot = moved_frames[n, :, :, p].astype(np.float64)
            y, x = np.unravel_index(np.argmax(dot), dot.shape)
            mass = dot[max(y - 4, 0):y + 5, max(x - 4, 0):x + 5]
            yy, xx = np.mgrid[max(y - 4, 0):y + 5, max(x - 4, 0):x + 5][:, :mass.shape[0],
                                                                             :mass.shape[1]]
            centre = ((xx * mass).sum() / mass.sum(), (yy * mass).sum() / mass.sum())
            assert np.allclose(centre, moved[n, p], atol=0.6), (seed, n, p, centre, moved[n, p])


def test_geometric_draws_as_the_separate_steps() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        expected = pair_motion(resize_and_crop(flip(frames, AUG, rng), AUG, rng), AUG, rng)
        got, none = geometric(frames, None, AUG, np.random.default_rng(seed))
        assert none is None
        np.testing.assert_array_equal(got, expected)


def test_targets_are_ordered_on_the_image_and_unknown_off_it() -> None:
    landmarks = np.full((1, 68, 2), 0.5, np.float32)
    landmarks[0, 36:42] = (0.3, 0.4)  # subject's right eye: image left
    landmarks[0, 42:48] = (0.7, 0.4)
    landmarks[0, 48], landmarks[0, 54] = (0.35, 0.7), (0.65, 0.7)
    pixels = guide_points(landmarks, (101, 101))
    targets = guide_targets(pixels, (101, 101))
    assert np.allclose(targets[0, 0], (-0.4, -0.2), atol=0.02)
    flipped = pixels.copy()
    flipped[..., 0] = 100 - flipped[..., 0]
    again = guide_targets(flipped, (101, 101))
    assert again[0, 0, 0] < again[0, 1, 0] and again[0, 2, 0] < again[0, 3, 0]
    assert np.allclose(again[0, :, 0], -targets[0, [1, 0, 3, 2, 4, 5], 0], atol=1e-6)
    pixels[0, 5] = (50, 150)  # below the frame
    assert np.isnan(guide_targets(pixels, (101, 101))[0, 5]).all()
    assert np.isnan(guide_targets(guide_points(np.full((1, 68, 2), np.nan), (9, 9)),
                                  (9, 9))).all()


def test_assignment_and_loss() -> None:
    distance = np.array([[0.1, 0.9, 0.2], [0.15, 0.8, 0.9]])
    assert assign_guides(distance) == (2, 0)
    value = torch.tensor([[[0.0, 0.0], [0.5, 0.5], [1.0, -1.0]]])
    targets = torch.tensor([[[1.0, -0.5], [float("nan"), 0.0]]])
    loss = landmark_guidance(value, targets, (2, 0))
    assert loss.item() == pytest.approx(0.5)  # only the known target counts
    nothing = torch.full((1, 2, 2), float("nan"))
    assert landmark_guidance(value, nothing, (2, 0)).item() == 0


def test_trainer_ties_keypoints_and_keeps_them_on_resume(tmp_path: Path) -> None:
    from test_train import options
    from test_train_regions import write_face_video

    from fomm.checkpoints.original import read_original
    from fomm.train import Trainer
    from fomm.train.data import FramesDataset

    for i in range(3):
        write_face_video(tmp_path / "data" / "train" / f"v{i}")
    with pytest.raises(ConfigError, match="only 5"):  # the tiny config has 5 keypoints
        Trainer(options(tmp_path, tmp_path / "data", landmark_weight=2.0))
    config = tmp_path / "seven.yaml"
    tiny = Path(options(tmp_path, tmp_path / "data").config).read_text()
    config.write_text(tiny.replace("num_kp: 5", "num_kp: 7"))
    trainer = Trainer(options(tmp_path, tmp_path / "data", landmark_weight=2.0, max_steps=2,
                              config=str(config)))
    result = trainer.fit()
    chosen = trainer.options.landmark_keypoints
    assert chosen is not None and len(set(chosen)) == 6
    saved = read_original(result.checkpoint)["fomm_options"]["landmark_keypoints"]
    assert tuple(saved) == tuple(chosen)
    batch = next(iter(torch.utils.data.DataLoader(
        FramesDataset(tmp_path / "data" / "train", (32, 32, 3), guides=True), batch_size=2)))
    assert batch.guides.shape == (2, 2, 6, 2)
    losses = trainer.step(batch)
    assert 0 < losses["landmark"] < 2.0 * 4  # L1 of two coordinates in [-1, 1]
    resumed = Trainer(options(tmp_path, tmp_path / "data", resume=str(result.checkpoint),
                              max_steps=3, config=None))
    assert tuple(resumed.options.landmark_keypoints) == tuple(chosen)


def test_lid_guides_follow_a_blink_and_centres_a_third_of_it() -> None:
    rng = np.random.default_rng(3)
    points = rng.uniform(0.3, 0.7, (2, 68, 2))
    points[1] = points[0]
    points[1, [37, 38, 43, 44], 1] += 0.03  # the upper lids come down by 3 % of the height
    centres = guide_points(points, (100, 100))
    lids = guide_points(points, (100, 100), eyes="lids")
    np.testing.assert_allclose(lids[1, :2, 1] - lids[0, :2, 1], 3.0)
    np.testing.assert_allclose(centres[1, :2, 1] - centres[0, :2, 1], 1.0)
    np.testing.assert_array_equal(lids[:, 2:], centres[:, 2:])
    with pytest.raises(ValueError, match="eyes"):
        guide_points(points, (100, 100), eyes="pupils")
