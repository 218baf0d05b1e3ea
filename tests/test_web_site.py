"""The on-device site (``fomm export-web``) in a real browser: Debian's Chromium through Playwright.

One site is built for the module (the bundled model, WASM only) and served locally with the
cross-origin isolation headers. Chromium's fake camera plays a clip made from the packaged demo
clip (a real talking face); the page animates on onnxruntime-web. Skipped, saying why, without
Chromium or Playwright (``scripts/install_browser.sh``); onnxruntime-web must be fetched
(``scripts/fetch_onnxruntime_web.sh``, which ``scripts/install_browser.sh`` runs).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_app_browser import FLAGS, chromium_path

pytestmark = pytest.mark.browser

from fomm.media.image import write_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "output" / "screenshots" / "device.png"
CAMERA = (640, 480)


def demo_frames(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``n`` RGB frames of the packaged talking-face clip, resized to ``size`` (width, height)."""
    from fomm.inference.demo import _packaged_clip
    from fomm.media.video import iter_frames

    frames = []
    for frame in iter_frames(_packaged_clip(), max_frames=n):
        frames.append(cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC))
    return frames


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """A YUV4MPEG2 clip, what Chromium's fake camera plays (in a loop)."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            yuv = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2YUV_I420)
            f.write(b"FRAME\n" + yuv.tobytes())
    return path


@functools.lru_cache(maxsize=1)
def built_site() -> Path:
    """The site ``fomm export-web`` writes (built once per test run; WASM only)."""
    from fomm.cli.main import main

    folder = Path(tempfile.mkdtemp(prefix="fomm-test-site-"))
    import atexit

    atexit.register(shutil.rmtree, folder, True)
    main(["export-web", str(folder / "site"), "--no-webgpu"])
    return folder / "site"


@pytest.fixture(scope="module")
def site() -> Path:
    chromium_path()  # skip before building without a browser
    pytest.importorskip("playwright.sync_api", reason="no playwright: scripts/install_browser.sh")
    return built_site()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    from skimage import data

    folder = tmp_path_factory.mktemp("web-media")
    photo = folder / "photo.png"
    write_image(photo, data.astronaut()[:320, 96:416])
    camera = write_y4m(folder / "camera.y4m", demo_frames(64, CAMERA))
    return {"photo": photo, "camera": camera, "folder": folder}


@pytest.fixture(scope="module")
def browser(media):
    sync_api = pytest.importorskip("playwright.sync_api")
    camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              f"--use-file-for-fake-video-capture={media['camera']}"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                             args=FLAGS + camera)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def url(site):
    from fomm.web.serve import serve_site

    with serve_site(site) as address:
        yield address


class Page:
    """A page of the site with its errors and the requests it makes after loading."""

    def __init__(self, browser, address: str) -> None:
        self.page = browser.new_page(viewport={"width": 1100, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.goto(address)
        self.page.wait_for_function("document.body.dataset.ready === '1'", timeout=180_000)
        self.page.on("request", lambda r: self.requests.append(r.url))

    def network_requests(self) -> list[str]:
        """Requests that leave the page (blob: and data: URLs stay in the browser)."""
        return [u for u in self.requests if not u.startswith(("blob:", "data:"))]

    def set_photo(self, path: Path) -> None:
        self.page.set_input_files("#photo", str(path))
        self.page.wait_for_function("document.body.dataset.photo === '1'", timeout=120_000)

    def stats(self) -> dict:
        return self.page.evaluate("() => ({...window.fommStats})")

    def canvas(self) -> np.ndarray:
        h, w, values = self.page.evaluate(
            """() => { const c = document.getElementById('result');
                       const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
                       return [c.height, c.width, Array.from(d.data)]; }""")
        return np.array(values, np.uint8).reshape(h, w, 4)[..., :3]


def test_export_web_writes_a_self_contained_site(site):
    manifest = json.loads((site / "site.json").read_text())
    assert manifest["model"]["size"] == 256 and manifest["model"]["wasm_size"] == 128
    for graphs in manifest["model"]["networks"].values():
        for path in graphs.values():
            assert (site / path).stat().st_size > 10_000
    for path in manifest["mtcnn"].values():
        assert (site / path).is_file()
    assert manifest["webgpu"] is False and not (site / "vendor/onnxruntime-web/"
                                                "ort.webgpu.min.mjs").exists()
    assert (site / "vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm").is_file()
    assert "MIT" in (site / "vendor/LICENSE-onnxruntime-web.txt").read_text()
    assert "Cross-Origin-Embedder-Policy: require-corp" in (site / "_headers").read_text()
    # nothing refers to another host: no CDN
    for path in [site / "index.html", *site.glob("js/*.js")]:
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, path


def test_live_with_a_fake_camera_and_no_requests(browser, url, media):
    page = Page(browser, url)
    p = page.page
    assert p.evaluate("self.crossOriginIsolated") is True
    page.set_photo(media["photo"])
    still = page.canvas()
    p.click("#start")
    p.wait_for_function("window.fommStats.framesOut >= 4", timeout=240_000)
    first = page.canvas()
    p.wait_for_function("window.fommStats.framesOut >= 10", timeout=240_000)
    later = page.canvas()
    stats = page.stats()
    assert stats["backend"].startswith("WASM SIMD") and "isolation" not in stats["backend"]
    assert stats["generatorWorker"] is False and stats["overlap"] is False  # one after the other
    assert all(stats["stageMs"][k] > 0 for k in ("pose", "draw", "finish"))
    assert stats["faceFrames"] >= 8 and stats["fps"] > 0
    assert 0 < stats["latencyP50"] <= stats["latencyP95"]
    assert p.inner_text("#stat-frames") != "0" and "ms" in p.inner_text("#stat-latency")
    assert first.shape == later.shape == still.shape == (320, 320, 3)
    assert np.abs(later.astype(int) - first.astype(int)).mean() > 0.2  # it follows the camera
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    p.screenshot(path=str(SCREENSHOT), full_page=True)
    p.click("#stop")
    assert page.network_requests() == []
    assert page.errors == []
    p.close()


def test_live_overlapped_frames_come_in_order(browser, url, media):
    """?overlap=1: each camera frame's pose is taken while the generator's worker draws the
    previous one; the frames are shown in order, each with its latency, and nothing is sent."""
    page = Page(browser, f"{url}?overlap=1")
    p = page.page
    page.set_photo(media["photo"])
    # at each drawing, the camera time of the frame shown before it
    p.evaluate("""() => { window.shownBefore = [];
        const ctx = document.getElementById('result').getContext('2d');
        const put = ctx.putImageData.bind(ctx);
        ctx.putImageData = (...a) => { window.shownBefore.push(window.fommStats.frameTime);
                                       put(...a); };
    }""")
    p.click("#start")
    p.wait_for_function("window.fommStats.framesOut >= 8", timeout=240_000)
    stats = page.stats()
    p.click("#stop")
    assert stats["overlap"] is True and stats["generatorWorker"] is True
    assert stats["faceFrames"] >= 6 and 0 < stats["latencyP50"] <= stats["latencyP95"]
    shown = [t for t in p.evaluate("window.shownBefore") if t is not None]
    assert len(shown) >= 7 and all(b > a for a, b in zip(shown, shown[1:]))  # in camera order
    assert page.network_requests() == []
    assert page.errors == []
    p.close()


def test_live_framing_follows_a_face_from_its_last_box(browser, url, media):
    """The live framer's tracking (MTCNN's RNet and ONet on the last box) frames the camera's face
    as fomm live's search around it does: the crop boxes overlap closely on every frame."""
    frames = frame_payload(demo_frames(24, CAMERA))
    page = Page(browser, url)
    result = page.page.evaluate("""async (frames) => {
        const { LiveFramer } = await import('./js/framing.js');
        const detector = window.fomm.state.detector;
        const dec = (s) => Uint8ClampedArray.from(atob(s), (c) => c.charCodeAt(0));
        const images = frames.map((f) => ({ width: f.width, height: f.height, data: dec(f.b64) }));
        let refined = 0;
        const refine = detector.refine.bind(detector);
        detector.refine = async (...a) => { const r = await refine(...a); refined += r.length > 0;
                                            return r; };
        const boxes = {};
        for (const track of [false, true]) {
          const framer = new LiveFramer(detector, 128, { track });
          boxes[track] = [];
          for (let i = 0; i < images.length; i += 1) {
            await framer.frame(images[i], i / 30);
            boxes[track].push(framer.box);
          }
        }
        detector.refine = refine;
        return { near: boxes[false], tracked: boxes[true], refined };
    }""", frames)
    assert page.errors == []
    page.page.close()
    near, tracked = np.array(result["near"]), np.array(result["tracked"])
    assert result["refined"] >= 6  # the detections after the first found the face from its box
    lo, hi = np.maximum(near[:, :2], tracked[:, :2]), np.minimum(near[:, 2:], tracked[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: np.prod(b[:, 2:] - b[:, :2], axis=1)  # noqa: E731
    iou = inter / (area(near) + area(tracked) - inter)
    print(f"crop box IoU, tracked vs searched: min {iou.min():.3f}, mean {iou.mean():.3f}")
    assert iou.min() > 0.85


OVERLAP = """
const { Overlap } = await import('file://' + process.env.FOMM_STATS_JS);
// frames shown every `serial` / `overlap` ms with latencies `lat` and generator times `draw`
// per mode: the modes chosen
function run(serial, overlap, lat, draw, frames) {
  const o = new Overlap(true), modes = [];
  let now = 0;
  for (let i = 0; i < frames; i += 1) {
    modes.push(o.mode);
    now += o.on ? overlap : serial;
    o.shown(now, o.on ? lat.overlap : lat.serial, o.on ? draw.overlap : draw.serial);
  }
  return modes;
}
const alike = { serial: 100, overlap: 105 }, free = { serial: 60, overlap: 62 };
console.log(JSON.stringify({
  faster: run(100, 60, alike, free, 250),
  laggier: run(100, 60, { serial: 100, overlap: 180 }, free, 250),
  slower: run(100, 95, alike, free, 250),
  crowded: run(100, 60, alike, { serial: 60, overlap: 90 }, 250),
}));
"""


def test_overlap_is_chosen_where_it_is_faster():
    """The live loop's choice between overlapped and serial frames (js/stats.js Overlap): a probe
    of each, then the better for long (overlap only when its frames come faster without a much
    longer latency and without slowing the generator), then a probe of the other again."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node")
    stats_js = ROOT / "fomm" / "web" / "static" / "js" / "stats.js"
    out = subprocess.run([node, "--input-type=module", "-e", OVERLAP], capture_output=True,
                         text=True, check=True, env={**os.environ, "FOMM_STATS_JS": str(stats_js)})
    modes = json.loads(out.stdout)
    probe, long = 16, 150
    assert modes["faster"][:probe] == ["serial"] * probe
    assert modes["faster"][probe:2 * probe] == ["overlap"] * probe
    assert modes["faster"][2 * probe:2 * probe + long] == ["overlap"] * long
    assert modes["faster"][2 * probe + long:3 * probe + long] == ["serial"] * probe  # re-probed
    for case in ("laggier", "slower", "crowded"):
        assert modes[case][2 * probe:2 * probe + long] == ["serial"] * long, case
        assert modes[case][2 * probe + long:3 * probe + long] == ["overlap"] * probe, case


def test_threads_need_cross_origin_isolation(browser, url, site, media):
    from fomm.web.serve import serve_site

    isolated = Page(browser, f"{url}?threads=2")
    assert isolated.stats()["backend"] == "WASM SIMD · 2 threads"
    isolated.page.close()
    with serve_site(site, isolated=False) as address:
        page = Page(browser, f"{address}?threads=2")
        assert page.page.evaluate("self.crossOriginIsolated") is False
        assert page.stats()["backend"] == "WASM SIMD · 1 thread (no cross-origin isolation)"
        page.set_photo(media["photo"])  # the networks run: the face found, the source encoded
        assert page.errors == []
        page.page.close()


def test_file_mode_makes_a_video_download(browser, url, media):
    from fomm.media.video import VideoWriter, iter_frames, probe

    clip = media["folder"] / "driving.mp4"
    frames = demo_frames(16, (320, 240))
    with VideoWriter(clip, fps=25) as writer:
        for frame in frames:
            writer.write(frame)
    page = Page(browser, url)
    page.set_photo(media["photo"])
    page.page.set_input_files("#clip", str(clip))
    page.page.wait_for_function("document.body.dataset.fileDone", timeout=300_000)
    assert page.page.evaluate("document.body.dataset.fileDone") == "16"
    assert page.page.evaluate("document.getElementById('progress').value") == 1
    data = page.page.evaluate("""async () => {
        const blob = await (await fetch(document.getElementById('download').href)).blob();
        const bytes = new Uint8Array(await blob.arrayBuffer());
        let s = ''; for (let i = 0; i < bytes.length; i += 8192)
          s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
        return btoa(s); }""")
    video = media["folder"] / "result.webm"
    video.write_bytes(base64.b64decode(data))
    info = probe(video)
    assert (info.width, info.height) == (320, 320)
    decoded = list(iter_frames(video))
    assert len(decoded) == 16
    assert np.abs(decoded[-1].astype(int) - decoded[0].astype(int)).mean() > 0.2
    assert page.network_requests() == []
    assert page.errors == []
    page.page.close()


def frame_payload(frames: list[np.ndarray]) -> list[dict]:
    """RGB frames as the page's ``window.fomm.animateFrames`` takes them (RGBA, base64)."""
    return [{"width": f.shape[1], "height": f.shape[0],
             "b64": base64.b64encode(np.dstack([f, np.full(f.shape[:2], 255, np.uint8)])
                                     .tobytes()).decode()} for f in frames]


ANIMATE = """async (frames) => {
    const dec = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
    const out = await window.fomm.animateFrames(frames.map((f) => (
      {width: f.width, height: f.height, rgba: dec(f.b64)})));
    const enc = (a) => { let s = ''; for (let i = 0; i < a.length; i += 8192)
      s += String.fromCharCode.apply(null, a.subarray(i, i + 8192)); return btoa(s); };
    return {box: window.fomm.state.animator.box,
            frames: out.map((r) => ({face: r.face, data: enc(r.image.data)}))};
}"""


def decoded(result: dict, shape: tuple[int, int]) -> list[np.ndarray]:
    return [np.frombuffer(base64.b64decode(f["data"]), np.uint8).reshape(*shape, 4)[..., :3]
            for f in result["frames"]]


def test_expression_controls_drive_the_layer(browser, url, media):
    manifest = json.loads((built_site() / "site.json").read_text())
    if not manifest["face_mesh"]:
        pytest.skip("this site has no face mesh (fomm.web.mesh_export)")
    frames = frame_payload(demo_frames(4, (320, 240)))
    page = Page(browser, url)
    p = page.page
    page.set_photo(media["photo"])
    off = decoded(p.evaluate(ANIMATE, frames), (320, 320))
    p.click("#expression-box summary")
    p.check("#expression")
    p.wait_for_function("document.getElementById('expression-note').textContent.includes('all')",
                        timeout=120_000)
    on = decoded(p.evaluate(ANIMATE, frames), (320, 320))
    p.select_option("#animation_region", "eyes")
    p.wait_for_function("document.getElementById('expression-note').textContent"
                        ".includes('eyes')", timeout=120_000)
    eyes = decoded(p.evaluate(ANIMATE, frames), (320, 320))
    assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(off, on)) > 0.05
    # eyes only: the head stays as in the photo, so the frames change much less than with motion
    motion = np.mean([np.abs(f.astype(int) - off[0]).mean() for f in off[1:]])
    still = np.mean([np.abs(f.astype(int) - eyes[0]).mean() for f in eyes[1:]])
    assert still < motion
    assert page.network_requests() == []  # the layer's networks came with the page
    assert page.errors == []
    p.close()


@pytest.mark.parametrize("size", [128])
def test_the_page_matches_the_python_frame_path(browser, url, media, size):
    """The same photo, frames and options through the page and through fomm live's frame step
    (:class:`fomm.live.loop.LiveAnimator` on fp32 ONNX Runtime): mean |Δ| <= 2/255 on the face."""
    from skimage import data

    from fomm.checkpoints.loading import load_model
    from fomm.config import AnimateOptions
    from fomm.inference.animator import Animator
    from fomm.live.loop import LiveAnimator, LiveOptions, live_animator

    photo = data.astronaut()[:320, 96:416].copy()
    frames = demo_frames(8, (320, 240))
    page = Page(browser, f"{url}?size={size}")
    page.set_photo(media["photo"])
    result = page.page.evaluate(ANIMATE, frame_payload(frames))
    page.page.close()
    web = decoded(result, (320, 320))
    assert all(f["face"] for f in result["frames"])

    opts = AnimateOptions(detail=False, expression=False, backend="onnx", precision="fp32")
    models, config = load_model(None)
    animator = live_animator(Animator(models, config, "cpu", "fp32", "onnx"), opts, size)
    step = LiveAnimator(animator, photo, LiveOptions(animate=opts, network_size=size))
    x0, y0, x1, y1 = (int(round(v)) for v in result["box"])
    face = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
    for i, (frame, got) in enumerate(zip(frames, web, strict=True)):
        expected = step(frame, i / 25)
        assert expected is not None
        diff = np.abs(got.astype(int) - expected.astype(int))[face]
        print(f"frame {i}: mean |difference| on the face {diff.mean():.3f}/255, "
              f"max {diff.max()}")
        assert diff.mean() <= 2, (i, diff.mean())
