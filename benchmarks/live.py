#!/usr/bin/env python
"""`fomm live` speed: a headless live run and the networks' speed at each precision.

* the live loop on a 640×480 30 fps clip of a moving real face (skimage's astronaut, shifted,
  turned and zoomed over time) played as a live camera: frames in/out, dropped, fps out, latency
  p50/p95 and the share of output frames animated from a face, with the bundled model;
* bf16 (fomm.precision's islands) against fp32 on the bundled model with a real talking face:
  mean, p99 and max |Δ| in 8-bit levels;
* network ms/frame (keypoints + generator, batch 1, source encoded once) at fp32 and bf16 for
  the bundled model and the full vox-256 config (random weights: speed does not depend on them).

    python benchmarks/live.py [--seconds 10] [--frames 8] [--skip-accuracy] [--skip-networks]

Writes benchmarks/results/live-cpu.json (the machine is named in it). Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from machine import machine  # noqa: E402  (benchmarks/machine.py)

from fomm.animate import Animator
from fomm.api import load_model
from fomm.config import AnimateOptions, load_config
from fomm.image import write_image
from fomm.live import LiveOptions, run_live
from fomm.models import build_models

RESULTS = Path(__file__).resolve().parent / "results"


def moving_face_clip(path: Path, seconds: float, size=(640, 480), fps: float = 30.0) -> Path:
    """A clip of the astronaut's face moving in the frame: shift, turn and zoom over time."""
    from skimage import data

    face = data.astronaut()[0:300, 100:400]  # head and shoulders, 300×300
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(int(seconds * fps)):
        t = i / fps
        angle = 8 * np.sin(2 * np.pi * t / 3)
        scale = 0.85 + 0.1 * np.sin(2 * np.pi * t / 5)
        affine = cv2.getRotationMatrix2D((150, 150), angle, scale)
        affine[:, 2] += (
            w / 2 - 150 + 80 * np.sin(2 * np.pi * t / 4),
            h / 2 - 150 + 30 * np.sin(2 * np.pi * t / 2.5),
        )
        frame = cv2.warpAffine(face, affine, (w, h), borderValue=(70, 80, 90))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def network_ms(animator: Animator, frames: int = 8) -> tuple[float, float]:
    """Wall and CPU (all threads of this process) ms per frame of keypoints + generator at
    batch 1, source encoded once. CPU time is steadier than wall time on a shared machine."""
    rng = np.random.default_rng(0)
    source = animator.prepare_source(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
    driving = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(frames)]
    list(animator.animate(source, driving[:2], batch_size=1))  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    list(animator.animate(source, driving, batch_size=1))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall / frames * 1000, cpu / frames * 1000


def networks(precisions: list[str], frames: int) -> list[dict]:
    rows = []
    for name in ("fomm-face-256", "vox-256"):
        torch.manual_seed(0)
        cfg = load_config(name).model
        models = build_models(cfg)
        for precision in precisions:
            animator = Animator(models, cfg, device="cpu", precision=precision)
            ms, cpu_ms = network_ms(animator, frames)
            rows.append(
                {
                    "preset": name,
                    "precision": precision,
                    "ms_per_frame": round(ms, 1),
                    "cpu_ms_per_frame": round(cpu_ms, 1),
                }
            )
            print(f"{name:14s} {precision:5s} {ms:8.1f} ms/frame ({cpu_ms:.1f} CPU ms)", flush=True)
    return rows


def bf16_error(frames: int) -> dict:
    """bf16 (islands) vs fp32 on the bundled model: the demo's talking face driving the astronaut,
    |Δ| over the model-size results in 8-bit levels."""
    from fomm.precision import bf16_difference

    diff = bf16_difference(frames, step=5)
    row = {
        "model": "fomm-face-256 (bundled)",
        "frames": len(diff),
        "mean_abs_255": round(float(diff.mean()), 3),
        "p99_abs_255": float(np.percentile(diff, 99)),
        "max_abs_255": int(diff.max()),
    }
    print(f"bf16 vs fp32: {row}", flush=True)
    return row


def live_run(seconds: float, precision: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        clip = moving_face_clip(Path(tmp) / "camera.mp4", seconds)
        from skimage import data

        photo = Path(tmp) / "photo.png"
        write_image(photo, data.astronaut())
        models, config = load_model(None)
        animator = Animator(models, config, device="cpu", precision=precision)
        opts = LiveOptions(
            camera=str(clip),
            window=False,
            record=Path(tmp) / "out.mp4",
            animate=AnimateOptions(precision=precision, progress=False),
        )
        cpu = time.process_time()
        stats = run_live(photo, opts, animator=animator, log=False)
        cpu = time.process_time() - cpu
    return {
        "cpu_ms_per_frame_out": round(cpu / max(stats.frames_out, 1) * 1000, 1),
        "camera": "640x480 30 fps file clip played live",
        "clip_seconds": seconds,
        "precision": f"{precision} → {animator.precision}",
        **vars(stats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=8, help="frames per network timing")
    parser.add_argument("--skip-networks", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "live-cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    result: dict = {
        "machine": machine(),
        "load_average_at_start": os.getloadavg(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    live = live_run(args.seconds, "auto")
    print(json.dumps(live, indent=1), flush=True)
    result["live"] = live
    if not args.skip_accuracy:
        result["bf16_vs_fp32"] = bf16_error(args.frames)
    if not args.skip_networks:
        result["networks"] = networks(["fp32", "bf16"], args.frames)
    result["load_average_at_end"] = os.getloadavg()
    result["note"] = (
        "measured on a shared machine (see the load averages: a model training and "
        "other jobs ran on the same cores); live latency runs from a camera "
        "frame's arrival to its result being recorded; bf16 is emulated (slow) "
        "on CPUs without native bf16, where --precision auto picks fp32"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
