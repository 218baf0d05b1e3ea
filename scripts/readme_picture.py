#!/usr/bin/env python
"""Make the README's picture from `fomm demo`'s side-by-side video: a few frames stacked.

    fomm demo && python scripts/readme_picture.py output/result_side_by_side.mp4 docs/demo.jpg
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from fomm.media.video import iter_frames, probe


def main(video: str, out: str, rows: int = 3) -> None:
    total = probe(video).num_frames or 60
    wanted = {round(i * (total - 1) / (rows - 1)) for i in range(rows)} if rows > 1 else {0}
    picked = [f for i, f in enumerate(iter_frames(video)) if i in wanted]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(picked, axis=0)).save(out, quality=88)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
