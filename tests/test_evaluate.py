"""Evaluation: the reconstruction protocol, its files, keypoint drawing and the keypoints video."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_clip
from test_train import make_dataset, one_thread, shape_frames, tiny_config  # noqa: F401

from fomm.media.image import to_tensor, write_image
from fomm.media.video import count_frames, iter_frames, probe
from fomm.train import Trainer, TrainOptions
from fomm.train import evaluate as E


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    """A seeded random tiny model saved by the trainer (config embedded) and a dataset."""
    root = tmp_path_factory.mktemp("eval")
    data = make_dataset(root / "data", train=3)
    trainer = Trainer(TrainOptions(config=tiny_config(root), data=str(data), out=str(root / "run"),
                                   tensorboard=False, progress=False))
    return trainer.save(root / "run" / "model.pth.tar"), data


def test_keypoint_colours_follow_gist_rainbow() -> None:
    colours = E.keypoint_colours(10)
    assert colours.shape == (10, 3) and colours.dtype == np.uint8
    assert tuple(colours[0]) == (255, 0, 41)  # gist_rainbow(0) = (1, 0, 0.16)
    assert len({tuple(c) for c in colours}) == 10


def test_draw_keypoints_puts_each_colour_at_its_keypoint() -> None:
    frame = np.zeros((64, 128, 3), np.uint8)
    kp = np.array([[-0.5, -0.5], [0.5, 0.5], [np.nan, 0.0]])
    out = E.draw_keypoints(frame, kp, radius=3)
    colours = E.keypoint_colours(3)
    assert tuple(out[16, 32]) == tuple(colours[0])  # x = 0.25 * 128, y = 0.25 * 64
    assert tuple(out[48, 96]) == tuple(colours[1])
    assert frame.sum() == 0  # drawn on a copy
    assert 2 * 25 < (out.sum(axis=2) > 0).sum() < 2 * 70  # two discs (anti-aliased); no NaN one


def test_reconstruct_writes_scores_summary_and_side_by_side_videos(model, tmp_path) -> None:
    checkpoint, data = model
    report = E.reconstruct(E.ReconstructOptions(checkpoint=str(checkpoint), data=str(data),
                                                out=str(tmp_path / "rec"), face_metrics=False,
                                                progress=False))
    assert [s.name for s in report.videos] == ["v100.mp4", "v101.png"]
    assert all(s.frames == 10 for s in report.videos)
    assert report.face_metrics.startswith("skipped") and report.akd is None
    # the protocol by hand: every frame from the first, absolute keypoints
    models, _ = E.load_for_evaluation(checkpoint)
    frames = to_tensor(np.stack(shape_frames(101)))
    with torch.no_grad():
        kp_source = models.kp_detector(frames[:1])
        losses = []
        for t in range(10):
            out = models.generator(frames[:1], models.kp_detector(frames[t:t + 1]), kp_source)
            losses.append(float((out.prediction - frames[t:t + 1]).abs().mean()))
    assert report.videos[1].l1 == pytest.approx(np.mean(losses), abs=1e-5)
    assert report.l1 == pytest.approx(np.mean([s.l1 for s in report.videos]), abs=1e-6)
    rows = list(csv.DictReader((tmp_path / "rec" / "scores.csv").read_text().splitlines()))
    assert [r["video"] for r in rows] == ["v100.mp4", "v101.png"]
    summary = json.loads((tmp_path / "rec" / "summary.json").read_text())
    assert summary["l1"] == pytest.approx(report.l1)
    video = tmp_path / "rec" / "videos" / "v101.mp4"
    info = probe(video)
    assert (info.width, info.height) == (96, 32) and count_frames(video) == 10


def test_face_metrics_are_reported_skipped_when_unavailable(model, tmp_path, monkeypatch) -> None:
    checkpoint, data = model
    monkeypatch.setattr(E, "_face_metrics", lambda: (None, "the metrics extra is missing"))
    report = E.reconstruct(E.ReconstructOptions(checkpoint=str(checkpoint), data=str(data),
                                                out=str(tmp_path), videos=False,
                                                progress=False, max_videos=1))
    assert report.face_metrics == "skipped: the metrics extra is missing"
    assert len(report.videos) == 1


def test_reconstruct_an_official_checkpoint_with_its_config(tmp_path, original_fixture) -> None:
    test = tmp_path / "test"
    test.mkdir()
    write_image(test / "a.png", np.concatenate(shape_frames(0, 3, 128), axis=1))
    report = E.reconstruct(E.ReconstructOptions(
        checkpoint=str(original_fixture.checkpoint), config=str(original_fixture.config),
        data=str(tmp_path), size=128, out=str(tmp_path / "rec"), videos=False,
        face_metrics=False, progress=False))
    assert report.videos[0].frames == 3 and 0 < report.l1 < 1


def test_keypoints_video_draws_on_full_size_frames(model, tmp_path) -> None:
    checkpoint, _ = model
    frames = [np.full((48, 64, 3), 40, np.uint8)] * 5
    clip = write_clip(tmp_path / "in.mp4", frames=frames)
    out = E.keypoints_video(E.KeypointsOptions(video=str(clip), checkpoint=str(checkpoint),
                                               output=str(tmp_path / "kp.mp4"), radius=3,
                                               progress=False))
    result = list(iter_frames(out))
    assert len(result) == 5 and result[0].shape == (48, 64, 3)
    assert int(np.abs(result[0].astype(int) - 40).max()) > 60  # coloured discs were drawn


def test_cli_reconstruct_and_keypoints(model, tmp_path, capsys) -> None:
    from fomm.cli.main import main

    checkpoint, data = model
    main(["reconstruct", "-c", str(checkpoint), "--data", str(data), "--out",
          str(tmp_path / "rec"), "--no-videos", "--no-metrics", "-q"])
    text = capsys.readouterr().out
    assert "v100.mp4" in text and "L1 " in text and "skipped" in text
    main(["keypoints", str(data / "test" / "v100.mp4"), "-c", str(checkpoint), "-o",
          str(tmp_path / "kp.mp4"), "-q"])
    assert (tmp_path / "kp.mp4").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["reconstruct", "-c", str(tmp_path / "missing.pth.tar"), "--data", str(data)])
    assert exit_info.value.code == 2
