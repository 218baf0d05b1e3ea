#!/usr/bin/env python
"""Stitching (issue #21): does what surrounds the head inside the paste box stay still?

Per clip, a photo is animated by the clip with ``fomm animate``'s defaults (cross-reenactment:
clip i drives photo i modulo the photos, as in ``benchmarks/validate_expression.py``, whose
sets this script shares), through :func:`fomm.inference.pipeline.animate_file`. Every result
crop is pasted twice, stitching off (``before``: the motion model's whole crop blended in)
and on (``after``: :mod:`fomm.faces.stitch`), so both see exactly the same animated crops.
A repo-only case (``--set repo``): scikit-image's astronaut driven by the packaged demo clip.

Measured on the paste box cut from each pasted frame at 256 px (every ``--stride``-th frame):

* ``corner_swim``: mean absolute change (0-255) of the four corner patches of the box from one
  measured frame to the next; ``corner_vs_photo``: their mean absolute difference from the photo
  (:func:`validate_expression.corner_motion`);
* ``corner_flow``: how far the corner patches moved from the photo, in pixels of the 256 box:
  the median magnitude of the optical flow (DIS) photo → result there, mean over frames, and
  ``corner_flow_max`` the largest frame's;
* ``border_vs_photo``: mean absolute difference from the photo along the box's border (a band
  of :data:`BAND` of the side), outside the photo's face oval;
* ``seam``: the edges the paste adds in its ramp (where the mask goes from 1 to 0: a shoulder
  drawn twice, a lighter band): the ramp-weighted mean of max(|∇result| − |∇photo|, 0), grey;
* ``paste_ms``: CPU milliseconds per frame of the paste (one face), before and after.

    python benchmarks/stitching.py --set tuning --out benchmarks/results/stitching-cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402  benchmarks/machine.py
from validate_expression import (  # noqa: E402  the clip lists of issue #21's protocol
    SETS,
    corner_motion,
    corner_patches,
    git_revision,
    resolve,
)

SIZE = 256  # the paste box is measured at this side
BAND = 0.12  # the border band's width, as a fraction of the box side


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def gradient(image: np.ndarray) -> np.ndarray:
    """|∇| of a grey copy (Sobel), float32."""
    g = grey(image).astype(np.float32)
    return cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


class Measure:
    """The metrics of one clip's pasted frames against the photo's crop of the paste box."""

    def __init__(self, photo_crop: np.ndarray, ramp: np.ndarray, face: np.ndarray) -> None:
        self.photo = photo_crop
        self.ramp = ramp  # the paste mask's ramp weights, (SIZE, SIZE)
        band = int(round(BAND * SIZE))
        border = np.ones((SIZE, SIZE), bool)
        border[band:-band, band:-band] = False
        self.border = border & ~face
        self.photo_grad = gradient(photo_crop)
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.patches = corner_patches(SIZE)
        self.frames: list[np.ndarray] = []
        self.rows: list[dict[str, float]] = []

    def add(self, frame: np.ndarray) -> None:
        self.frames.append(frame)
        flow = self.flow.calc(grey(self.photo), grey(frame), None)
        magnitude = np.hypot(flow[..., 0], flow[..., 1])
        corners = np.concatenate([magnitude[r, c].ravel() for r, c in self.patches])
        diff = np.abs(frame.astype(np.float32) - self.photo).mean(2)
        excess = np.maximum(gradient(frame) - self.photo_grad, 0)
        self.rows.append({
            "corner_flow": float(np.median(corners)),
            "border_vs_photo": float(diff[self.border].mean()),
            "seam": float((excess * self.ramp).sum() / max(self.ramp.sum(), 1e-9)),
        })

    def report(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        corners = corner_motion(self.frames, self.photo)
        out["corner_swim"], out["corner_vs_photo"] = corners["swim"], corners["vs_photo"]
        for key in ("corner_flow", "border_vs_photo", "seam"):
            out[key] = round(float(np.mean([r[key] for r in self.rows])), 3)
        out["corner_flow_max"] = round(float(max(r["corner_flow"] for r in self.rows)), 3)
        return out


def face_oval(photo_crop: np.ndarray) -> np.ndarray:
    """(SIZE, SIZE) bool: inside the photo crop's face oval (face mesh), or an empty mask."""
    from fomm.faces import mesh

    inside = np.zeros((SIZE, SIZE), np.uint8)
    found = mesh.FaceMesh(refine_eyes=False).detect(photo_crop) if mesh.available() else None
    if found is not None:
        hull = cv2.convexHull(found.group("face_oval").astype(np.float32))
        cv2.fillPoly(inside, [np.round(hull).astype(np.int32)], 1)
    return inside.astype(bool)


def run_case(animator, photo_path: Path, clip: Path, args: argparse.Namespace,
             work: Path, keep: Path | None) -> dict:
    """Animate ``photo_path`` by ``clip``; measure every result pasted both ways."""
    import fomm.inference.pipeline as pipeline
    from fomm.config import AnimateOptions
    from fomm.faces.crop import crop, square_box
    from fomm.faces.detect import detect_faces
    from fomm.faces.paste import Paster
    from fomm.media.image import read_image, write_image
    from fomm.render.detail import pixel_box

    photo = read_image(photo_path)
    opts = AnimateOptions(max_frames=args.max_frames, progress=False, audio=False)
    box = square_box(detect_faces(photo)[0], photo.shape)
    if opts.detail:
        box = pixel_box(box)  # as the pipeline pastes with detail
    photo_crop = crop(photo, box, SIZE)
    paster = Paster(photo, box, SIZE)
    canvas = np.zeros(photo.shape[:2], np.float32)
    rx0, ry0, rx1, ry1 = paster.roi
    canvas[ry0:ry1, rx0:rx1] = paster.alpha * (1 - paster.alpha) * 4
    ramp = cv2.resize(crop(np.dstack([canvas] * 3), box, SIZE)[..., 0], (SIZE, SIZE))
    measures = {name: Measure(photo_crop, ramp, face_oval(photo_crop))
                for name in ("before", "after")}
    seconds = {"before": 0.0, "after": 0.0}
    count = [0]
    original = pipeline.source_target

    def measured_target(source, size, options):
        target = original(source, size, options)
        paste = target.paste

        def both(crops):
            frames = {}
            for name, on in (("before", False), ("after", True)):
                target.stitch(on)
                t0 = time.process_time()
                frames[name] = paste(crops)
                seconds[name] += time.process_time() - t0
            if count[0] % args.stride == 0:
                cut = {name: crop(frame, box, SIZE) for name, frame in frames.items()}
                for name, frame in cut.items():
                    measures[name].add(frame)
                if keep is not None and count[0] % (args.stride * 5) == 0:
                    write_image(keep / f"{count[0]:04d}.png",
                                np.concatenate([photo_crop, cut["before"], cut["after"]], 1))
            count[0] += 1
            return frames["after"]

        target.paste = both
        return target

    pipeline.source_target = measured_target
    try:
        pipeline.animate_file(photo_path, clip, work / "out.mp4", opts, animator=animator)
    finally:
        pipeline.source_target = original
    frames = max(count[0], 1)
    report = {name: {**m.report(), "paste_ms": round(1000 * seconds[name] / frames, 1)}
              for name, m in measures.items()}
    return {"frames": count[0], "measured": len(measures["after"].frames), **report}


METRICS = {
    "corner_swim": "mean |change| (0-255) of the box's corner patches between measured frames",
    "corner_vs_photo": "mean |result - photo| (0-255) in the corner patches",
    "corner_flow": "median optical-flow motion (px of a 256 box) of the corner patches from the "
                   "photo, mean over frames; corner_flow_max: the largest frame's",
    "border_vs_photo": f"mean |result - photo| (0-255) in a band of {BAND} of the side along the "
                       "box's border, outside the face oval",
    "seam": "edges added in the paste's ramp: ramp-weighted mean of max(|grad result| - "
            "|grad photo|, 0)",
    "paste_ms": "CPU ms per frame of the paste (one face; the first frame's head finding "
                "included)",
}
KEYS = ("corner_swim", "corner_vs_photo", "corner_flow", "corner_flow_max", "border_vs_photo",
        "seam", "paste_ms")


def print_row(name: str, row: dict) -> None:
    cells = " ".join(f"{row['before'][k]:>7.2f}→{row['after'][k]:<7.2f}" for k in KEYS)
    print(f"{name:44s} {cells}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS) + ["repo"], required=True)
    parser.add_argument("--clips", nargs="+", help="a subset of the set's clips (names or paths)")
    parser.add_argument("--photos", nargs="+", help="photos (clip i gets photo i modulo their "
                        "count; default: the set's)")
    parser.add_argument("--max-frames", type=int, default=100)
    parser.add_argument("--stride", type=int, default=2, help="measure every N-th frame")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of torch and OpenCV (1 on a busy machine)")
    parser.add_argument("--checkpoint", "-c", default=None)
    parser.add_argument("--keep", type=Path, default=None,
                        help="write photo | before | after strips of the box here (PNG)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    if args.set == "repo":
        from fomm.inference.demo import builtin_inputs

        photo, clip = builtin_inputs(Path(tempfile.mkdtemp(prefix="stitching-")))
        cases = [(clip, photo)]
    else:
        chosen = SETS[args.set]
        clips = resolve(args.clips, chosen["clips"])
        photos = resolve(args.photos, chosen["photos"])
        missing = [p for p in clips + photos if not p.exists()]
        if missing:
            print(f"skipped: the {args.set} set's media are absent "
                  f"({', '.join(map(str, missing))})")
            return
        cases = [(clip, photos[i % len(photos)]) for i, clip in enumerate(clips)]
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator

    animator = Animator(*load_model(args.checkpoint), device="auto", precision="auto")
    print(f"{'clip <- photo':44s} " + " ".join(f"{k:>15s}" for k in KEYS))
    rows, started, revision = [], time.perf_counter(), git_revision()
    for clip, photo in cases:
        keep = None
        if args.keep:
            keep = args.keep / f"{clip.stem}-{photo.stem}"
            keep.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="stitching-") as tmp:
            row = {"clip": clip.stem, "photo": photo.stem,
                   **run_case(animator, photo, clip, args, Path(tmp), keep)}
        rows.append(row)
        print_row(f"{clip.stem} <- {photo.stem}", row)
    mean = {side: {k: round(float(np.mean([r[side][k] for r in rows])), 3) for k in KEYS}
            for side in ("before", "after")}
    print_row("MEAN", mean)
    if args.out:  # one entry per set: the tuning, held-out and repo runs share a file
        args.out.parent.mkdir(parents=True, exist_ok=True)
        results = json.loads(args.out.read_text()) if args.out.exists() else {}
        results.setdefault("sets", {})[args.set] = {
            "machine": machine(), "git": revision,
            "checkpoint": str(args.checkpoint or "bundled"), "backend": animator.backend,
            "settings": {"max_frames": args.max_frames, "stride": args.stride,
                         "threads": args.threads},
            "mean": mean, "clips": rows, "seconds": round(time.perf_counter() - started, 1)}
        results["metrics"] = METRICS
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out} ({args.set})")


if __name__ == "__main__":
    main()
