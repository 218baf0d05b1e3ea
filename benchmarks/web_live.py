#!/usr/bin/env python
"""The on-device page's live speed beside ``fomm live``, on the same clip in the same run.

Headless Chromium (Debian's, through Playwright) plays a 640×480 30 fps clip of a moving real
face (benchmarks/live.py's ``moving_face_clip``) as its fake camera; the page
(``fomm export-web``'s site, served locally with the isolation headers) animates skimage's
astronaut on onnxruntime-web's WASM (SIMD, threads). ``fomm live`` plays the same clip as its
camera with its defaults. Per run: frames out per second, latency p50 / p95 (camera frame to
drawn result), CPU ms per frame out (the browser's processes, or fomm's), the share of the CPU
that other processes used meanwhile; per page: the bytes it downloads (raw and gzip), the time
to load the models and the time from Start to the first animated frame. The networks run at 128
(the page's WASM default, ``fomm live --network-size 128``) and at the model's 256; at the
smallest size the page also runs with the expression layer on, with ``?overlap=auto`` (the
generator overlapped with the next frame's pose where measured faster) and with two WASM threads
(leave them out with --no-extras). ``--before REV`` also runs the page as it was at a git
revision (the same models and runtime, the page's code from ``git archive REV``), interleaved with
this one, so that a change is measured side by side under the same load.

    python benchmarks/web_live.py [--seconds 10] [--repeats 2] [--site DIR] [--before REV]
        [--sizes 128 256] [--no-extras] [--note TEXT]

Writes benchmarks/results/web-live-cpu.json (the machine is named in it). Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live import moving_face_clip  # noqa: E402  (benchmarks/live.py)
from machine import cpu_ticks, machine  # noqa: E402  (benchmarks/machine.py)

RESULTS = Path(__file__).resolve().parent / "results"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]


def to_y4m(clip: Path, path: Path) -> Path:
    """The clip as YUV4MPEG2 (what Chromium's fake camera plays, in a loop)."""
    cap = cv2.VideoCapture(str(clip))
    fps = round(cap.get(cv2.CAP_PROP_FPS))
    with open(path, "wb") as f:
        first = True
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if first:
                h, w = frame.shape[:2]
                f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
                first = False
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def browser_cpu(root: psutil.Process) -> float:
    """CPU seconds of a browser process and its children so far."""
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
    return total


class Meter:
    """The CPU that a set of processes and the others used over an interval."""

    def __init__(self, own) -> None:
        self.own = own
        self.ticks, self.cpu, self.load = cpu_ticks(), own(), os.getloadavg()[0]

    def done(self, frames: int) -> dict:
        ticks, cpu = cpu_ticks(), self.own()
        mine = cpu - self.cpu
        busy = (ticks[0] - self.ticks[0]) - (ticks[1] - self.ticks[1])
        others = max(0.0, busy - mine * os.sysconf("SC_CLK_TCK")) / max(ticks[0] - self.ticks[0], 1)
        return {"cpu_ms_per_frame_out": round(mine / max(frames, 1) * 1000, 1),
                "others_cpu_share": round(others, 2), "load_average": round(self.load, 2)}


def web_run(chromium: str, url: str, camera: Path, photo: Path, size: int,
            seconds: float, threads: int = 0, query: str = "", expression: bool = False) -> dict:
    """One live session of the page; its figures (``query``: more URL parameters, as
    ``&overlap=0``; ``expression``: the expression layer turned on before the camera starts)."""
    from playwright.sync_api import sync_playwright

    args = FLAGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                    f"--use-file-for-fake-video-capture={camera}"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=args)
        root = next(p for p in psutil.Process().children(recursive=True)
                    if "chrom" in p.name() and "--type" not in " ".join(p.cmdline()))
        page = browser.new_page()
        requests: list[str] = []
        opened = time.perf_counter()
        page.goto(f"{url}?size={size}" + (f"&threads={threads}" if threads else "") + query)
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=300_000)
        loaded = time.perf_counter() - opened
        page.on("request", lambda r: requests.append(r.url))
        page.set_input_files("#photo", str(photo))
        page.wait_for_function("document.body.dataset.photo === '1'", timeout=300_000)
        if expression:
            page.click("#expression-box summary")
            page.check("#expression")
            page.wait_for_function("document.getElementById('expression-note').textContent"
                                   ".includes('all')", timeout=300_000)
        start = time.perf_counter()
        page.click("#start")
        page.wait_for_function("window.fommStats.framesOut >= 1", timeout=300_000)
        first = time.perf_counter() - start
        page.evaluate("window.fommStatsFirst = {...window.fommStats}")
        meter = Meter(lambda: browser_cpu(root))
        time.sleep(seconds)
        stats = page.evaluate("({...window.fommStats})")
        page.click("#stop")
        frames = stats["framesOut"] - 1
        run = {"runner": "page", "network_size": size, "backend": stats["backend"],
               "expression": expression, "overlap_at_end": stats.get("overlap"),
               "fps_out": round(stats["fps"], 2), "latency_ms_p50": round(stats["latencyP50"], 1),
               "latency_ms_p95": round(stats["latencyP95"], 1), "frames_out": stats["framesOut"],
               "face_percent": round(100 * stats["faceFrames"] / max(stats["framesOut"], 1), 1),
               **meter.done(frames), "models_loaded_s": round(loaded, 2),
               "start_to_first_frame_s": round(first, 2),
               "stage_ms": {k: round(v, 1) for k, v in (stats.get("stageMs") or {}).items()},
               "requests_while_animating": [u for u in requests
                                            if not u.startswith(("blob:", "data:"))]}
        browser.close()
    return run


def live_run(photo: Path, clip: Path, size: int | None, seconds: float) -> dict:
    """One ``fomm live`` run on the clip (its defaults; ``size``: --network-size)."""
    from fomm.checkpoints.loading import load_model
    from fomm.config import AnimateOptions
    from fomm.inference.animator import Animator
    from fomm.live import LiveOptions, run_live
    from fomm.live.loop import live_animator

    models, config = load_model(None)
    animate = AnimateOptions(detail=False, progress=False, expression=False)
    animator = live_animator(Animator(models, config, device="cpu"), animate, size)
    with tempfile.TemporaryDirectory() as tmp:
        opts = LiveOptions(camera=str(clip), window=False, record=Path(tmp) / "out.mp4",
                           animate=animate, network_size=size, max_frames=int(seconds * 30))

        def own() -> float:
            t = os.times()
            return t.user + t.system

        meter = Meter(own)
        stats = run_live(photo, opts, animator=animator, log=False)
        return {"runner": "fomm live", "network_size": animator.size,
                "backend": f"{animator.backend} {animator.precision}",
                "fps_out": round(stats.fps_out, 2),
                "latency_ms_p50": round(stats.latency_ms_p50, 1),
                "latency_ms_p95": round(stats.latency_ms_p95, 1),
                "frames_out": stats.frames_out, "face_percent": stats.face_percent,
                **meter.done(stats.frames_out)}


def download(site: Path, size: int) -> dict:
    """What the WASM page downloads (the page, its modules, onnxruntime-web's WASM build, the
    networks at ``size``, MTCNN and the expression layer's face mesh), raw and gzip-compressed,
    in MB."""
    manifest = json.loads((site / "site.json").read_text())
    files = [site / "index.html", site / "style.css", site / "site.json", *site.glob("js/*.js"),
             *(site / "vendor/onnxruntime-web" / n for n in
               ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")),
             *(site / p for p in manifest["model"]["networks"][str(size)].values()),
             *(site / p for p in manifest["mtcnn"].values()),
             *(site / p for p in (manifest["face_mesh"] or {}).values()),
             *(site.glob("expression/*.js") if manifest["face_mesh"] else [])]
    raw = sum(f.stat().st_size for f in files)
    packed = sum(len(gzip.compress(f.read_bytes(), 6)) for f in files)
    models = sum((site / p).stat().st_size for p in
                 [*manifest["model"]["networks"][str(size)].values(), *manifest["mtcnn"].values()])
    return {"network_size": size, "total_mb": round(raw / 1e6, 2),
            "total_gzip_mb": round(packed / 1e6, 2), "models_mb": round(models / 1e6, 2),
            "weights": manifest["model"]["weights"]}


def before_site(site: Path, rev: str, out: Path) -> Path:
    """A copy of ``site`` whose page (HTML, CSS, ES modules) is the one at git revision ``rev``:
    the same models and runtime, the page's code as it was."""
    import io
    import subprocess
    import tarfile

    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "archive", rev, "fomm/web/static"], cwd=root, check=True,
                             capture_output=True).stdout
    shutil.copytree(site, out, ignore=shutil.ignore_patterns("js", "expression"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            target = out / Path(member.name).relative_to("fomm/web/static")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    return out


def medians(runs: list[dict]) -> list[dict]:
    """Per runner, variant, network size and backend: the median of each figure over the
    repeats."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        key = (run["runner"], run.get("variant", ""), run["network_size"], run["backend"])
        groups.setdefault(key, []).append(run)
    out = []
    for (runner, variant, size, backend), group in groups.items():
        row = {"runner": runner, "variant": variant, "network_size": size, "backend": backend,
               "runs": len(group)}
        for key in ("fps_out", "latency_ms_p50", "latency_ms_p95", "cpu_ms_per_frame_out",
                    "others_cpu_share", "models_loaded_s", "start_to_first_frame_s"):
            if key in group[0]:
                row[key] = round(statistics.median(r[key] for r in group), 2)
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--site", type=Path, help="a built site (default: build one)")
    parser.add_argument("--before", metavar="REV",
                        help="also run the page as it was at this git revision, interleaved")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256],
                        help="network sides to run (default: 128 256)")
    parser.add_argument("--no-extras", action="store_true",
                        help="leave out the page with the expression layer on and with two "
                        "WASM threads")
    parser.add_argument("--note", help="a note kept in the results (the conditions of the run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "web-live-cpu.json")
    args = parser.parse_args()
    from skimage import data

    from fomm.media.image import write_image
    from fomm.web import build_site
    from fomm.web.serve import serve_site

    chromium = os.environ.get("FOMM_CHROMIUM", "/usr/bin/chromium")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        site = args.site or build_site(folder / "site", webgpu=False).path
        sites = {"this": site}
        if args.before:
            sites[f"before {args.before}"] = before_site(site, args.before, folder / "before")
        photo = folder / "astronaut.png"
        write_image(photo, data.astronaut())
        clip = moving_face_clip(folder / "camera.mp4", args.seconds + 5)
        camera = to_y4m(clip, folder / "camera.y4m")
        # (runner, variant, size, page options): each repeat runs them all, one after the other
        plan: list[tuple[str, str, int, dict]] = []
        for size in args.sizes:
            plan += [("page", name, size, {}) for name in sites]
            plan.append(("fomm live", "", size, {}))
            if size == min(args.sizes) and not args.no_extras:
                plan += [("page", "this, expression on", size, {"expression": True}),
                         ("page", "this, overlap auto", size, {"query": "&overlap=auto"}),
                         ("page", "this, 2 threads", size, {"threads": 2}),
                         ("page", "this, expression on, overlap auto", size,
                          {"expression": True, "query": "&overlap=auto"}),
                         ("page", "this, expression on, 2 threads", size,
                          {"expression": True, "threads": 2})]
        runs = []
        servers = {name: serve_site(path) for name, path in sites.items()}
        urls = {name: server.__enter__() for name, server in servers.items()}
        try:
            for repeat in range(args.repeats):
                for runner, variant, size, options in plan:
                    if runner == "page":
                        url = urls[variant.split(",")[0]]
                        run = web_run(chromium, url, camera, photo, size, args.seconds, **options)
                    else:
                        run = live_run(photo, clip, None if size == 256 else size, args.seconds)
                    run["variant"], run["repeat"] = variant, repeat
                    runs.append(run)
                    print(json.dumps(run), flush=True)
        finally:
            for server in servers.values():
                server.__exit__(None, None, None)
        sizes = [download(site, s) for s in (128, 256)]
    result = {"machine": machine(), "seconds": args.seconds, "camera": "640x480 30 fps",
              "browser": "Debian Chromium headless (Playwright), no GPU: WebGPU has no adapter "
              "(only SwiftShader's fallback one with --enable-unsafe-webgpu, which the page passes "
              "over)",
              "note": args.note, "before": args.before, "medians": medians(runs), "runs": runs,
              "download": sizes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
