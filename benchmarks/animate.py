#!/usr/bin/env python
"""Animation throughput and memory: prints a table and writes JSON to benchmarks/results/.

* frames/s of the networks (keypoints + generator per driving frame, source encoded once) at
  256×256 for batch 1 and batch 8, fp32 (and bf16/fp16 on a GPU), for the full vox-256 config
  and the bundled compact config (random weights: speed does not depend on the values);
* end-to-end `fomm animate` frames/s and peak RSS on a short and a 4× longer 720p driving clip.

    python benchmarks/animate.py [--frames 16] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine  # noqa: E402  (benchmarks/machine.py)

from fomm.animate import Animator
from fomm.checkpoints import save_checkpoint
from fomm.config import load_config
from fomm.models import build_models, count_parameters
from fomm.video import VideoWriter

RESULTS = Path(__file__).resolve().parent / "results"


def network_fps(preset: str, device: str, precision: str, batch: int, frames: int) -> float:
    torch.manual_seed(0)
    cfg = load_config(preset).model
    animator = Animator(build_models(cfg), cfg, device=device, precision=precision)
    rng = np.random.default_rng(0)
    source = animator.prepare_source(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
    driving = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(frames)]
    list(animator.animate(source, driving[:batch], batch_size=batch))  # warm-up
    if animator.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    list(animator.animate(source, driving, batch_size=batch))
    if animator.device.type == "cuda":
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - start)


def write_clip(path: Path, frames: int, size=(1280, 720)) -> Path:
    w, h = size
    with VideoWriter(path, fps=30) as writer:
        for t in range(frames):
            f = np.full((h, w, 3), 60, np.uint8)
            f[h // 3: h // 3 + 200, 100 + 5 * t: 300 + 5 * t] = (200, 150, 90)
            writer.write(f)
    return path


def end_to_end(preset: str, frames: int, folder: Path) -> dict:
    torch.manual_seed(0)
    cfg = load_config(preset).model
    ckpt = folder / f"{preset}.safetensors"
    if not ckpt.exists():
        save_checkpoint(ckpt, build_models(cfg), cfg)
    clip = write_clip(folder / f"drive{frames}.mp4", frames)
    source = folder / "source.png"
    if not source.exists():
        from PIL import Image

        Image.fromarray(np.full((512, 512, 3), 128, np.uint8)).save(source)
    code = (
        "import resource, sys, time; from fomm.cli import main; t = time.perf_counter();\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('WALL', time.perf_counter() - t);"
        "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run(
        [sys.executable, "-c", code, "animate", str(source), str(clip), "-o",
         str(folder / "out.mp4"), "--no-crop", "--checkpoint", str(ckpt), "-q", "--device", "cpu"],
        capture_output=True, text=True, check=True).stdout
    wall = float(out.split("WALL")[1].split()[0])
    rss = int(out.split("RSS")[1].split()[0]) / 1024
    return {"preset": preset, "frames": frames, "clip": "1280x720", "wall_s": round(wall, 2),
            "fps": round(frames / wall, 2), "peak_rss_mib": round(rss, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="driving frames per timing")
    parser.add_argument("--quick", action="store_true", help="skip the full vox-256 batch 8")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        precisions = ["fp32"] + (["bf16", "fp16"] if device == "cuda" else [])
        for preset in ("fomm-face-256", "vox-256"):
            params = sum(count_parameters(m) for m in build_models(load_config(preset).model)[:2])
            for precision in precisions:
                for batch in (1, 8):
                    if args.quick and preset == "vox-256" and batch == 8 and device == "cpu":
                        continue
                    n = args.frames if device == "cpu" or preset != "vox-256" else 64
                    fps = network_fps(preset, device, precision, batch, n)
                    rows.append({"device": device, "preset": preset, "params_m":
                                 round(params / 1e6, 2), "precision": precision, "batch": batch,
                                 "frames_per_s": round(fps, 2)})
                    print(f"{device:5} {preset:14} {precision:5} batch {batch}: {fps:7.2f} fps",
                          flush=True)
    e2e = []
    with tempfile.TemporaryDirectory() as tmp:
        for frames in (60, 240):
            e2e.append(end_to_end("fomm-face-256", frames, Path(tmp)))
            print(f"end-to-end {frames} frames 720p: {e2e[-1]}", flush=True)
    report = {"machine": machine(), "torch": torch.__version__, "networks": rows,
              "end_to_end": e2e,
              "note": "random weights; networks: keypoints + generator per frame, source "
                      "encoded once; end_to_end includes decode, resize and H.264 encode"}
    print(json.dumps(report, indent=2))
    device_tag = "gpu" if torch.cuda.is_available() else "cpu"
    out = args.out or RESULTS / f"animate-{device_tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
