#!/usr/bin/env python
"""`fomm live` speed: headless live runs, the frame path stage by stage, the networks.

* the live loop on a 640×480 30 fps clip of a moving real face (skimage's astronaut, shifted,
  turned and zoomed over time) played as a live camera: frames in/out, dropped, fps out, latency
  p50/p95 and the share of output frames animated from a face, with the bundled model: the
  configuration before issue 13 (``--precision auto`` → bf16 on torch eager where the CPU has
  native bf16; ONNX Runtime fp32 one stage after the other elsewhere), session 6's defaults
  (fp32 on ONNX Runtime, a frame's pose overlapping the previous frame's render) and now
  (``fomm live``'s defaults: OpenVINO with bf16 islands where the CPU has native bf16, fp32
  elsewhere, on one thread per two CPUs, at the network size it chooses, overlapped; and
  ``--network-size 128``), interleaved and repeated; each run records
  the load average and the share of the machine's CPU that other processes used meanwhile;
* the live frame path stage by stage (face framing with detection every 3rd frame, keypoints,
  generator, ``--detail``, conversion, the expression layer's driving landmarks
  (``observe``) and its rendering on the result (``apply``: the result's landmarks, the warp,
  lids and mouth), paste), CPU ms per frame, at the network size and threads ``fomm live``
  chooses (detail off and on, the layer off and on), the layer on at 256 px on 2 threads (the
  default before the choice) and on 1, and at ``--network-size 128``;
* network ms/frame (keypoints + generator, batch 1, source encoded once) per backend (and
  precision) for the bundled model and the full vox-256 config (random weights), and for
  OpenVINO fp32 also on one thread (``threads``: the networks' threads; CPU ms count all);
* with ``--accuracy``: bf16 (fomm.runtime.precision's islands) against fp32 on the bundled model
with a
  real talking face: mean, p99 and max |Δ| in 8-bit levels.

    python benchmarks/live.py [--seconds 10] [--repeats 2] [--sections live,stages,networks]
                              [--frames 8] [--accuracy]

Writes benchmarks/results/live-cpu.json (the machine is named in it); a run of some sections
keeps the others from the file (each section says when it ran). Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from machine import cpu_ticks, machine  # noqa: E402  (benchmarks/machine.py)

from fomm.checkpoints.loading import load_model
from fomm.config import AnimateOptions, load_config
from fomm.inference.animator import Animator
from fomm.live import LiveOptions, run_live
from fomm.media.image import write_image
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


def networks(variants: list[tuple[str, str, int | None]], frames: int) -> list[dict]:
    """ms/frame per (backend, precision, threads) for the bundled model and the full vox-256
    (threads None: torch's count)."""
    from fomm.runtime.backends import torch_threads

    rows = []
    for name in ("fomm-face-256", "vox-256"):
        torch.manual_seed(0)
        cfg = load_config(name).model
        models = build_models(cfg)
        for backend, precision, threads in variants:
            threads = threads or torch.get_num_threads()
            with torch_threads(threads):  # the graph backends' threads; torch eager's own
                animator = Animator(models, cfg, device="cpu", precision=precision,
                                    backend=backend)
                ms, cpu_ms = network_ms(animator, frames)
            rows.append(
                {
                    "preset": name,
                    "backend": animator.backend,
                    "precision": precision,
                    "threads": threads,
                    "ms_per_frame": round(ms, 1),
                    "cpu_ms_per_frame": round(cpu_ms, 1),
                }
            )
            print(
                f"{name:14s} {animator.backend:8s} {precision:5s} {threads} threads "
                f"{ms:8.1f} ms/frame ({cpu_ms:.1f} CPU ms)",
                flush=True,
            )
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

    from fomm.live.loop import (
        LiveAnimator,
        auto_network_size,
        glue_threads,
        live_animator,
        live_precision,
        network_threads,
    )
    from fomm.media.image import to_frames
    from fomm.models import motion

    frames = camera_frames(seconds)
    models, config = load_model(None)
    base = Animator(models, config, device="cpu", precision=live_precision("auto", "cpu"))
    rows = []
    # (detail, size, expression, threads): size None is fomm live's choice
    # (auto_network_size), threads None its network_threads(); 256 on 2 threads with the layer
    # was the default before the choice
    for detail, size, expression, threads in (
        (False, 256, True, 2),
        (False, None, False, None),
        (True, None, False, None),
        (False, None, True, None),
        (False, 256, True, None),
        (False, 128, False, None),
        (False, 128, True, None),
    ):
        threads = threads or network_threads()
        animate = AnimateOptions(detail=detail, progress=False, expression=expression)
        opts = LiveOptions(animate=animate, network_size=size)
        if size is None:
            animator = auto_network_size(base, opts.animate, data.astronaut(), threads)[0]
        else:
            animator = live_animator(base, opts.animate, size, threads)
        step = LiveAnimator(animator, data.astronaut(), opts)
        layer = step._layers[0] if expression and step._layers else None
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
                from fomm.render.detail import render_batched

                with torch.inference_mode():
                    result = timed("detail", render_batched, animator.generator, out, src.detail)
            else:
                result = out.prediction
            crops = timed("to uint8", to_frames, result)
            if layer is not None:
                if i == 0:
                    layer.set_reference(crop)
                observed = timed("expression: driving landmarks (observe)", layer.observe, crop)
                crops = [timed("expression: result landmarks, warp (apply)", layer.apply,
                               crops[0], crop, observed)]
            timed("paste", step._paste, list(crops))
        glue.__exit__(None, None, None)
        for name, values in times.items():
            if name == "keypoints":  # two calls a frame: input conversion and the network
                values = [a + b for a, b in zip(values[::2], values[1::2])]
            values = values[3:]  # warm-up
            rows.append(
                {
                    "detail": detail,
                    "expression": expression,
                    "network_size": animator.size,
                    "network_threads": threads if animator.backend != "torch" else None,
                    "stage": name,
                    "backend": animator.backend,
                    "precision": animator.precision,
                    "cpu_ms_mean": round(float(np.mean(values)), 1),
                    "cpu_ms_max": round(float(np.max(values)), 1),
                }
            )
            print(
                f"detail {'on ' if detail else 'off'} expression {'on ' if expression else 'off'} "
                f"{animator.size} {threads} {name:42s} "
                f"{rows[-1]['cpu_ms_mean']:7.1f} CPU ms (max {rows[-1]['cpu_ms_max']})",
                flush=True,
            )
    return rows


def bf16_error(frames: int) -> dict:
    """bf16 (islands) vs fp32 on the bundled model: the demo's talking face driving the astronaut,
    |Δ| over the model-size results in 8-bit levels, on torch eager and on OpenVINO."""
    from accuracy import bf16_difference

    row: dict = {"model": "fomm-face-256 (bundled)"}
    for backend in ("torch", "openvino"):
        diff = bf16_difference(frames, step=5, backend=backend)
        row[backend] = {
            "frames": len(diff),
            "mean_abs_255": round(float(diff.mean()), 3),
            "p99_abs_255": float(np.percentile(diff, 99)),
            "max_abs_255": int(diff.max()),
        }
    print(f"bf16 vs fp32: {row}", flush=True)
    return row


def live_run(
    seconds: float,
    precision: str,
    detail: bool = False,
    backend: str = "auto",
    overlap: bool = True,
    network_size: int | None = None,
    keep: Path | None = None,
) -> dict:
    """One headless ``fomm live`` run on the benchmark clip; its stats and CPU use."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = moving_face_clip(Path(tmp) / "camera.mp4", seconds)
        from skimage import data

        from fomm.live.loop import live_animator

        photo = Path(tmp) / "photo.png"
        write_image(photo, data.astronaut())
        models, config = load_model(None)
        animate = AnimateOptions(precision=precision, detail=detail, progress=False)
        animator = Animator(models, config, device="cpu", precision=precision, backend=backend)
        animator = live_animator(animator, animate, network_size)  # as run_live does
        opts = LiveOptions(
            camera=str(clip),
            window=False,
            record=Path(tmp) / "out.mp4",
            overlap=overlap,
            network_size=network_size,
            animate=animate,
        )
        ticks, cpu = cpu_ticks(), os.times()
        stats = run_live(photo, opts, animator=animator, log=False)
        ticks_end, cpu_end = cpu_ticks(), os.times()
        if keep is not None:  # the recording, to look at
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / "out.mp4", keep)
    mine = cpu_end.user + cpu_end.system - cpu.user - cpu.system
    busy = (ticks_end[0] - ticks[0]) - (ticks_end[1] - ticks[1])
    total = max(ticks_end[0] - ticks[0], 1)
    others = max(0.0, busy - mine * os.sysconf("SC_CLK_TCK")) / total
    return {
        "cpu_ms_per_frame_out": round(mine / max(stats.frames_out, 1) * 1000, 1),
        "others_cpu_share": round(others, 2),
        "camera": "640x480 30 fps file clip played live",
        "clip_seconds": seconds,
        "precision": f"{precision} → {animator.precision}",
        "backend": animator.backend,
        "network_size": animator.size,
        "overlap": overlap and animator.backend in ("onnx", "openvino"),
        "detail": detail,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **vars(stats),
    }


RUNS = [  # (label, live_run keywords)
    (
        "before on a CPU without native bf16: fp32 on ONNX Runtime, stages in turn "
        "(today's graphs)",
        {"precision": "fp32", "backend": "onnx", "overlap": False},
    ),
    (
        "before (session 6's defaults): fp32 on ONNX Runtime, pose beside the previous render",
        {"precision": "fp32", "backend": "onnx"},
    ),
    (
        "now: defaults (auto → OpenVINO, bf16 islands where the CPU has native bf16, fp32 "
        "elsewhere; the network size chosen at start; pose beside the previous render)",
        {"precision": "auto"},
    ),
    ("now: --network-size 128", {"precision": "auto", "network_size": 128}),
]


def live_section(seconds: float, repeats: int, keep: Path | None = None) -> dict:
    """The RUNS, interleaved ``repeats`` times; per configuration its runs and the median run
    (by fps out; of an even count, the slower of the middle two). Where the CPU has native
    bf16, ``--precision auto`` used to mean bf16 on torch eager: that run comes first."""
    from fomm.runtime.precision import cpu_has_native_bf16

    configs = RUNS
    if cpu_has_native_bf16():
        configs = [
            (
                "before issue 13: --precision auto (bf16 on torch eager on this CPU), stages in "
                "turn",
                {"precision": "bf16", "backend": "torch", "overlap": False},
            ),
            *RUNS,
        ]
    runs: dict[str, list[dict]] = {label: [] for label, _ in configs}
    for repeat in range(repeats):
        for i, (label, kwargs) in enumerate(configs):
            video = None if keep is None else keep / f"run{i}-{repeat}.mp4"
            row = {"run": label, **live_run(seconds, keep=video, **kwargs)}
            print(
                json.dumps(
                    {
                        k: row[k]
                        for k in (
                            "run",
                            "fps_out",
                            "latency_ms_p50",
                            "latency_ms_p95",
                            "face_percent",
                            "cpu_ms_per_frame_out",
                            "others_cpu_share",
                        )
                    }
                ),
                flush=True,
            )
            runs[label].append(row)
    # the median by fps out (of an even count, the slower of the middle two)
    medians = [
        sorted(rows, key=lambda r: r["fps_out"])[(len(rows) - 1) // 2] for rows in runs.values()
    ]
    return {"runs": [row for rows in runs.values() for row in rows], "medians": medians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each live configuration")
    parser.add_argument(
        "--sections",
        default="live,stages,networks",
        help="comma-separated: live, stages, networks (the others are kept from --out)",
    )
    parser.add_argument("--frames", type=int, default=8, help="frames per network timing")
    parser.add_argument(
        "--accuracy", action="store_true", help="bf16 vs fp32 (slow on CPUs without native bf16)"
    )
    parser.add_argument("--bf16", action="store_true",
                        help="also time the networks at bf16 on torch (and on OpenVINO where "
                        "the CPU has no native bf16)")
    parser.add_argument("--out", type=Path, default=RESULTS / "live-cpu.json")
    parser.add_argument(
        "--live-key",
        default="live",
        help="where the live section goes in the "
        "results (e.g. live_loaded for a run beside the training)",
    )
    parser.add_argument("--keep", type=Path, help="keep the live runs' recordings in this folder")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    result: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    if sections >= {"live", "stages", "networks"} and args.live_key == "live":
        result = {}  # a whole run: nothing kept
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result.update(
        {
            "machine": machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        }
    )
    if "live" in sections:
        start, key = os.getloadavg(), args.live_key
        live = live_section(args.seconds, args.repeats, args.keep)
        result[f"{key}_runs"], result[f"{key}_medians"] = live["runs"], live["medians"]
        result[key] = live["medians"][-2]  # fomm live's defaults
        result[f"{key}_note"] = (
            f"{now}; load average at start {[round(x, 2) for x in start]}, at end "
            f"{[round(x, 2) for x in os.getloadavg()]}; see each run's others_cpu_share (the "
            "machine's CPU used by other processes meanwhile)"
        )
    if "stages" in sections:
        result["stages"] = stages()
        result["stages_note"] = f"{now}; load average at end {os.getloadavg()}"
    if args.accuracy:
        result["bf16_vs_fp32"] = bf16_error(args.frames)
    if "networks" in sections:
        from fomm.runtime.precision import cpu_has_native_bf16

        variants = [("torch", "fp32", None), ("onnx", "fp32", None), ("openvino", "fp32", None),
                    ("openvino", "fp32", 1)]
        if cpu_has_native_bf16() or args.bf16:  # emulated bf16 (no native) is slow
            variants += [("openvino", "bf16", None)]
        variants += [("torch", "bf16", None)] if args.bf16 else []
        result["networks"] = networks(variants, args.frames)
        result["networks_note"] = f"{now}; load average at end {os.getloadavg()}"
    for stale in ("load_average_at_start", "load_average_at_end"):
        result.pop(stale, None)
    result["note"] = (
        "a shared 2-core machine: a model training and other sessions' jobs ran on the same "
        "cores. 'live' ran with the training stopped (SIGSTOP) and its session's autogroup at "
        "nice -10, so that the other sessions' batch jobs yielded as to a foreground app (with "
        "autogroups, nice alone does not order processes of different sessions); "
        "'live_beside_busy_loop' ran the same way beside one busy-loop process of equal "
        "priority (a CPU taken by another job). The 'before' rows are the old configurations on "
        "today's code. Latency runs from a camera frame's arrival to its result being "
        "recorded; CPU ms are this process's, all threads; bf16 is emulated (slow) on CPUs "
        "without native bf16"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
