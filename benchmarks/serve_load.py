#!/usr/bin/env python
"""Load on ``fomm serve``: jobs/minute and latency percentiles, loopback only, bounded.

Starts the app (uvicorn, 127.0.0.1, a free port) in this process with the compact model
(the bundled fomm-face-256 weights, or random weights of that preset when the install has none:
speed does not depend on the values), then ``--clients`` threads submit ``--jobs`` animations of
a synthetic ``--frames``-frame clip over HTTP, retrying on 503, polling until each finishes and
downloading the result. Stops after ``--jobs`` or ``--time-limit-s``, whichever comes first.
Prints a table and writes JSON (``benchmarks/results/serve-load-<device>.json``) naming the machine.

With ``--broker``, the API runs as ``fomm serve --broker`` does (no model in it) on a
``redis-server`` started here (or ``--redis-url``), and the jobs are run by ``fomm worker``
processes: the same load is measured with 1 worker, then 2 (``--broker-workers``), each worker
with ``cpu_count / workers`` torch threads (or ``--threads-per-worker``); JSON to
``serve-load-broker-<device>.json``.

    python benchmarks/serve_load.py [--jobs 8] [--clients 4] [--frames 24] [--device cpu]
    python benchmarks/serve_load.py --broker [--broker-workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from machine import machine  # noqa: E402  (benchmarks/machine.py)

from fomm.app.api import Settings, create_app
from fomm.app.serve import serve_in_thread
from fomm.inference.animator import Animator
from fomm.media.image import write_image
from fomm.media.video import VideoWriter

RESULTS = Path(__file__).resolve().parent / "results"


def load_animator(args: argparse.Namespace) -> tuple[Animator, str]:
    from fomm.checkpoints.loading import bundled_model_path, load_model

    if args.checkpoint or bundled_model_path() is not None:
        models, cfg = load_model(args.checkpoint)
        what = args.checkpoint or "bundled fomm-face-256"
    else:
        from fomm.config import load_config
        from fomm.models import build_models

        torch.manual_seed(0)
        cfg = load_config(args.preset).model
        models = build_models(cfg)
        what = f"{args.preset} (random weights)"
    return Animator(models, cfg, args.device), what


def make_inputs(folder: Path, frames: int, size: int) -> tuple[Path, Path]:
    y, x = np.mgrid[0:size, 0:size]
    source = np.stack([x * 255 // size, y * 255 // size, np.full_like(x, 128)], -1)
    write_image(folder / "source.png", source.astype(np.uint8))
    with VideoWriter(folder / "driving.mp4", fps=25) as writer:
        for t in range(frames):
            frame = np.full((size, size, 3), 50, np.uint8)
            x0 = size // 4 + t * 2 % (size // 2)
            frame[size // 3 : size // 3 + size // 4, x0 : x0 + size // 4] = (220, 180, 90)
            writer.write(frame)
    return folder / "source.png", folder / "driving.mp4"


def run_job(http: httpx.Client, source: Path, driving: Path, deadline: float) -> dict:
    """Submit (retrying on 503), follow and download one job; returns its timings."""
    start = time.monotonic()
    files = {"source": ("source.png", source.read_bytes(), "image/png"),
             "driving": ("driving.mp4", driving.read_bytes(), "video/mp4")}
    rejected = 0
    while True:
        r = http.post("/v1/animations", files=files, data={"crop": "false"})
        if r.status_code != 503:
            break
        rejected += 1
        if time.monotonic() > deadline:
            return {"status": "timeout", "rejected": rejected}
        time.sleep(min(2.0, float(r.headers.get("retry-after", 1))))
    r.raise_for_status()
    url = r.json()["status_url"]
    while True:
        state = http.get(url).json()
        if state["status"] not in ("queued", "running"):
            break
        if time.monotonic() > deadline:
            http.delete(url)
            return {"status": "timeout", "rejected": rejected}
        time.sleep(0.1)
    if state["status"] == "succeeded":
        assert http.get(state["result_url"]).status_code == 200
    end = time.monotonic()
    return {"status": state["status"], "rejected": rejected, "latency_s": end - start,
            "queue_s": state["started_at"] - state["created_at"] if state["started_at"] else None,
            "run_s": (state["finished_at"] - state["started_at"]) if state["started_at"] else None,
            "frames": state["progress"]["done"]}


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "max": None}
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 2),
            "p90": round(float(np.percentile(a, 90)), 2), "max": round(float(a.max()), 2)}


def measure(base: str, source: Path, driving: Path, args: argparse.Namespace) -> dict:
    """One warm-up job, then ``args.jobs`` jobs from ``args.clients`` threads; the figures."""
    with httpx.Client(base_url=base, timeout=120) as http:
        run_job(http, source, driving, time.monotonic() + args.time_limit_s)  # warm-up
    results: list[dict] = []
    lock, counter = threading.Lock(), iter(range(args.jobs))
    start = time.monotonic()
    deadline = start + args.time_limit_s

    def client() -> None:
        with httpx.Client(base_url=base, timeout=120) as own:
            while time.monotonic() < deadline:
                with lock:
                    if next(counter, None) is None:
                        return
                outcome = run_job(own, source, driving, deadline)
                with lock:
                    results.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    ok = [r for r in results if r["status"] == "succeeded"]
    frames = sum(r["frames"] for r in ok)
    return {
        "succeeded": len(ok), "failed": sum(r["status"] == "failed" for r in results),
        "timed_out": sum(r["status"] == "timeout" for r in results),
        "rejected_503": sum(r["rejected"] for r in results),
        "wall_s": round(wall, 2), "jobs_per_minute": round(60 * len(ok) / wall, 2),
        "frames_per_s": round(frames / wall, 2),
        "latency_s": percentiles([r["latency_s"] for r in ok]),
        "queue_wait_s": percentiles([r["queue_s"] for r in ok]),
        "run_s": percentiles([r["run_s"] for r in ok]),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    """A redis-server on a free loopback port (no persistence); the process and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--broker needs redis-server (apt-get install redis-server) or "
                         "--redis-url")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"redis://127.0.0.1:{port}/0"


def broker_main(args: argparse.Namespace) -> None:
    """The same load through Redis and ``fomm worker`` processes, with 1, then 2 workers."""
    from fomm.checkpoints import save_checkpoint
    from fomm.checkpoints.loading import bundled_model_path

    runs = []
    with tempfile.TemporaryDirectory(prefix="fomm-serve-load-") as tmp:
        tmp = Path(tmp)
        redis_proc, url = (None, args.redis_url) if args.redis_url else start_redis(tmp)
        try:
            client = _wait_redis(url)
            checkpoint = args.checkpoint
            if checkpoint is None and bundled_model_path() is None:
                animator, _ = load_animator(args)  # random weights of the preset, to a file
                checkpoint = str(tmp / "model.safetensors")
                save_checkpoint(checkpoint, animator.models, animator.config)
            model = checkpoint or "bundled fomm-face-256"
            source, driving = make_inputs(tmp, args.frames, args.size)
            for count in args.broker_workers:
                client.flushdb()
                data = tmp / f"data-{count}"
                settings = Settings(max_queue=args.max_queue, data_dir=str(data), broker=url)
                threads = args.threads_per_worker or max(1, (os.cpu_count() or 1) // count)
                workers = [_start_worker(url, data, checkpoint, args.device, threads, i, tmp)
                           for i in range(count)]
                try:
                    with serve_in_thread(create_app(settings), "127.0.0.1") as base:
                        _wait_workers(base, count, workers)
                        load_before = os.getloadavg()
                        run = measure(base, source, driving, args)
                finally:
                    for proc in workers:
                        proc.send_signal(signal.SIGTERM)
                    for proc in workers:
                        try:
                            proc.wait(timeout=30)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                runs.append({"workers": count, "torch_threads_per_worker": threads,
                             "load_average_at_start": [round(x, 2) for x in load_before],
                             "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                             **run})
                print(f"{count} worker(s), {threads} thread(s) each: {run['jobs_per_minute']} "
                      f"jobs/min ({run['succeeded']}/{args.jobs} in {run['wall_s']} s), "
                      f"load average {load_before[0]:.1f} at start")
        finally:
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(timeout=10)
    report = {"machine": machine(), "torch": torch.__version__, "device": args.device,
              "model": model, "mode": "broker: fomm serve --broker + fomm worker processes",
              "jobs": args.jobs, "clients": args.clients, "max_queue": args.max_queue,
              "frames_per_job": args.frames, "size": f"{args.size}x{args.size}", "runs": runs}
    out = args.out or RESULTS / f"serve-load-broker-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


def _wait_redis(url: str, timeout: float = 20):
    from fomm.app.broker import connect

    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(url)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _start_worker(url: str, data: Path, checkpoint: str | None, device: str, threads: int,
                  index: int, tmp: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "fomm", "worker", "--broker", url, "--data-dir", str(data),
               "--device", device, "--name", f"bench-{index}", "--log-level", "warning"]
    if checkpoint:
        command += ["--checkpoint", checkpoint]
    log = (tmp / f"worker-{index}.log").open("w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def _wait_workers(base: str, count: int, procs: list[subprocess.Popen],
                  timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{base}/healthz").json()["queue"]["workers"] < count:
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise SystemExit("the workers did not start (see their logs)")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs to complete (default 8)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--frames", type=int, default=24, help="driving frames per job")
    parser.add_argument("--size", type=int, default=256, help="driving/source size, px")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=2)
    parser.add_argument("--checkpoint", help="weights (default: bundled, else random preset)")
    parser.add_argument("--preset", default="fomm-face-256")
    parser.add_argument("--time-limit-s", type=float, default=240)
    parser.add_argument("--broker", action="store_true",
                        help="through Redis and 'fomm worker' processes (see the docstring)")
    parser.add_argument("--broker-workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to measure with --broker (default 1 2)")
    parser.add_argument("--threads-per-worker", type=int,
                        help="torch threads of each worker (default: CPUs / workers)")
    parser.add_argument("--redis-url", help="an existing Redis (default: start redis-server)")
    parser.add_argument("--out", type=Path, help="JSON path (default: benchmarks/results/"
                                                 "serve-load-<device>.json)")
    args = parser.parse_args()

    if args.broker:
        broker_main(args)
        return
    animator, model = load_animator(args)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fomm-serve-load-") as tmp:
        source, driving = make_inputs(Path(tmp), args.frames, args.size)
        settings = Settings(device=args.device, workers=args.workers, max_queue=args.max_queue,
                            data_dir=str(Path(tmp) / "data"))
        app = create_app(settings, animator=animator)
        with serve_in_thread(app, "127.0.0.1") as base:
            load_run = measure(base, source, driving, args)
    report = {
        "machine": machine(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "device": str(animator.device), "model": model, "load_average_at_start": load_before,
        "jobs": args.jobs, "clients": args.clients, "workers": args.workers,
        "max_queue": args.max_queue, "frames_per_job": args.frames,
        "size": f"{args.size}x{args.size}", **load_run,
    }
    print(f"{report['machine']}; torch {report['torch']} ({report['torch_threads']} threads), "
          f"{report['device']}, {model}; load average {load_before:.1f} at start")
    print(f"{report['succeeded']}/{args.jobs} jobs of {args.frames} frames at {report['size']} by "
          f"{args.clients} clients, {args.workers} worker(s), queue {args.max_queue}: "
          f"{report['jobs_per_minute']} jobs/min, {report['frames_per_s']} frames/s, "
          f"{report['rejected_503']} × 503 (retried)")
    print(f"{'seconds':<14}{'p50':>8}{'p90':>8}{'max':>8}")
    for key in ("latency_s", "queue_wait_s", "run_s"):
        row = report[key]
        print(f"{key:<14}" + "".join(f"{'-' if row[q] is None else row[q]:>8}"
                                     for q in ("p50", "p90", "max")))
    out = args.out or RESULTS / f"serve-load-{animator.device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
