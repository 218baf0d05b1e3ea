#!/usr/bin/env python
"""Animation speed against the original code, and per backend: a table and JSON in results/.

* **original vs fomm**, side by side in one run (rounds alternate), the full vox-256 networks with
  the same (seeded random) weights, CPU, 2 threads: the original first-order-model demo loop
  (``make_animation`` as packaged unchanged by deep-animator 0.1.1: per frame the keypoint
  detector, ``normalize_kp`` and the whole generator, source re-encoded, batch 1) against
  fomm's ``Animator`` at its defaults (source encoded once, batch 8, ``--precision auto``,
  ``--backend auto``) and fomm at fp32 on torch eager, ONNX Runtime and OpenVINO, all relative
  motion from real-face frames; outputs compared;
* **the bundled model's networks** (keypoints + generator per frame, batch 1 as live, source
  encoded once) at the defaults, and its speed-up over the original full model;
* **backends**: fp32 and bf16 (native, sensitive steps in fp32) on torch eager and OpenVINO and
  fp32 on ONNX Runtime, batch 1 and 8, both presets, with the max / mean |Δ| of the results to
  fp32 eager (8-bit levels): the measurement ``--precision auto`` is chosen by
  (fomm.runtime.precision);
* optionally (``--accuracy``) bf16 against fp32 on the bundled model with a real face (torch
  eager and OpenVINO), and
  (``--end-to-end``) ``fomm animate`` frames/s and peak RSS on 720p clips.

    python benchmarks/animate.py [--frames 8] [--rounds 2] [--accuracy] [--end-to-end]
    python benchmarks/animate.py --skip-original --update   # one section, merged into the JSON

CPU time (all threads of this process) is given beside wall time: it is steadier on a shared
machine. The load average and the other processes' share of the CPUs are recorded per section.
Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_ticks, machine  # noqa: E402  (benchmarks/machine.py)

from fomm.checkpoints import save_checkpoint
from fomm.config import AnimateOptions, load_config
from fomm.inference.animator import Animator
from fomm.media.video import VideoWriter
from fomm.models import build_models, count_parameters

RESULTS = Path(__file__).resolve().parent / "results"
PRESETS = Path(__file__).resolve().parents[1] / "fomm" / "configs"


def face_frames(n: int, size: int = 256) -> tuple[np.ndarray, list[np.ndarray]]:
    """A source face and ``n`` driving frames of it moving (scikit-image's astronaut)."""
    import cv2
    from skimage import data

    face = data.astronaut()[20:320, 110:410]
    source = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        m = cv2.getRotationMatrix2D((150, 150), 6 * np.sin(i / 2), 1 + 0.05 * np.cos(i / 3))
        m[:, 2] += (8 * np.sin(i / 2.5), 5 * np.cos(i / 2))
        moved = cv2.warpAffine(face, m, (300, 300), borderMode=cv2.BORDER_REFLECT)
        frames.append(cv2.resize(moved, (size, size), interpolation=cv2.INTER_AREA))
    return source, frames


def measured(section):
    """``section()``'s dict with the load average and the other processes' CPU share added."""
    ticks, cpu = cpu_ticks(), os.times()
    result = section()
    ticks_end, cpu_end = cpu_ticks(), os.times()
    mine = (cpu_end.user + cpu_end.system - cpu.user - cpu.system) * os.sysconf("SC_CLK_TCK")
    busy = (ticks_end[0] - ticks[0]) - (ticks_end[1] - ticks[1])
    others = max(0.0, busy - mine) / max(ticks_end[0] - ticks[0], 1)
    load = {"others_cpu_share": round(others, 2),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    if isinstance(result, list):
        return {"rows": result, **load}
    return {**result, **load}


def _timed(fn) -> tuple[object, float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


def original_networks(models, preset: str):
    """The original code's KPDetector and OcclusionAwareGenerator with ``models``' weights."""
    import yaml
    from deep_animator.modules.generator import OcclusionAwareGenerator
    from deep_animator.modules.kp_detector import KPDetector

    params = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())["model_params"]
    generator = OcclusionAwareGenerator(**params["generator_params"], **params["common_params"])
    kp_detector = KPDetector(**params["kp_detector_params"], **params["common_params"])
    generator.load_state_dict(models.generator.state_dict(), strict=True)
    kp_detector.load_state_dict(models.kp_detector.state_dict(), strict=True)
    return generator.eval(), kp_detector.eval()


def original_vs_fomm(frames: int, rounds: int) -> dict:
    """The original demo loop against fomm's defaults, vox-256, alternating rounds."""
    import warnings

    from deep_animator.utils import animate as original_animate

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    cfg = load_config("vox-256").model
    models = build_models(cfg)
    generator, kp_detector = original_networks(models, "vox-256")
    source, driving = face_frames(frames)
    opts = AnimateOptions()
    built, startup, _ = _timed(lambda: Animator(models, cfg, device="cpu",
                                                precision=opts.precision))
    animator: Animator = built  # type: ignore[assignment]
    eager = Animator(models, cfg, device="cpu", precision="fp32", backend="torch")
    onnx = Animator(models, cfg, device="cpu", precision="fp32", backend="onnx")
    openvino = Animator(models, cfg, device="cpu", precision="fp32", backend="openvino")

    def run(animator: Animator) -> np.ndarray:
        src = animator.prepare_source(source)
        return np.stack(list(animator.animate(src, driving, relative=opts.relative,
                                              adapt_scale=opts.adapt_scale,
                                              batch_size=opts.batch_size)))

    def run_original() -> np.ndarray:
        # the demo's make_animation, its own code: float frames in [0, 1], batch 1 per frame
        out = original_animate(source / 255.0, [f / 255.0 for f in driving], generator,
                               kp_detector, relative=True, adapt_movement_scale=False)
        return np.stack(out)

    runs = {"original": run_original, "fomm": lambda: run(animator),
            "fomm_eager_fp32": lambda: run(eager), "fomm_onnx_fp32": lambda: run(onnx),
            "fomm_openvino_fp32": lambda: run(openvino)}
    for name, fn in runs.items():  # warm-up (oneDNN's kernels, ONNX Runtime's plans)
        if name != "original":
            fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    results = {}
    for _ in range(rounds):
        for name, fn in runs.items():
            results[name], wall, cpu = _timed(fn)
            times[name].append((wall, cpu))
            print(f"  {name:16s} {wall / frames * 1000:8.1f} ms/frame "
                  f"({cpu / frames * 1000:.1f} CPU ms)", flush=True)
    ms = {n: min(w for w, _ in t) / frames * 1000 for n, t in times.items()}
    cpu_ms = {n: min(c for _, c in t) / frames * 1000 for n, t in times.items()}
    original = results["original"] * 255

    def diff(name: str) -> np.ndarray:
        return np.abs(original - results[name].astype(np.float64))

    row = {
        "model": "vox-256 (full, 59.8 M parameters), seeded random weights, 256x256",
        "frames": frames, "rounds": rounds,
        "original": "first-order-model demo make_animation (deep-animator 0.1.1, its code)",
        "fomm": f"Animator defaults: backend {animator.backend}, precision "
                f"{animator.precision}, batch {opts.batch_size}, source encoded once; "
                "fomm_eager_fp32 / fomm_onnx_fp32 / fomm_openvino_fp32: the same at fp32 on "
                "torch eager / ONNX Runtime / OpenVINO",
        "fomm_backend": animator.backend, "fomm_precision": animator.precision,
        "fomm_startup_s": round(startup, 2),
    }
    for name in runs:
        row[f"{name}_ms_per_frame"] = round(ms[name], 1)
        row[f"{name}_cpu_ms_per_frame"] = round(cpu_ms[name], 1)
        if name != "original":
            row[f"{name}_speedup"] = round(ms["original"] / ms[name], 2)
            row[f"{name}_speedup_cpu"] = round(cpu_ms["original"] / cpu_ms[name], 2)
            row[f"{name}_vs_original_max_abs_255"] = round(float(diff(name).max()), 2)
            row[f"{name}_vs_original_mean_abs_255"] = round(float(diff(name).mean()), 4)
    return row


def network_ms(animator: Animator, frames: list[np.ndarray], batch: int,
               rounds: int = 2) -> tuple[float, float, np.ndarray]:
    """Best wall and CPU ms per frame of keypoints + generator, source encoded once."""
    source = animator.prepare_source(frames[0])
    list(animator.animate(source, frames[:batch], batch_size=batch))  # warm-up
    best = (float("inf"), float("inf"))
    out = None
    for _ in range(rounds):
        out, wall, cpu = _timed(lambda: np.stack(list(animator.animate(source, frames,
                                                                       batch_size=batch))))
        best = (min(best[0], wall), min(best[1], cpu))
    return best[0] / len(frames) * 1000, best[1] / len(frames) * 1000, out  # type: ignore


VARIANTS = (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("openvino", "fp32"),
            ("openvino", "bf16"))  # (backend, precision)


def backends(frames: int, presets: list[str]) -> list[dict]:
    """Each of :data:`VARIANTS` per preset and batch, with the results' |Δ| to fp32 eager."""
    _, driving = face_frames(frames)
    rows = []
    for preset in presets:
        torch.manual_seed(0)
        cfg = load_config(preset).model
        models = build_models(cfg)
        params = sum(count_parameters(m) for m in models[:2])
        animators = {v: Animator(models, cfg, device="cpu", precision=v[1], backend=v[0])
                     for v in VARIANTS}
        auto = Animator(models, cfg, device="cpu", precision="auto")
        for batch in (1, 8):
            outs = {}
            for (backend, precision), animator in animators.items():
                ms, cpu_ms, out = network_ms(animator, driving, batch)
                outs[backend, precision] = out
                diff = np.abs(out.astype(int) - outs["torch", "fp32"].astype(int))
                rows.append({"preset": preset, "params_m": round(params / 1e6, 2),
                             "backend": animator.backend, "precision": animator.precision,
                             "batch": batch, "ms_per_frame": round(ms, 1),
                             "cpu_ms_per_frame": round(cpu_ms, 1),
                             "frames_per_s": round(1000 / ms, 2),
                             "vs_fp32_eager_max_abs_255": int(diff.max()),
                             "vs_fp32_eager_mean_abs_255": round(float(diff.mean()), 4),
                             "auto_picks": (auto.backend, auto.precision) == (backend, precision)})
                print(f"  {preset:14s} {backend:8s} {precision} batch {batch}: {ms:7.1f} ms/frame "
                      f"({cpu_ms:.1f} CPU ms)", flush=True)
    return rows


def accuracy() -> dict:
    """bf16 against fp32 on the bundled model with a real face
    (fomm.runtime.precision.bf16_difference),
    on torch eager and on OpenVINO."""
    from accuracy import bf16_difference

    report: dict = {"what": "bundled model (fomm/weights), the demo's talking-face clip driving "
                            "the astronaut photo, 6 frames at 256x256, uint8 results",
                    "bounds": "mean <= 1/255, p99 <= 8/255"}
    for backend in ("torch", "openvino"):
        diff = bf16_difference(frames=6, step=13, backend=backend)
        report[backend] = {"frames": len(diff), "mean_abs_255": round(float(diff.mean()), 3),
                           "p99_abs_255": float(np.percentile(diff, 99)),
                           "max_abs_255": int(diff.max())}
    return report


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
        "import resource, sys, time; from fomm.cli.main import main; t = time.perf_counter();\n"
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
    parser.add_argument("--frames", type=int, default=8, help="driving frames per timing")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds, best kept")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-original", action="store_true")
    parser.add_argument("--skip-backends", action="store_true")
    parser.add_argument("--backend-presets", default="fomm-face-256,vox-256",
                        help="presets for the backend table, comma-separated")
    parser.add_argument("--accuracy", action="store_true", help="bf16 vs fp32, real weights")
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--update", action="store_true",
                        help="merge the sections run into the existing JSON")
    parser.add_argument("--out", type=Path, default=RESULTS / "animate-cpu.json")
    parser.add_argument("--note", help="how the machine was shared, kept in the JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict = json.loads(args.out.read_text()) if args.update and args.out.exists() else {}
    report.update({"machine": machine(), "torch": torch.__version__,
                   "threads": torch.get_num_threads()})
    if not args.skip_original:
        print("original demo loop vs fomm, vox-256:", flush=True)
        report["original_vs_fomm"] = measured(lambda: original_vs_fomm(args.frames, args.rounds))
        print(json.dumps(report["original_vs_fomm"], indent=1), flush=True)
        # the bundled model's networks, batch 1 at the defaults, in the same run
        torch.manual_seed(0)
        cfg = load_config("fomm-face-256").model
        animator = Animator(build_models(cfg), cfg, device="cpu", precision="auto")
        _, driving = face_frames(args.frames)
        ms, cpu_ms, _ = network_ms(animator, driving, 1, args.rounds)
        full = report["original_vs_fomm"]
        report["bundled_networks"] = {
            "preset": "fomm-face-256", "backend": animator.backend,
            "precision": animator.precision, "batch": 1,
            "ms_per_frame": round(ms, 1), "cpu_ms_per_frame": round(cpu_ms, 1),
            "frames_per_s": round(1000 / ms, 1),
            "speedup_vs_original_full": round(full["original_ms_per_frame"] / ms, 1),
            "speedup_vs_original_full_cpu": round(full["original_cpu_ms_per_frame"] / cpu_ms, 1)}
        print(json.dumps(report["bundled_networks"], indent=1), flush=True)
    if not args.skip_backends:
        print("backends and precisions:", flush=True)
        report["backends"] = measured(lambda: backends(args.frames,
                                                       args.backend_presets.split(",")))
    if args.accuracy:
        report["bf16_accuracy"] = accuracy()
        print(json.dumps(report["bf16_accuracy"], indent=1), flush=True)
    if args.end_to_end:
        e2e = []
        with tempfile.TemporaryDirectory() as tmp:
            for frames in (60, 240):
                e2e.append(end_to_end("fomm-face-256", frames, Path(tmp)))
                print(f"end-to-end {frames} frames 720p: {e2e[-1]}", flush=True)
        report["end_to_end"] = e2e
    if args.note:
        report["note"] = args.note
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
