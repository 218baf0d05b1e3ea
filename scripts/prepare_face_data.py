#!/usr/bin/env python
"""Build the training set of the bundled face model from talking-face clips.

Every clip is face-framed exactly as ``fomm animate --crop-driving auto`` frames a driving video
(``fomm.faces.track.frame_driving``: square box, stabilised), resized to SIZE and written as a
folder of JPEG frames under OUT/train/<clip>/ or OUT/test/<clip>/ (the held-out clips).

    python scripts/prepare_face_data.py ../shared/data/videos data/faces --size 256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from fomm.errors import FommError
from fomm.faces.track import frame_driving
from fomm.media.video import iter_frames

HELD_OUT = ("lp_d12", "lp_d18", "tp_driving")  # validation clips, never trained on
SKIP = ("pg_mayiyahei",)  # anime: not a human face


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", type=Path, help="folder of clips (*.mp4)")
    parser.add_argument("out", type=Path, help="dataset root to write (train/ and test/)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--max-frames", type=int, default=900, help="per clip")
    parser.add_argument("--held-out", nargs="*", default=list(HELD_OUT))
    args = parser.parse_args()
    for clip in sorted(args.videos.glob("*.mp4")):
        if clip.stem in SKIP:
            continue
        split = "test" if clip.stem in args.held_out else "train"
        folder = args.out / split / clip.stem
        if folder.is_dir() and any(folder.iterdir()):
            print(f"{clip.stem}: exists, skipped")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        try:
            frames = frame_driving(iter_frames(clip, max_frames=args.max_frames), args.size)
            n = 0
            for n, frame in enumerate(frames, 1):
                Image.fromarray(frame).save(folder / f"{n - 1:06d}.jpg", quality=95)
        except FommError as exc:
            print(f"{clip.stem}: skipped ({exc})", file=sys.stderr)
            continue
        print(f"{clip.stem}: {n} frames → {split}")


if __name__ == "__main__":
    main()
