#!/usr/bin/env python
"""Store dlib's 68 facial landmarks of every frame of a training set, for ``--region-weight``.

For each video of DATA/train and DATA/test (a folder of frames or a video file) this writes
``landmarks.npy`` inside a frame folder, ``<video>.landmarks.npy`` beside a video file: float32
(N, 68, 2), (x + 0.5) / width and (y + 0.5) / height of each landmark (pixel centres), NaN
where no face was found.
``fomm train --region-weight W`` reads them to weigh the eyes and mouth in the reconstruction loss
(see :mod:`fomm.train.regions`). Needs ``pip install 'fomm[metrics]'`` (dlib).

    python scripts/face_landmarks.py data/faces
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from fomm.errors import FommError
from fomm.faces.detect import detect_faces
from fomm.faces.landmarks import landmarks_68, require
from fomm.faces.track import pick_face
from fomm.media.fileio import atomic_output
from fomm.media.video import iter_frames
from fomm.train.data import Video, iter_video, list_videos, split_folder
from fomm.train.regions import landmarks_path


def video_landmarks(frames) -> np.ndarray:
    """(N, 68, 2) normalised landmarks of the tracked face in each frame (NaN when none)."""
    rows = []
    previous = None
    for frame in frames:
        h, w = frame.shape[:2]
        face = pick_face(detect_faces(frame), previous)
        if face is None:
            rows.append(np.full((68, 2), np.nan, np.float32))
            continue
        previous = face.box
        rows.append(((landmarks_68(frame, face) + 0.5) / (w, h)).astype(np.float32))
    return np.stack(rows) if rows else np.zeros((0, 68, 2), np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="dataset root (train/ and test/)")
    parser.add_argument("--force", action="store_true", help="recompute existing files")
    args = parser.parse_args()
    try:
        require()
        for split in ("train", "test"):
            folder = split_folder(args.data, split)
            for item in list_videos(folder):
                out = landmarks_path(item)
                if out.exists() and not args.force:
                    continue
                points = video_landmarks(_native_frames(item))
                with atomic_output(out) as tmp, open(tmp, "wb") as f:
                    np.save(f, points)
                found = np.isfinite(points[:, 0, 0]).mean() if len(points) else 0.0
                print(f"{item.name}: {len(points)} frames, face in {found:.0%}")
    except FommError as exc:
        sys.exit(f"error: {exc}")


def _native_frames(item: Video) -> Iterator[np.ndarray]:
    """Every frame at its stored size, so landmarks are found at full resolution."""
    if item.kind == "strip":
        with Image.open(item.path) as img:  # the header only; iter_video decodes it once
            height = img.size[1]
        return iter_video(item, (int(item.frame_width or height), height))
    return iter_frames(item.path)


if __name__ == "__main__":
    main()
