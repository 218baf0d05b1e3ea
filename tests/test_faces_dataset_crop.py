"""``fomm crop``: face tracks in long videos → square clips + CSV; cuts, several people, filters."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import astronaut, cameraman, group_photo, portraits, wide_clip

from fomm.faces.dataset_crop import CSV_FIELDS, crop_videos, find_tracks
from fomm.faces.detect import detect_faces
from fomm.media.video import VideoWriter, iter_frames


def test_a_wide_clip_gives_one_clip_with_the_face_centred(tmp_path: Path) -> None:
    video = wide_clip(tmp_path / "wide.mp4", n_frames=60, step=0)  # 640×360, one person
    tracks = crop_videos([video], tmp_path, size=256, max_frames=60, detect_every=3)
    assert len(tracks) == 1
    track = tracks[0]
    assert (track.start, track.end) == (0, 60)
    clip = list(iter_frames(tmp_path / str(track.file)))
    assert len(clip) == 60 and clip[0].shape == (256, 256, 3)
    for frame in clip[::20]:
        faces = detect_faces(frame)
        assert len(faces) == 1
        cx, cy = faces[0].center
        assert abs(cx - 128) < 0.1 * 256 and abs(cy - 128) < 0.12 * 256
        assert 0.45 < faces[0].height / 256 < 0.8  # framed like the training data
    with open(tmp_path / "tracks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == CSV_FIELDS and len(rows) == 1
    assert rows[0]["video"] == str(video) and rows[0]["file"] == track.file
    x0, y0, x1, y1 = (float(rows[0][k]) for k in ("x0", "y0", "x1", "y1"))
    assert x1 - x0 == pytest.approx(y1 - y0, abs=0.02) and 0 <= x0 < x1 <= 640


def _canvas(image: np.ndarray, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    h, w = image.shape[:2]
    scale = min(size[0] / w, size[1] / h)
    small = cv2.resize(image, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    out = np.full((size[1], size[0], 3), 60, np.uint8)
    out[: small.shape[0], : small.shape[1]] = small
    return out


def _face_at(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """A 640×480 frame with ``image`` moved and scaled so that its face fills ``box``."""
    x0, y0, x1, y1 = detect_faces(image)[0].box
    s = (box[3] - box[1]) / (y1 - y0)
    affine = np.float32([[s, 0, box[0] - s * x0], [0, s, box[1] - s * y0]])
    return cv2.warpAffine(image, affine, (640, 480), borderValue=(60, 60, 60))


def test_scene_cut_and_several_people_make_several_tracks() -> None:
    one = _canvas(portraits()["carphone-x2"])
    group = _canvas(group_photo())  # five faces
    # two other people in about the same place (face box IoU ~0.7+): only the cut splits them
    before, after = (_face_at(image, (260, 120, 360, 240)) for image in (astronaut(), cameraman()))
    frames = [one] * 12 + [group] * 12 + [before] * 5 + [after] * 7
    tracks, shape = find_tracks(iter(frames), "synthetic", detect_every=4, min_face=30)
    assert shape == (480, 640, 3)
    spans = sorted((t.start, t.end) for t in tracks)
    # each cut ends the tracks before it; five people in the group; the last cut is found at
    # frame 29 (not a detection frame) and splits two overlapping faces
    assert spans == [(0, 12)] + [(12, 24)] * 5 + [(24, 29), (29, 36)]


def test_short_small_and_blurry_tracks_are_dropped(tmp_path: Path) -> None:
    face = cv2.resize(astronaut()[20:240, 115:335], (192, 192), interpolation=cv2.INTER_AREA)
    blurry = cv2.GaussianBlur(face, (0, 0), 4)
    video = tmp_path / "blurry.mp4"
    with VideoWriter(video, fps=25) as writer:
        for _ in range(40):
            writer.write(blurry)
    assert crop_videos([video], tmp_path / "out", min_track_len=10, detect_every=5) == []
    kept = crop_videos(
        [video], tmp_path / "out2", min_track_len=10, min_sharpness=0, detect_every=5
    )
    assert len(kept) == 1 and kept[0].sharpness < 30 and len(kept[0]) == 40
    for too_strict in ({"min_track_len": 41}, {"min_face": 300}):
        out = tmp_path / f"out{len(too_strict)}{next(iter(too_strict))}"
        assert crop_videos([video], out, min_sharpness=0, detect_every=5, **too_strict) == []
    with open(tmp_path / "out" / "tracks.csv") as f:
        assert f.read().strip() == ",".join(CSV_FIELDS)  # header only


def test_crop_subcommand_registers() -> None:
    from fomm.cli.faces import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["crop", "a.mp4", "b.mp4", "-o", "out", "--size", "128"])
    assert args.videos == ["a.mp4", "b.mp4"] and args.output == "out" and args.size == 128
    assert args.func.__name__ == "cmd_crop"
