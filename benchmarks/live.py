#!/usr/bin/env python
"""`fomm live` speed: headless live runs, the frame path stage by stage, the networks.

* the live loop on a 640×480 30 fps clip of a moving real face (skimage's astronaut, shifted,
  turned and zoomed over time) played as a live camera: frames in/out, dropped, fps out, latency
  p50/p95 and the share of output frames animated from a face, with the bundled model, at
  ``fomm live``'s defaults (``--detail off``, backend auto), with ``--detail on`` and with the
  torch eager backend;
* the live frame path stage by stage (face framing with detection every 3rd frame, keypoints,
  generator, ``--detail``, conversion, paste), CPU ms per frame, detail off and on;
* network ms/frame (keypoints + generator, batch 1, source encoded once) per backend (and
  precision) for the bundled model and the full vox-256 config (random weights);
* with ``--accuracy``: bf16 (fomm.precision's islands) against fp32 on the bundled model with a
  real talking face: mean, p99 and max |Δ| in 8-bit levels.

    python benchmarks/live.py [--seconds 10] [--frames 8] [--accuracy] [--skip-networks]

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


def networks(variants: list[tuple[str, str]], frames: int) -> list[dict]:
    """ms/frame per (backend, precision) for the bundled model and the full vox-256."""
    rows = []
    for name in ("fomm-face-256", "vox-256"):
        torch.manual_seed(0)
        cfg = load_config(name).model
        models = build_models(cfg)
        for backend, precision in variants:
            animator = Animator(models, cfg, device="cpu", precision=precision, backend=backend)
            ms, cpu_ms = network_ms(animator, frames)
            rows.append(
                {
                    "preset": name,
                    "backend": animator.backend,
                    "precision": precision,
                    "ms_per_frame": round(ms, 1),
                    "cpu_ms_per_frame": round(cpu_ms, 1),
                }
            )
            print(f"{name:14s} {animator.backend:5s} {precision:5s} {ms:8.1f} ms/frame "
                  f"({cpu_ms:.1f} CPU ms)", flush=True)
    return rows


def camera_frames(seconds: float) -> list[np.ndarray]:
    """The benchmark's camera clip as RGB frames."""
    with tempfile.TemporaryDirectory() as tmp:
        cap = cv2.VideoCapture(str(moving_face_clip(Path(tmp) / "camera.mp4", seconds)))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames


def stages(seconds: float = 2.0) -> list[dict]:
    """CPU ms per frame of each step of the live frame path (LiveAnimator's steps, in order)."""
    from skimage import data

    from fomm import motion
    from fomm.image import to_frames
    from fomm.live.loop import LiveAnimator, glue_threads

    frames = camera_frames(seconds)
    models, config = load_model(None)
    animator = Animator(models, config, device="cpu", precision="auto")
    rows = []
    for detail in (False, True):
        opts = LiveOptions(animate=AnimateOptions(detail=detail, progress=False))
        step = LiveAnimator(animator, data.astronaut(), opts)
        times: dict[str, list[float]] = {}

        def timed(name, fn, *args, times=times):
            cpu = time.process_time()
            out = fn(*args)
            times.setdefault(name, []).append((time.process_time() - cpu) * 1000)
            return out

        glue = glue_threads(animator)  # as run_live does
        glue.__enter__()
        for i, frame in enumerate(frames):
            t = i / 30
            crop = timed("face framing (detect every 3rd)", step._framer, frame, t)
            if crop is None:
                continue
            image = timed("keypoints", animator.to_model_input, crop)
            kp = step._smoother(timed("keypoints", animator.keypoints, image), t)
            step.reference = kp if step.reference is None else step.reference
            src = step._sources[0]
            kp_norm = motion.normalize_kp(src.kp, kp, step.reference)[0]
            out = timed("generator", animator.generator_output, src, kp_norm)
            if detail:
                from fomm.detail import render_batched

                with torch.inference_mode():
                    result = timed("detail", render_batched, animator.generator, out, src.detail)
            else:
                result = out.prediction
            crops = timed("to uint8", to_frames, result)
            timed("paste", step._paste, list(crops))
        glue.__exit__(None, None, None)
        for name, values in times.items():
            if name == "keypoints":  # two calls a frame: input conversion and the network
                values = [a + b for a, b in zip(values[::2], values[1::2])]
            values = values[3:]  # warm-up
            rows.append({"detail": detail, "stage": name, "backend": animator.backend,
                         "cpu_ms_mean": round(float(np.mean(values)), 1),
                         "cpu_ms_max": round(float(np.max(values)), 1)})
            print(f"detail {'on ' if detail else 'off'} {name:32s} "
                  f"{rows[-1]['cpu_ms_mean']:7.1f} CPU ms (max {rows[-1]['cpu_ms_max']})",
                  flush=True)
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


def live_run(seconds: float, precision: str, detail: bool = False,
             backend: str = "auto") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        clip = moving_face_clip(Path(tmp) / "camera.mp4", seconds)
        from skimage import data

        photo = Path(tmp) / "photo.png"
        write_image(photo, data.astronaut())
        models, config = load_model(None)
        animator = Animator(models, config, device="cpu", precision=precision, backend=backend)
        opts = LiveOptions(
            camera=str(clip),
            window=False,
            record=Path(tmp) / "out.mp4",
            animate=AnimateOptions(precision=precision, detail=detail, progress=False),
        )
        cpu = time.process_time()
        stats = run_live(photo, opts, animator=animator, log=False)
        cpu = time.process_time() - cpu
    return {
        "cpu_ms_per_frame_out": round(cpu / max(stats.frames_out, 1) * 1000, 1),
        "camera": "640x480 30 fps file clip played live",
        "clip_seconds": seconds,
        "precision": f"{precision} → {animator.precision}",
        "backend": animator.backend,
        "detail": detail,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **vars(stats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=8, help="frames per network timing")
    parser.add_argument("--skip-networks", action="store_true")
    parser.add_argument("--skip-stages", action="store_true")
    parser.add_argument("--accuracy", action="store_true", help="bf16 vs fp32 (slow on CPUs "
                        "without native bf16)")
    parser.add_argument("--bf16", action="store_true", help="also time the networks at bf16")
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
    runs = [("defaults (--detail off, backend auto)", {}),
            ("--detail on", {"detail": True}),
            ("torch eager backend", {"backend": "torch"})]
    result["live_runs"] = []
    for label, kwargs in runs:
        live = {"run": label, **live_run(args.seconds, "auto", **kwargs)}
        print(json.dumps(live, indent=1), flush=True)
        result["live_runs"].append(live)
    result["live"] = result["live_runs"][0]
    if not args.skip_stages:
        result["stages"] = stages()
    if args.accuracy:
        result["bf16_vs_fp32"] = bf16_error(args.frames)
    if not args.skip_networks:
        variants = [("torch", "fp32"), ("onnx", "fp32")] + ([("torch", "bf16")] if args.bf16
                                                            else [])
        result["networks"] = networks(variants, args.frames)
    result["load_average_at_end"] = os.getloadavg()
    result["note"] = (
        "measured on a shared machine (see the load averages: a model training and "
        "other jobs ran on the same cores); live latency runs from a camera "
        "frame's arrival to its result being recorded; CPU ms are this process's, all "
        "threads; bf16 is emulated (slow) on CPUs without native bf16, where --precision "
        "auto picks fp32"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
