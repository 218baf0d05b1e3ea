"""``fomm crop``: cut face tracks out of long videos into square clips for training, plus a CSV.

Two passes per video, both streaming. The first detects faces (every ``detect_every`` frames) and
links them into tracks: a detection continues the track whose last box overlaps it most (IoU at
least ``min_iou``); a track that finds no continuation for ``patience`` detections ends; a scene
cut (a jump in a 32×32 thumbnail's colours) ends every track. Tracks shorter than
``min_track_len`` frames, with a median face smaller than ``min_face`` pixels or blurrier than
``min_sharpness`` are dropped. Like the VoxCeleb preparation of the original, each track gets one
fixed box (the head moves inside the clip, the camera does not): a square around the union of its
face boxes, framed as :func:`fomm.faces.crop.square_box` frames one face. The second pass writes
the clips.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from fomm.faces.crop import MARGIN, SHIFT_Y, crop, face_size, fit_square
from fomm.faces.detect import Box, Face, detect_faces
from fomm.faces.track import iou
from fomm.media.video import VideoWriter, iter_frames, probe

CSV_NAME = "tracks.csv"
CSV_FIELDS = [
    "video",
    "track",
    "start",
    "end",
    "x0",
    "y0",
    "x1",
    "y1",
    "face_size",
    "sharpness",
    "file",
]


@dataclass(frozen=True)
class Track:
    """One face track: frames ``start`` to ``end`` (exclusive) of ``video``, cropped at ``box``."""

    video: str
    index: int  # track number within its video
    start: int
    end: int
    box: Box  # the square crop box, in video pixels, fixed for the whole clip
    face_size: float  # median face box side, pixels
    sharpness: float  # median variance of the Laplacian of the face at 128×128
    file: str | None = None  # the written clip, relative to the output folder

    def __len__(self) -> int:
        return self.end - self.start


@dataclass
class _Open:
    """A track being built during the first pass."""

    frames: list[int] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)
    misses: int = 0  # detection rounds in a row without a continuation


def sharpness(frame: np.ndarray, face: Face) -> float:
    """Variance of the Laplacian of the face, resampled to 128×128 grey (scale-independent).

    Sharp video faces measure about 90-500 on this scale; blurred by 1/60 of their height, 5-25.
    """
    x0, y0, x1, y1 = face.box
    half = face_size(face.box) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    grey = cv2.cvtColor(
        crop(frame, (cx - half, cy - half, cx + half, cy + half), 128), cv2.COLOR_RGB2GRAY
    )
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def find_tracks(
    frames: Iterable[np.ndarray],
    video: str = "",
    detect_every: int = 1,
    min_iou: float = 0.3,
    cut_threshold: float = 28.0,
    min_face: float = 64.0,
    patience: int = 2,
) -> tuple[list[Track], tuple[int, ...]]:
    """First pass: every face track in a stream of frames, unfiltered and without boxes framed.

    A track survives ``patience`` detection rounds without its face (a blink, motion blur).

    Returns:
        (tracks with ``box`` the union of the face boxes, the frame shape).
    """
    tracks: list[Track] = []
    active: list[_Open] = []
    previous: np.ndarray | None = None
    shape: tuple[int, ...] = ()

    def close(track: _Open, limit: int) -> None:
        b = np.array(track.boxes)
        union = (
            float(b[:, 0].min()),
            float(b[:, 1].min()),
            float(b[:, 2].max()),
            float(b[:, 3].max()),
        )
        end = min(track.frames[-1] + detect_every, limit)  # frames after the last detection too
        size = float(np.median([face_size(box) for box in track.boxes]))
        sharp = float(np.median(track.sharpness))
        tracks.append(Track(video, len(tracks), track.frames[0], end, union, size, sharp))

    index = -1
    for index, frame in enumerate(frames):
        shape = frame.shape
        thumbnail = _thumbnail(frame)
        # mean |difference| of 32×32 thumbnails: at most 17 between consecutive frames of our
        # clips, at least 35 between any two of our photos
        cut = previous is not None and np.abs(thumbnail - previous).mean() > cut_threshold
        previous = thumbnail
        if cut:
            for track in active:
                close(track, index)
            active = []
        if not cut and index % detect_every != 0:
            continue  # after a cut, detect at once
        faces = detect_faces(frame, min_size=0.75 * min_face)
        # greedy matching, best overlaps first; a face continues at most one track
        pairs = sorted(
            (
                (iou(t.boxes[-1], f.box), ti, fi)
                for ti, t in enumerate(active)
                for fi, f in enumerate(faces)
            ),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for overlap, ti, fi in pairs:
            if overlap < min_iou or ti in used_tracks or fi in used_faces:
                continue
            used_tracks.add(ti)
            used_faces.add(fi)
            active[ti].frames.append(index)
            active[ti].boxes.append(faces[fi].box)
            active[ti].sharpness.append(sharpness(frame, faces[fi]))
        for ti, track in enumerate(active):
            track.misses = 0 if ti in used_tracks else track.misses + 1
            if track.misses > patience:
                close(track, index)
        active = [t for t in active if t.misses <= patience]
        for fi, face in enumerate(faces):
            if fi not in used_faces:
                active.append(_Open([index], [face.box], [sharpness(frame, face)]))
    for track in active:
        close(track, index + 1)
    return sorted(tracks, key=lambda t: (t.start, t.index)), shape


def frame_track(
    track: Track, image_shape: tuple[int, ...], margin: float = MARGIN, shift_y: float = SHIFT_Y
) -> Track:
    """Replace a track's union box by its square crop box, framed around the moving face."""
    x0, y0, x1, y1 = track.box
    size = track.face_size
    # as square_box around one face, grown so that the face stays inside wherever it moves
    side = max(x1 - x0, y1 - y0) - size + (1 + 2 * margin) * size
    centre = ((x0 + x1) / 2, (y0 + y1) / 2 + shift_y * size)
    return replace(track, box=fit_square(centre, side, image_shape, (1 + margin) * size))


def crop_videos(
    videos: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    size: int = 256,
    min_track_len: int = 32,
    min_face: float = 64.0,
    min_sharpness: float = 30.0,
    detect_every: int = 1,
    max_frames: int | None = None,
    margin: float = MARGIN,
    shift_y: float = SHIFT_Y,
) -> list[Track]:
    """Write one square clip per face track of each video, and ``tracks.csv`` describing them.

    Args:
        videos: video files (or frame folders).
        out_dir: output folder, created if needed; clips are named
            ``<video stem>_<track>_<start>-<end>.mp4``.
        size: side of the written clips in pixels.
        min_track_len: drop tracks shorter than this many frames.
        min_face: drop tracks whose median face box side is below this many pixels.
        min_sharpness: drop tracks whose median face sharpness (see :func:`sharpness`) is lower.
        detect_every: run the detector on every k-th frame (and right after scene cuts).
        max_frames: read at most this many frames of each video.
        margin, shift_y: framing, as for :func:`fomm.faces.crop.square_box`.

    Returns:
        The written tracks, in video then time order.

    Raises:
        InputError: a missing or unreadable video.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Track] = []
    for video in videos:
        fps = probe(video).fps
        found, shape = find_tracks(
            iter_frames(video, max_frames=max_frames), str(video), detect_every, min_face=min_face
        )
        keep = [
            frame_track(t, shape, margin, shift_y)
            for t in found
            if len(t) >= min_track_len and t.face_size >= min_face and t.sharpness >= min_sharpness
        ]
        stem = Path(video).stem
        keep = [
            replace(t, index=i, file=f"{stem}_{i:03d}_{t.start:06d}-{t.end:06d}.mp4")
            for i, t in enumerate(keep)
        ]
        _write_clips(video, keep, out, size, fps, max_frames)
        written.extend(keep)
    _write_csv(out / CSV_NAME, written)
    return written


def _write_clips(
    video: str | os.PathLike,
    tracks: list[Track],
    out: Path,
    size: int,
    fps: float,
    max_frames: int | None,
) -> None:
    """Second pass: crop each frame into the clips of the tracks that cover it."""
    if not tracks:
        return
    last = max(t.end for t in tracks)
    writers: dict[int, VideoWriter] = {}
    try:
        for index, frame in enumerate(iter_frames(video, max_frames=max_frames)):
            if index >= last:
                break
            for i, track in enumerate(tracks):
                if track.start == index:
                    writers[i] = VideoWriter(out / str(track.file), fps)
                if i in writers:
                    writers[i].write(crop(frame, track.box, size))
                if track.end == index + 1 and i in writers:
                    writers.pop(i).close()
    finally:
        for writer in writers.values():  # only left open on an error
            writer.abort()


def _write_csv(path: Path, tracks: list[Track]) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(CSV_FIELDS)
        for t in tracks:
            out.writerow(
                [
                    t.video,
                    t.index,
                    t.start,
                    t.end,
                    *(round(v, 2) for v in t.box),
                    round(t.face_size, 2),
                    round(t.sharpness, 2),
                    t.file,
                ]
            )
    os.replace(tmp, path)
