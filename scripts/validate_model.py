#!/usr/bin/env python
"""Validate a face model on held-out clips with issue 6's protocol; print a table, write JSON.

Each clip (a folder of face-framed frames or a video) is reconstructed from its first frame with
relative motion, at the model size, no face crop. Reported per clip, for the model and for the
no-motion baseline (every frame predicted as the first): L1 (pixels in [0, 1]), AKD (pixels
between dlib 68-point landmarks) and AED (distance of dlib face embeddings, with the share of
generated frames where a face was found).

    python scripts/validate_model.py --checkpoint fomm/weights/fomm-face-256.safetensors \
        data/faces/test/* --out benchmarks/results/model-validation.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fomm.animate import Animator
from fomm.api import load_model
from fomm.faces.metrics import face_metrics
from fomm.image import resize
from fomm.video import iter_frames


def evaluate_clip(animator: Animator, clip: Path, max_frames: int | None, stride: int = 1) -> dict:
    size = animator.size
    real = [f if f.shape[:2] == (size, size) else resize(f, size)
            for f in iter_frames(clip, max_frames=max_frames)][::stride]
    source = animator.prepare_source(real[0])
    fake = list(animator.animate(source, real, relative=True, batch_size=8))
    still = [real[0]] * len(real)
    row = {"clip": clip.name, "frames": len(real)}
    for name, frames in (("model", fake), ("no_motion", still)):
        l1 = float(np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255
                            for a, b in zip(real, frames)]))
        m = face_metrics(zip(real, frames))
        row[name] = {"l1": round(l1, 4),
                     "akd": None if m.akd is None else round(m.akd.value, 3),
                     "aed": None if m.aed is None else round(m.aed.value, 4),
                     "face_found": round(m.akd.frames / len(real), 3) if m.akd else None}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--checkpoint", "-c", default=None)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--stride", type=int, default=1,
                        help="every N-th frame (each is reconstructed from the first alone)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    models, cfg = load_model(args.checkpoint)
    animator = Animator(models, cfg, device="auto")
    rows = [evaluate_clip(animator, clip, args.max_frames, args.stride) for clip in args.clips]
    print(f"{'clip':14} {'frames':>6} | {'L1':>7} {'AKD':>7} {'AED':>7} {'face%':>6} | "
          f"{'L1 still':>8} {'AKD still':>9} {'AED still':>9}")
    for r in rows:
        m, s = r["model"], r["no_motion"]
        print(f"{r['clip']:14} {r['frames']:6} | {m['l1']:7.4f} {m['akd'] or 0:7.3f} "
              f"{m['aed'] or 0:7.4f} {100 * (m['face_found'] or 0):5.1f}% | {s['l1']:8.4f} "
              f"{s['akd'] or 0:9.3f} {s['aed'] or 0:9.4f}")
    mean = {k: {m: float(np.mean([r[k][m] for r in rows if r[k][m] is not None] or [np.nan]))
                for m in ("l1", "akd", "aed", "face_found")} for k in ("model", "no_motion")}
    ratio = mean["model"]["akd"] / mean["no_motion"]["akd"] if mean["no_motion"]["akd"] else None
    print(f"mean: model {mean['model']}, no-motion {mean['no_motion']}, AKD ratio {ratio}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint or "bundled"),
                                        "clips": rows, "mean": mean, "akd_ratio": ratio},
                                       indent=2) + "\n")


if __name__ == "__main__":
    main()
