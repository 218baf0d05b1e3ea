#!/usr/bin/env python
"""The README's picture of the live page: `fomm serve`'s live mode in headless Chromium, with the
demo's talking-face clip as a fake camera driving the astronaut through the bundled model.

    python scripts/live_page_picture.py [docs/live.jpg]

Needs Chromium and Playwright (scripts/install_browser.sh) and the serve extra.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright
from skimage import data

from fomm.app.api import Settings, create_app
from fomm.app.serve import serve_in_thread
from fomm.inference.demo import _packaged_clip
from fomm.media.image import write_image
from fomm.media.video import iter_frames

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


def clip_to_y4m(path: Path, size=(352, 288), fps: int = 15) -> Path:
    """The demo's driving clip, upscaled, as YUV4MPEG2 (what Chromium's fake camera plays)."""
    w, h = size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in iter_frames(_packaged_clip()):
            bgr = cv2.cvtColor(
                cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC), cv2.COLOR_RGB2BGR
            )
            f.write(b"FRAME\n" + cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/live.jpg")
    with tempfile.TemporaryDirectory() as tmp:
        camera = clip_to_y4m(Path(tmp) / "camera.y4m")
        photo = Path(tmp) / "photo.png"
        write_image(photo, data.astronaut())
        app = create_app(Settings(data_dir=str(Path(tmp) / "serve"), precision="auto"))
        with serve_in_thread(app) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                headless=True,
                args=FLAGS + [f"--use-file-for-fake-video-capture={camera}"],
            )
            page = browser.new_page(viewport={"width": 1100, "height": 600})
            page.goto(f"{url}/static/live.html")
            page.set_input_files("#photo", str(photo))
            page.click("#start")
            page.wait_for_function(
                "() => Number(document.body.dataset.frames || 0) >= 6", timeout=600_000
            )
            shot = Path(tmp) / "live.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        out.parent.mkdir(parents=True, exist_ok=True)
        image = np.asarray(Image.open(shot).convert("RGB"))
        Image.fromarray(image).save(out, quality=85)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
