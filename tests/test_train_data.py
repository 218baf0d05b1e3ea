"""Training data: every dataset layout, pair sampling, augmentation, errors and skipped videos."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_clip

from fomm.config import AugmentationParams
from fomm.errors import ConfigError, FommError
from fomm.media.image import write_image
from fomm.train import data as D
from fomm.train.augment import (
    _hsv_to_rgb,
    _rgb_to_hsv,
    colour_jitter,
    flip,
    pair_motion,
    resize_and_crop,
)


def ramp_frames(n: int = 6, size: int = 16) -> list[np.ndarray]:
    """Frame i is a flat grey of value 20 * i + 10 (the index can be read back from a pixel)."""
    return [np.full((size, size, 3), 20 * i + 10, np.uint8) for i in range(n)]


def frame_index(t: torch.Tensor) -> int:
    return round((float(t[0, 0, 0]) * 255 - 10) / 20)


@pytest.fixture
def layouts(tmp_path: Path) -> Path:
    """ROOT/train with one video in each layout (frames folder, mp4, gif, png strip) + ROOT/test."""
    train = tmp_path / "train"
    frames = ramp_frames()
    for i, f in enumerate(frames):
        write_image(train / "folder" / f"{i:03d}.png", f)
    write_clip(train / "clip.mp4", frames=frames)
    write_image(train / "strip.png", np.concatenate(frames, axis=1))
    from PIL import Image

    Image.fromarray(frames[0]).save(train / "anim.gif", save_all=True,
                                    append_images=[Image.fromarray(f) for f in frames[1:]])
    (train / "notes.txt").write_text("not a video")
    (train / ".hidden").mkdir()
    (tmp_path / "test").mkdir()
    write_image(tmp_path / "test" / "strip.png", np.concatenate(frames, axis=1))
    return tmp_path


def test_every_layout_is_found_and_read(layouts: Path) -> None:
    items = D.list_videos(layouts / "train", (16, 16, 3))
    kinds = {item.name: item.kind for item in items}
    assert kinds == {"anim.gif": "file", "clip.mp4": "file", "folder": "frames",
                     "strip.png": "strip"}
    for item in items:
        assert D.count_frames(item) == 6, item.name
        frames = D.read_frames(item, [0, 5], (16, 16))
        assert frames.shape == (2, 16, 16, 3) and frames.dtype == np.uint8
        assert abs(int(frames[0, 8, 8, 0]) - 10) <= 3 and abs(int(frames[1, 8, 8, 0]) - 110) <= 3
        assert len(list(D.iter_video(item, (16, 16)))) == 6


def test_frames_are_resized_to_frame_shape(layouts: Path) -> None:
    ds = D.FramesDataset(layouts / "train", (8, 8, 3))
    pair = ds[0]
    assert pair.source.shape == (3, 8, 8) and pair.driving.shape == (3, 8, 8)
    assert pair.source.dtype == torch.float32 and float(pair.source.min()) >= 0


def test_strip_of_another_frame_size_is_cut_square_and_resized(tmp_path: Path) -> None:
    write_image(tmp_path / "big.png", np.concatenate(ramp_frames(size=32), axis=1))
    (item,) = D.list_videos(tmp_path, (16, 16, 3))
    assert item.frame_width == 32 and D.count_frames(item) == 6
    assert D.read_frames(item, [2], (16, 16)).shape == (1, 16, 16, 3)


def test_pairs_are_two_sorted_frames_of_one_video(layouts: Path) -> None:
    ds = D.FramesDataset(layouts / "train", (16, 16, 3), num_repeats=3)
    assert len(ds) == 4 * 3
    for index in range(len(ds)):
        pair = ds[(1, index)]
        assert frame_index(pair.source) <= frame_index(pair.driving)  # sorted, as the original
        assert pair.name == ds.groups[index % 4][0].name


def test_items_are_reproducible_from_seed_epoch_and_index(layouts: Path) -> None:
    aug = AugmentationParams(horizontal_flip=True, time_flip=True, brightness=0.1, hue=0.1)
    a = D.FramesDataset(layouts / "train", (16, 16, 3), augmentation=aug, seed=3)
    b = D.FramesDataset(layouts / "train", (16, 16, 3), augmentation=aug, seed=3)
    assert torch.equal(a[(2, 5)].source, b[(2, 5)].source)
    differs = [not torch.equal(a[(0, i)].driving, a[(1, i)].driving) for i in range(4)]
    assert any(differs)


def test_id_sampling_groups_videos_by_identity(tmp_path: Path) -> None:
    frames = ramp_frames(3)
    for name in ("id1#a#001", "id1#b#002", "id2#c#001"):
        write_image(tmp_path / f"{name}.png", np.concatenate(frames, axis=1))
    ds = D.FramesDataset(tmp_path, (16, 16, 3), id_sampling=True, num_repeats=2)
    assert [len(g) for g in ds.groups] == [2, 1] and len(ds) == 4
    names = {ds[(0, i)].name for i in range(0, 40, 2)}  # even indices: identity id1
    assert names == {"id1#a#001.png", "id1#b#002.png"}


def test_split_folder(layouts: Path, tmp_path: Path) -> None:
    assert D.split_folder(layouts, "train") == layouts / "train"
    assert D.split_folder(layouts / "test", "test") == layouts / "test"
    with pytest.raises(FommError, match="not found"):
        D.split_folder(tmp_path / "missing", "train")


def test_empty_dataset_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "readme.md").write_text("x")
    with pytest.raises(FommError, match=r"train: no videos found"):
        D.FramesDataset(D.split_folder(tmp_path, "train"))


def test_malformed_strip_names_the_file_and_the_problem(tmp_path: Path) -> None:
    write_image(tmp_path / "bad.png", np.zeros((16, 40, 3), np.uint8))
    with pytest.raises(FommError, match=r"bad\.png: a 40x16 strip cannot be cut into 16x16"):
        D.list_videos(tmp_path, (16, 16, 3))


def test_unreadable_video_is_reported_once_and_skipped(layouts: Path, caplog) -> None:
    bad = layouts / "train" / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    (layouts / "train" / "empty-folder").mkdir()
    ds = D.FramesDataset(layouts / "train", (16, 16, 3), num_repeats=2)
    broken = [i for i, g in enumerate(ds.groups) if g[0].name in ("broken.mp4", "empty-folder")]
    with caplog.at_level(logging.WARNING, logger="fomm.train"):
        for epoch in range(3):
            for i in broken:
                pair = ds[(epoch, i)]
                assert pair.name not in ("broken.mp4", "empty-folder")
    messages = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert sum("broken.mp4" in m for m in messages) == 1
    assert sum("empty-folder" in m for m in messages) == 1


def test_a_batch_through_the_dataloader(layouts: Path) -> None:
    ds = D.FramesDataset(layouts / "train", (16, 16, 3), num_repeats=2)
    sampler = D.EpochSampler(len(ds), seed=1)
    loader = D.make_loader(ds, 3, sampler, workers=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 8 // 3
    assert batches[0].source.shape == (3, 3, 16, 16) and len(batches[0].name) == 3
    with pytest.raises(FommError, match="fewer than the batch size 9"):
        D.make_loader(ds, 9, D.EpochSampler(len(ds)), workers=0)


def test_sampler_is_a_seeded_permutation_split_over_ranks_and_resumable() -> None:
    full = D.EpochSampler(10, seed=5)
    full.set_epoch(3)
    order = [i for _, i in full]
    assert sorted(order) == list(range(10))
    full.set_epoch(3, skip=4)
    assert [i for _, i in full] == order[4:] and len(full) == 6
    ranks = [D.EpochSampler(10, rank=r, world_size=3, seed=5) for r in range(3)]
    for s in ranks:
        s.set_epoch(3)
    parts = [[i for _, i in s] for s in ranks]
    assert all(len(p) == 4 for p in parts)
    assert set(sum(parts, [])) == set(range(10))
    full.set_epoch(4)
    assert [i for _, i in full] != order


def test_read_pairs(tmp_path: Path) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_text("distance,source,driving,frame\n0,a.mp4,b.mp4,0\n1,a.mp4,zzz.mp4,0\n")
    assert D.read_pairs(csv, ["a.mp4", "b.mp4"]) == [("a.mp4", "b.mp4")]
    (tmp_path / "bad.csv").write_text("src,drv\n")
    with pytest.raises(FommError, match="no 'source' column"):
        D.read_pairs(tmp_path / "bad.csv", [])


def test_flip_follows_the_original_random_flip() -> None:
    frames = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)
    params = AugmentationParams(horizontal_flip=True, time_flip=True)
    seen = set()
    for seed in range(40):
        out = flip(frames, params, np.random.default_rng(seed))
        if np.array_equal(out, frames[::-1]):
            seen.add("time")
        elif np.array_equal(out, frames[:, :, ::-1]):
            seen.add("horizontal")
        else:
            assert np.array_equal(out, frames)
            seen.add("none")
    assert seen == {"time", "horizontal", "none"}
    assert flip(frames, AugmentationParams(), np.random.default_rng(0)) is frames


def test_resize_and_crop_zooms_both_frames_alike_and_keeps_the_size() -> None:
    yy, xx = np.mgrid[:32, :32]
    frame = np.stack([xx * 8, yy * 8, np.zeros_like(xx)], -1).astype(np.uint8)  # ramps
    frames = np.stack([frame, frame])
    params = AugmentationParams(resize_ratio=(0.8, 1.25), crop_size=(32, 32))
    zoomed = {"in": False, "out": False}
    for seed in range(30):
        out = resize_and_crop(frames, params, np.random.default_rng(seed))
        assert out.shape == frames.shape and np.array_equal(out[0], out[1])
        slope = np.diff(out[0, 16, 8:24, 0].astype(float)).mean()  # 8 per pixel unscaled
        zoomed["in" if slope < 8 else "out"] = True
    assert all(zoomed.values())
    # shrunk below the crop: edge-padded, never black
    small = resize_and_crop(frames, AugmentationParams(resize_ratio=(0.5, 0.5), crop_size=(32, 32)),
                            np.random.default_rng(0))
    assert small.shape == frames.shape and small[0, 0, 0, 0] == small[0, 8, 8, 0]
    assert resize_and_crop(frames, AugmentationParams(), np.random.default_rng(0)) is frames


def test_resize_without_a_crop_back_to_the_frame_shape_is_refused(layouts: Path) -> None:
    with pytest.raises(ConfigError, match="needs crop_param.size"):
        D.FramesDataset(layouts / "train", (16, 16, 3),
                        augmentation=AugmentationParams(resize_ratio=(0.9, 1.1)))
    with pytest.raises(ConfigError, match="but frames are"):
        D.FramesDataset(layouts / "train", (16, 16, 3),
                        augmentation=AugmentationParams(crop_size=(8, 8)))


def test_pair_motion_moves_only_the_driving_frame() -> None:
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[12:20, 12:20] = 255  # a centred square
    frames = np.stack([frame, frame])
    params = AugmentationParams(pair_translation=0.25, pair_probability=1.0)
    centres = []
    for seed in range(10):
        out = pair_motion(frames, params, np.random.default_rng(seed))
        assert np.array_equal(out[0], frame) and out.shape == frames.shape
        ys, xs = np.nonzero(out[1, :, :, 0] > 127)
        centres.append((xs.mean(), ys.mean()))
    assert np.ptp(np.array(centres), axis=0).min() > 4  # moved, by different amounts
    rotated = pair_motion(frames, AugmentationParams(pair_rotation=45, pair_probability=1.0),
                          np.random.default_rng(0))
    assert not np.array_equal(rotated[1], frame)
    off = AugmentationParams(pair_rotation=45, pair_probability=0.0)
    assert pair_motion(frames, off, np.random.default_rng(0)) is frames


def test_colour_jitter_keeps_the_range_and_is_identity_without_factors() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(colour_jitter(x, AugmentationParams(), np.random.default_rng(0)), x)
    params = AugmentationParams(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.5)
    y = colour_jitter(x, params, np.random.default_rng(1))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert not torch.allclose(x, y)


def test_hsv_round_trip_and_hue_rotation() -> None:
    x = torch.rand(3, 3, 5, 5)
    assert torch.allclose(_hsv_to_rgb(_rgb_to_hsv(x)), x, atol=1e-5)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    hsv = _rgb_to_hsv(red)
    hsv[:, 0] = (hsv[:, 0] + 1 / 3) % 1.0  # a third of the circle: red → green
    assert torch.allclose(_hsv_to_rgb(hsv).flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_cached_videos_give_the_same_items_as_seeking(layouts: Path) -> None:
    cached = D.FramesDataset(layouts / "train", (16, 16, 3), num_repeats=2)
    seeking = D.FramesDataset(layouts / "train", (16, 16, 3), num_repeats=2, cache_mb=0)
    for i in range(len(cached)):
        a, b = cached[(0, i)], seeking[(0, i)]
        assert torch.equal(a.source, b.source) and torch.equal(a.driving, b.driving)
    assert {p.name for p in cached._cache} == {"anim.gif", "clip.mp4", "strip.png"}
    assert not seeking._cache
