#!/usr/bin/env python
"""`fomm live` with the expression layer off and on, interleaved in one run.

The bundled model at the live defaults animates the astronaut photo, driven by a 640x480 30 fps
clip of the astronaut's moving face played as a camera (``benchmarks/live.py``'s clip), once per
setting and repeat: ``--expression off``, then the layer on with each region asked. Reported per
run: frames out per second, latency p50/p95 from camera frame to shown result, the face share,
CPU ms per frame out (this process, all threads; ``cpu_ms_per_frame_out`` with the start-up,
``cpu_ms_per_frame_steady`` from the first frame recorded to the last), the network size, the
share of the CPUs other processes took and
the load average at its start. The results name the machine (CPU model) and the scheduling
priority the benchmark ran at (its autogroup's nice value: a shared machine's other sessions
take less from a run at a negative one, as from a foreground app).

    python benchmarks/live_expression.py --seconds 10 --repeats 2 \
        --out benchmarks/results/live-expression-cpu.json [--before REV] [--sizes default,128]

``--before REV`` also runs each setting with the live loop of git revision REV
(``fomm/live/loop.py`` as it was there, on today's other modules), interleaved: before and after
side by side under the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live import moving_face_clip  # noqa: E402  (benchmarks/live.py)
from machine import cpu_ticks, machine  # noqa: E402  (benchmarks/machine.py)

REPO = Path(__file__).resolve().parents[1]


def loop_at(revision: str, folder: Path) -> ModuleType:
    """``fomm/live/loop.py`` of git ``revision`` as a module of its own."""
    source = subprocess.run(["git", "show", f"{revision}:fomm/live/loop.py"], check=True,
                            capture_output=True, text=True, cwd=REPO).stdout
    path = folder / f"loop_{revision.replace('/', '_')}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look it up)
    spec.loader.exec_module(module)
    return module


def run(photo: Path, clip: Path, region: str, record: Path, loop: ModuleType | None = None,
        size: int | None = None) -> dict:
    """One live run; ``region`` "off" turns the layer off; ``loop``: the live loop module
    (default: today's); ``size``: ``--network-size`` (None: the loop's default)."""
    from fomm.checkpoints.loading import load_model
    from fomm.config import AnimateOptions
    from fomm.inference.animator import Animator

    if loop is None:
        from fomm.live import loop
    LiveOptions, run_live, live_animator = loop.LiveOptions, loop.run_live, loop.live_animator
    models, config = load_model(None)
    animate = AnimateOptions(detail=False, progress=False, expression=region != "off",
                             animation_region="all" if region == "off" else region)
    animator = live_animator(Animator(models, config, device="cpu"), animate)
    opts = LiveOptions(camera=str(clip), window=False, record=record, animate=animate,
                       network_size=size)
    load = os.getloadavg()[0]
    ticks, cpu = cpu_ticks(), os.times()
    with recorded_cpu() as written:
        stats = run_live(photo, opts, animator=animator, log=False)
    ticks_end, cpu_end = cpu_ticks(), os.times()
    steady = None
    if len(written) > 1:  # from the first frame recorded to the last: no start-up
        steady = round((written[-1] - written[0]) / (len(written) - 1) * 1000, 1)
    mine = cpu_end.user + cpu_end.system - cpu.user - cpu.system
    busy = (ticks_end[0] - ticks[0]) - (ticks_end[1] - ticks[1])
    others = max(0.0, busy - mine * os.sysconf("SC_CLK_TCK")) / max(ticks_end[0] - ticks[0], 1)
    return {"expression": region, "fps_out": round(stats.fps_out, 2),
            "latency_ms_p50": round(stats.latency_ms_p50, 1),
            "latency_ms_p95": round(stats.latency_ms_p95, 1),
            "face_percent": stats.face_percent, "frames_in": stats.frames_in,
            "cpu_ms_per_frame_out": round(mine / max(stats.frames_out, 1) * 1000, 1),
            "cpu_ms_per_frame_steady": steady,
            "network_size": getattr(stats, "network_size", None) or size or animator.size,
            "others_cpu_share": round(others, 2), "load_average": round(load, 2),
            "backend": animator.backend,
            "precision": animator.precision}


@contextlib.contextmanager
def recorded_cpu() -> Iterator[list[float]]:
    """This process's CPU seconds at each frame the live loop records (both loops record
    through today's :class:`fomm.live.sinks.Recorder`)."""
    from fomm.live import sinks

    times: list[float] = []
    write = sinks.Recorder.write

    def timed(self, frame, now=None):
        write(self, frame, now)
        times.append(time.process_time())

    sinks.Recorder.write = timed
    try:
        yield times
    finally:
        sinks.Recorder.write = write


def medians(rows: list[dict]) -> list[dict]:
    """Per loop and setting, the median of each number over the repeats."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        key = (row.get("loop", "today"), row["expression"], row.get("asked_size", "default"))
        groups.setdefault(key, []).append(row)
    keys = ("fps_out", "latency_ms_p50", "latency_ms_p95", "cpu_ms_per_frame_out",
            "cpu_ms_per_frame_steady", "others_cpu_share")
    return [{"loop": loop, "expression": region, "asked_size": asked,
             "network_size": group[0]["network_size"], "runs": len(group),
             **{k: round(float(np.median([r[k] for r in group])), 2) for k in keys
                if all(r.get(k) is not None for r in group)}}
            for (loop, region, asked), group in groups.items()]


def autogroup() -> str:
    """This process's scheduling group and its nice value (Linux), or ""."""
    try:
        return Path("/proc/self/autogroup").read_text().strip()
    except OSError:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--regions", default="off,all,expression",
                        help="comma-separated: off, all, pose, expression, eyes, lips")
    parser.add_argument("--sizes", default="default",
                        help="comma-separated --network-size values: default (the loop's "
                        "own choice), or a side in px")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--before", metavar="REV",
                        help="also run the live loop of this git revision, interleaved")
    args = parser.parse_args()
    from skimage import data

    from fomm.media.image import write_image

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = moving_face_clip(Path(tmp) / "camera.mp4", args.seconds)
        photo = Path(tmp) / "photo.png"
        write_image(photo, data.astronaut())
        loops: list[tuple[str, ModuleType | None]] = [("today", None)]
        if args.before:
            loops.insert(0, (f"before ({args.before})", loop_at(args.before, Path(tmp))))
        for _ in range(args.repeats):
            for asked in args.sizes.split(","):
                size = None if asked == "default" else int(asked)
                for region in args.regions.split(","):
                    for label, loop in loops:
                        row = {"loop": label, "asked_size": asked,
                               **run(photo, clip, region, Path(tmp) / "out.mp4", loop, size)}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        args.out.write_text(json.dumps({"machine": machine(), "when": when,
                                        "autogroup": autogroup(), "seconds": args.seconds,
                                        "medians": medians(rows), "runs": rows}, indent=1)
                            + "\n")


if __name__ == "__main__":
    main()
