#!/usr/bin/env python
"""The browser live page's speed: frames/s and round trip with one or two frames in flight.

`fomm serve`'s app in a thread (bundled model, ``--precision auto``), headless Chromium with a
fake camera playing the demo's talking-face clip at 30 frames/s, the astronaut as the photo; for
each setting (``?inflight=1`` or 2 on the page's address) the page runs until 10 answers came,
then frames and the round trip it shows (camera frame grabbed → answer drawn) are sampled for
``--seconds``. Settings alternate over ``--repeats``. Chromium runs on the same CPUs as the
server, as on a laptop. Needs Debian's Chromium and playwright (scripts/install_browser.sh).

    python benchmarks/live_page.py [--seconds 10] [--repeats 2]

Writes benchmarks/results/live-page-cpu.json (the machine named in it). Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine  # noqa: E402  (benchmarks/machine.py)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import live_page_picture as picture  # noqa: E402  (scripts/: the camera clip, app, flags)

RESULTS = Path(__file__).resolve().parent / "results"


def run(url: str, browser, photo: Path, inflight: int, seconds: float) -> dict:
    """One live session on the page; frames/s and round trips over ``seconds``."""
    page = browser.new_page(viewport={"width": 1100, "height": 600})
    page.goto(f"{url}/static/live.html?inflight={inflight}")
    page.set_input_files("#photo", str(photo))
    page.click("#start")
    page.wait_for_function("() => Number(document.body.dataset.frames || 0) >= 10",
                           timeout=600_000)
    start, first = time.perf_counter(), int(page.evaluate("document.body.dataset.frames"))
    trips = []
    while time.perf_counter() - start < seconds:
        time.sleep(0.25)
        trips.append(int(page.evaluate("document.body.dataset.latency")))
    frames = int(page.evaluate("document.body.dataset.frames")) - first
    fps = frames / (time.perf_counter() - start)
    page.click("#stop")
    page.close()
    return {"inflight": inflight, "fps": round(fps, 1),
            "round_trip_ms_median": round(float(np.median(trips)), 1),
            "round_trip_ms_p95": round(float(np.percentile(trips, 95)), 1),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "live-page-cpu.json")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    from skimage import data

    from fomm.media.image import write_image

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        camera = picture.clip_to_y4m(Path(tmp) / "camera.y4m", fps=30)
        photo = Path(tmp) / "photo.png"
        write_image(photo, data.astronaut())
        app = picture.create_app(picture.Settings(data_dir=str(Path(tmp) / "serve"),
                                                  precision="auto"))
        with picture.serve_in_thread(app) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True,
                args=picture.FLAGS + [f"--use-file-for-fake-video-capture={camera}"])
            for _ in range(args.repeats):
                for inflight in (1, 2):
                    rows.append(run(url, browser, photo, inflight, args.seconds))
                    print(json.dumps(rows[-1]), flush=True)
            browser.close()
    report = {"machine": machine(),
              "what": "fomm serve's live page, bundled model at --precision auto, headless "
                      "Chromium with a 30 fps fake camera (the demo clip) on the same CPUs",
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
