"""The web page in a real browser: headless Chromium (Debian's) driven by Playwright.

Install with ``scripts/install_browser.sh`` (apt chromium + pip playwright; Playwright never
downloads a browser: it launches /usr/bin/chromium). Skipped, saying why, when either is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_clip
from PIL import Image
from tiny import tiny_models

pytestmark = pytest.mark.browser
pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.serve import serve_in_thread  # noqa: E402
from fomm.inference.animator import Animator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "output" / "screenshots" / "serve.png"
# As the machine notes advise for Debian's Chromium on a closed network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]


def chromium_path() -> str:
    path = (os.environ.get("FOMM_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser") or shutil.which("google-chrome"))
    if path is None:
        pytest.skip("no Chromium found (install it with scripts/install_browser.sh, or set "
                    "FOMM_CHROMIUM to a Chromium binary)")
    return path


def frames(n: int, size: int = 96) -> list[np.ndarray]:
    out = []
    for t in range(n):
        frame = np.full((size, size, 3), (30, 40, 60), np.uint8)
        frame[30:60, 10 + 4 * t : 40 + 4 * t] = (230, 190, 70)
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="no playwright package: scripts/install_browser.sh")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    animator = Animator(*tiny_models(image_size=64), device="cpu")
    data = tmp_path_factory.mktemp("serve")
    with serve_in_thread(create_app(Settings(data_dir=str(data)), animator=animator)) as url:
        yield url


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    source = folder / "portrait.png"
    Image.fromarray(frames(1, 128)[0]).save(source)
    clip = write_clip(folder / "driving.mp4", frames=frames(12), fps=12, audio=True)
    text = folder / "notes.txt"
    text.write_text("not a video\n")
    return {"source": source, "clip": clip, "text": text}


def open_page(browser, server):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server)
    return page, errors


def open_options(page) -> None:
    """Open the form's options as a user does, by their summary: clicked again when a click did
    not open them (on a loaded machine the page can still move under the first one)."""
    for _ in range(3):
        page.click("#options-box summary")
        if page.eval_on_selector("#options-box", "box => box.open"):
            return
    raise AssertionError("the options box does not open")


def test_upload_animate_and_play(browser, server, media):
    page, errors = open_page(browser, server)
    open_options(page)
    page.uncheck("#crop")  # no face in the picture: animate the whole image (and preview it)
    page.set_input_files("#source", str(media["source"]))
    page.set_input_files("#driving", str(media["clip"]))
    assert page.is_visible("#source-preview") and page.is_visible("#driving-preview")
    page.click("#animate")

    page.wait_for_selector("#result", state="visible", timeout=120_000)
    assert "12 frames" in page.inner_text("#status-text")
    page.wait_for_function("() => { const v = document.getElementById('result-video');"
                           " return v.readyState >= 2 && v.duration > 0; }", timeout=30_000)
    played = page.evaluate("""async () => {
        const v = document.getElementById('result-video');
        v.muted = true;
        await v.play();
        await new Promise((resolve) => setTimeout(resolve, 400));
        return {time: v.currentTime, duration: v.duration, width: v.videoWidth,
                error: v.error && v.error.code};
    }""")
    assert played["error"] is None
    assert played["width"] == 64 and played["duration"] == pytest.approx(1.0, abs=0.1)
    assert played["time"] > 0
    href = page.get_attribute("#download", "href")
    assert href.startswith("/v1/animations/") and href.endswith("/result.mp4")
    assert page.evaluate("document.getElementById('driving-side').src").startswith("blob:")

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.evaluate("document.getElementById('result-video').pause()")
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
    assert errors == []
    page.close()


def test_bad_upload_shows_the_error(browser, server, media):
    page, errors = open_page(browser, server)
    page.set_input_files("#source", str(media["source"]))
    page.set_input_files("#driving", str(media["text"]))
    page.click("#animate")
    page.wait_for_selector("#error", state="visible", timeout=30_000)
    assert "notes.txt is not a readable video" in page.inner_text("#error")
    assert page.is_enabled("#animate")
    page.close()


def test_example_button_fills_both_inputs(browser, server):
    page, _ = open_page(browser, server)
    page.wait_for_load_state("networkidle", timeout=120_000)  # a liveness bound
    if not page.is_visible("#examples"):
        page.close()
        pytest.skip("this install has no built-in example inputs "
                    "(fomm.inference.demo.builtin_inputs)")
    page.click("#example")
    page.wait_for_function("() => document.getElementById('source').files.length === 1"
                           " && document.getElementById('driving').files.length === 1",
                           timeout=60_000)
    assert page.is_visible("#source-preview") and page.is_visible("#driving-preview")
    page.close()
