"""The live page in a real browser: Debian's Chromium with a fake camera fed from a clip.

Chromium plays ``clip.y4m`` (a real face moving, written here) as its camera; the page sends its
frames over the WebSocket and draws the animated answers. Skipped, saying why, without Chromium
or Playwright (``scripts/install_browser.sh``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_app_browser import FLAGS, chromium_path
from tiny import tiny_models

pytestmark = pytest.mark.browser
pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.serve import serve_in_thread  # noqa: E402
from fomm.inference.animator import Animator  # noqa: E402
from fomm.media.image import write_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "output" / "screenshots" / "live.png"


def write_y4m(path: Path, frames: int, size=(320, 240), fps: int = 15) -> Path:
    """A YUV4MPEG2 clip (what Chromium's fake camera plays) of the astronaut's face moving."""
    from skimage import data

    face = cv2.cvtColor(data.astronaut()[0:300, 100:400][::2, ::2], cv2.COLOR_RGB2BGR)
    w, h = size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            frame = np.full((h, w, 3), 80, np.uint8)
            x = 40 + int(60 * (1 + np.sin(i / 6)))
            frame[45:195, x : x + 150] = face
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    from skimage import data

    folder = tmp_path_factory.mktemp("live-browser")
    photo = folder / "photo.png"
    write_image(photo, data.astronaut()[:256, 128:384])
    return {"photo": photo, "camera": write_y4m(folder / "camera.y4m", 60)}


@pytest.fixture(scope="module")
def browser(media):
    executable = chromium_path()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="no playwright package: scripts/install_browser.sh"
    )
    camera = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={media['camera']}",
    ]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=FLAGS + camera
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("websockets", reason="uvicorn serves WebSockets with 'websockets'")
    animator = Animator(*tiny_models(image_size=64), device="cpu")
    data = tmp_path_factory.mktemp("serve")
    with serve_in_thread(create_app(Settings(data_dir=str(data)), animator=animator)) as url:
        yield url


def canvas_pixels(page) -> np.ndarray:
    shape_and_data = page.evaluate(
        """() => { const c = document.getElementById('result');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
                   return [c.height, c.width, Array.from(d.data)]; }"""
    )
    h, w, values = shape_and_data
    return np.array(values, np.uint8).reshape(h, w, 4)[..., :3]


def test_live_page_with_a_fake_camera(browser, server, media):
    page = browser.new_page(viewport={"width": 1100, "height": 700})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{server}/static/live.html")
    page.set_input_files("#photo", str(media["photo"]))
    page.click("#start")
    page.wait_for_function("() => Number(document.body.dataset.frames || 0) >= 3", timeout=90_000)
    first = canvas_pixels(page)
    page.wait_for_function("() => Number(document.body.dataset.frames || 0) >= 8", timeout=90_000)
    later = canvas_pixels(page)
    stats = page.inner_text("#stats")
    print(f"live page: {stats}")
    assert first.shape == later.shape == (256, 256, 3)
    assert np.abs(later.astype(int) - first.astype(int)).mean() > 0.1  # follows the motion
    assert "fps" in stats and "ms" in stats
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.click("#stop")
    assert errors == []
    page.close()
