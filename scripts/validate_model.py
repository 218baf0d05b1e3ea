#!/usr/bin/env python
"""Validate a face model on held-out clips with issue 6's protocol; print a table, write JSON.

Each clip (a folder of face-framed frames or a video) is reconstructed from its first frame with
relative motion, at the model size, no face crop. Reported per clip, for the model and for the
no-motion baseline (every frame predicted as the first): L1 (pixels in [0, 1]), AKD (pixels
between dlib 68-point landmarks) and AED (distance of dlib face embeddings, with the share of
generated frames where a face was found). With ``--geometry``, also how much of a known motion
of the first frame (rotated by +-15 degrees, zoomed by 1.2 and 0.85, shifted by 20 pixels)
the model transfers, from dlib landmarks: 1.0 is all of it, 0 none. With ``--parts``, AKD per
face part (jaw, brows, nose, eyes, mouth) and how the mouth opening (inner-lip gap over the
eye distance) and the eye opening (lid gap over the eye distance) of the generated frames follow
the real ones: Pearson r and the ratio of their standard deviations (the no-motion baseline's
never change: ratio 0).

    python scripts/validate_model.py --checkpoint fomm/weights/fomm-face-256.safetensors \
        data/faces/test/* --out benchmarks/results/model-validation.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from fomm.checkpoints.loading import load_model
from fomm.faces.detect import detect_faces
from fomm.faces.landmarks import landmarks_68
from fomm.faces.metrics import face_metrics
from fomm.inference.animator import Animator
from fomm.media.image import resize
from fomm.media.video import iter_frames
from fomm.train.regions import EYES, MOUTH, expression_features


def evaluate_clip(animator: Animator, clip: Path, max_frames: int | None, stride: int = 1,
                  parts: bool = False) -> dict:
    size = animator.size
    real = [f if f.shape[:2] == (size, size) else resize(f, size)
            for f in iter_frames(clip, max_frames=max_frames)][::stride]
    source = animator.prepare_source(real[0])
    fake = list(animator.animate(source, real, relative=True, batch_size=8))
    still = [real[0]] * len(real)
    row = {"clip": clip.name, "frames": len(real)}
    real_landmarks = [_landmarks(f) for f in real] if parts else []  # once for both rows
    for name, frames in (("model", fake), ("no_motion", still)):
        l1 = float(np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255
                            for a, b in zip(real, frames)]))
        m = face_metrics(zip(real, frames))
        row[name] = {"l1": round(l1, 4),
                     "akd": None if m.akd is None else round(m.akd.value, 3),
                     "aed": None if m.aed is None else round(m.aed.value, 4),
                     "face_found": round(m.akd.frames / len(real), 3) if m.akd else None}
        if parts:
            row[name].update(part_metrics(real_landmarks, frames))
    return row


PARTS = {"jaw": slice(0, 17), "brows": slice(17, 27), "nose": slice(27, 36),
         "eyes": EYES, "mouth": MOUTH}


def part_metrics(real_landmarks: list[np.ndarray | None], fake: list[np.ndarray]) -> dict:
    """AKD per face part and mouth-opening tracking over frames where both have a face.

    Mouth opening: the inner-lip gap over the eye distance, as training's expressive pairs
    measure it (:func:`fomm.train.regions.expression_features`).
    """
    dists: dict[str, list[float]] = {k: [] for k in PARTS}
    pairs = []
    found: dict[int, np.ndarray | None] = {}  # the no-motion row repeats one frame
    for la, b in zip(real_landmarks, fake):
        if id(b) not in found:
            found[id(b)] = _landmarks(b)
        lb = found[id(b)]
        if la is None or lb is None:
            continue
        d = np.linalg.norm(la - lb, axis=1)
        for k, part in PARTS.items():
            dists[k].append(float(d[part].mean()))
        pairs.append((la, lb))
    points = np.array(pairs, np.float32).reshape(-1, 68, 2)  # real, generated, real, ...
    features = expression_features(points).reshape(-1, 2, 3)  # (pairs, real/fake, 3)
    out: dict = {f"akd_{k}": round(float(np.mean(v)), 3) if v else None for k, v in dists.items()}
    for name, column in (("mouth", 0), ("eyes", 2)):  # mouth opening, eye opening
        r, f = features[:, 0, column], features[:, 1, column]
        out[f"{name}_std_ratio"] = (round(float(f.std() / r.std()), 3)
                                    if len(r) > 1 and r.std() else None)
        out[f"{name}_r"] = (round(float(np.corrcoef(r, f)[0, 1]), 3)
                            if len(r) > 1 and r.std() and f.std() else None)
    return out


def _landmarks(frame: np.ndarray) -> np.ndarray | None:
    faces = detect_faces(frame)
    return landmarks_68(frame, faces[0]) if faces else None


def geometry_transfer(animator: Animator, frame: np.ndarray) -> dict[str, float | None]:
    """Share of a synthetic similarity motion of ``frame`` that the generated frames follow."""
    size = frame.shape[0]
    centre = ((size - 1) / 2, (size - 1) / 2)
    cases = {"rotation": [(15, 1.0, 0, 0), (-15, 1.0, 0, 0)],
             "zoom": [(0, 1.2, 0, 0), (0, 0.85, 0, 0)],
             "shift": [(0, 1.0, 20, 0), (0, 1.0, -20, 0), (0, 1.0, 0, 20), (0, 1.0, 0, -20)]}
    moved = []
    for degrees, scale, dx, dy in (c for group in cases.values() for c in group):
        m = cv2.getRotationMatrix2D(centre, degrees, scale)
        m[:, 2] += (dx, dy)
        moved.append(cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT))
    fakes = list(animator.animate(animator.prepare_source(frame), moved, relative=True))
    base = _landmarks(frame)
    if base is None:
        return dict.fromkeys(cases)

    def measure(lm: np.ndarray, kind: str) -> float:
        eyes = lm[45] - lm[36]  # outer eye corners
        base_eyes = base[45] - base[36]
        if kind == "rotation":
            return float(np.degrees(np.arctan2(eyes[1], eyes[0])
                                    - np.arctan2(base_eyes[1], base_eyes[0])))
        if kind == "zoom":
            return float(np.linalg.norm(eyes) / np.linalg.norm(base_eyes) - 1)
        return float(np.linalg.norm(lm.mean(0) - base.mean(0)))

    result: dict[str, float | None] = {}
    i = 0
    for kind, group in cases.items():
        shares = []
        for _ in group:
            real, fake = _landmarks(moved[i]), _landmarks(fakes[i])
            i += 1
            if real is not None and fake is not None:
                shares.append(measure(fake, kind) / measure(real, kind))
        result[kind] = round(float(np.mean(shares)), 3) if shares else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--checkpoint", "-c", default=None)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--stride", type=int, default=1,
                        help="every N-th frame (each is reconstructed from the first alone)")
    parser.add_argument("--geometry", action="store_true",
                        help="also measure the transfer of synthetic rotations, zooms, shifts")
    parser.add_argument("--only-geometry", action="store_true", help="skip the reconstruction")
    parser.add_argument("--parts", action="store_true",
                        help="also AKD per face part and mouth-opening tracking")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.geometry |= args.only_geometry
    models, cfg = load_model(args.checkpoint)
    animator = Animator(models, cfg, device="auto")
    rows = [{"clip": clip.name} if args.only_geometry else
            evaluate_clip(animator, clip, args.max_frames, args.stride, args.parts)
            for clip in args.clips]
    if args.geometry:
        for row, clip in zip(rows, args.clips):
            first = next(iter(iter_frames(clip, max_frames=1)))
            size = animator.size
            first = first if first.shape[:2] == (size, size) else resize(first, size)
            row["geometry"] = geometry_transfer(animator, first)
            print(f"{row['clip']}: share of synthetic motion transferred {row['geometry']}")
    if args.only_geometry:
        return
    print(f"{'clip':14} {'frames':>6} | {'L1':>7} {'AKD':>7} {'AED':>7} {'face%':>6} | "
          f"{'L1 still':>8} {'AKD still':>9} {'AED still':>9}")
    for r in rows:
        m, s = r["model"], r["no_motion"]
        print(f"{r['clip']:14} {r['frames']:6} | {m['l1']:7.4f} {m['akd'] or 0:7.3f} "
              f"{m['aed'] or 0:7.4f} {100 * (m['face_found'] or 0):5.1f}% | {s['l1']:8.4f} "
              f"{s['akd'] or 0:9.3f} {s['aed'] or 0:9.4f}")
        if args.parts:
            own = [f"{k.removeprefix('akd_')} {v}" for k, v in m.items()
                   if k.startswith(("akd_", "mouth", "eyes"))]
            still = [f"{k.removeprefix('akd_')} {v}" for k, v in s.items() if k.startswith("akd_")]
            print(f"    parts: model {', '.join(own)} | still {', '.join(still)}")
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
