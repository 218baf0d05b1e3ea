"""The HTTP API (fomm.app): uploads, validation, bounded queue, cancel, concurrency, shutdown."""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from conftest import write_clip
from PIL import Image
from tiny import tiny_models

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.jobs import FINISHED, Job, JobQueue, QueueFull  # noqa: E402
from fomm.app.serve import serve_in_thread  # noqa: E402
from fomm.checkpoints import save_checkpoint  # noqa: E402
from fomm.cli.main import main  # noqa: E402
from fomm.inference.animator import Animator  # noqa: E402
from fomm.media.video import count_frames, probe  # noqa: E402

NO_CROP = {"crop": "false"}  # the tiny model knows no faces: animate the whole image


def moving_square(n: int, size: int = 64) -> list[np.ndarray]:
    frames = []
    for t in range(n):
        frame = np.full((size, size, 3), 40, np.uint8)
        frame[20:40, 4 + 3 * t : 20 + 3 * t] = (220, 180, 60)
        frames.append(frame)
    return frames


class GatedAnimator(Animator):
    """The tiny model, but each frame waits for ``gate`` (so tests can hold a job running)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.frames = 0

    def animate_many(self, *args, **kwargs):
        for frame in super().animate_many(*args, **kwargs):
            self.gate.wait(timeout=20)
            self.frames += 1
            yield frame


@pytest.fixture(scope="module")
def animator() -> Animator:
    return Animator(*tiny_models(image_size=64), device="cpu")


@pytest.fixture
def gated() -> GatedAnimator:
    return GatedAnimator(*tiny_models(image_size=64), device="cpu")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    source = folder / "face.png"
    Image.fromarray(moving_square(1, 96)[0]).save(source)
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(source.read_bytes()[:60] + b"\0" * 200)
    zero = folder / "zero.avi"
    with av.open(str(zero), "w") as out:  # a video stream with no frames
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    text = folder / "notes.txt"
    text.write_text("this is not a video\n" * 50)
    return {"source": source, "corrupt": corrupt, "zero": zero, "text": text,
            "clip": write_clip(folder / "drive.mp4", frames=moving_square(12), fps=25, audio=True),
            "short": write_clip(folder / "short.mp4", frames=moving_square(3), fps=25)}


def make_client(tmp_path: Path, animator: Animator, **settings) -> TestClient:
    app = create_app(Settings(data_dir=str(tmp_path / "data"), **settings), animator=animator)
    return TestClient(app, base_url="http://localhost")  # a Host name the server answers to


@pytest.fixture
def client(tmp_path, animator) -> Iterator[TestClient]:
    with make_client(tmp_path, animator) as c:
        yield c


def submit(client, source: Path, driving: Path, **fields) -> httpx.Response:
    files = {"source": (source.name, source.read_bytes(), "image/png"),
             "driving": (driving.name, driving.read_bytes(), "video/mp4")}
    return client.post("/v1/animations", files=files, data={**NO_CROP, **fields})


def wait(client, url: str, until=FINISHED, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = client.get(url).json()
        if state["status"] in until:
            return state
        assert time.monotonic() < deadline, f"job still {state['status']} after {timeout} s"
        time.sleep(0.02)


def nothing_queued(client: TestClient) -> None:
    stats = client.app.state.queue.stats()
    assert (stats["queued"], stats["running"]) == (0, 0)
    jobs = Path(client.app.state.settings.data_dir) / "jobs"
    assert list(jobs.iterdir()) == []


# ---------------------------------------------------------------- happy path


def test_animation_end_to_end(client, media, tmp_path):
    r = submit(client, media["source"], media["clip"])
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] in ("queued", "running") and len(body["id"]) >= 22
    assert r.headers["location"] == body["status_url"]
    state = wait(client, body["status_url"])
    assert state["status"] == "succeeded", state
    assert state["progress"] == {"done": 12, "total": 12}
    assert state["result"]["frames"] == 12 and state["result"]["width"] == 64

    r = client.get(body["result_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    out = tmp_path / "result.mp4"
    out.write_bytes(r.content)
    assert count_frames(out) == 12
    assert probe(out).has_audio

    part = client.get(body["result_url"], headers={"Range": "bytes=10-99"})  # <video> seeking
    assert part.status_code == 206 and part.content == r.content[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(r.content)}"


def test_options_are_passed_on(client, media, tmp_path):
    r = submit(client, media["source"], media["clip"], relative="false", audio="false",
               best_frame="3", adapt_scale="true")
    assert r.status_code == 202, r.text
    state = wait(client, r.json()["status_url"])
    assert state["status"] == "succeeded", state
    out = tmp_path / "silent.mp4"
    out.write_bytes(client.get(state["result_url"]).content)
    assert not probe(out).has_audio


def test_face_crop_without_a_face_fails_with_the_core_message(client, tmp_path, media):
    flat = tmp_path / "flat.png"
    Image.new("RGB", (96, 96), (128, 128, 128)).save(flat)
    r = submit(client, flat, media["clip"], crop="true")
    assert r.status_code == 202
    state = wait(client, r.json()["status_url"])
    assert state["status"] == "failed"
    assert "no face" in state["error"] and "crop=false" in state["error"]
    assert "/" not in state["error"].split("crop=false")[0]  # no server path leaks
    assert client.get(state["result_url"]).status_code == 409


# ---------------------------------------------------------------- bad requests


@pytest.mark.parametrize("source, driving, status, code", [
    ("text", "clip", 415, "invalid_image"),
    ("corrupt", "clip", 415, "invalid_image"),
    ("source", "text", 415, "invalid_video"),
    ("source", "zero", 415, "invalid_video"),
    ("source", "source", 415, "invalid_video"),  # a still image is not a video
])  # fmt: skip
def test_bad_uploads_are_refused_and_nothing_is_queued(client, media, source, driving, status,
                                                       code):
    r = submit(client, media[source], media[driving])
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert str(client.app.state.settings.data_dir) not in r.text
    nothing_queued(client)


def test_size_limits_are_enforced_while_streaming(tmp_path, animator, media):
    with make_client(tmp_path, animator, max_video_mb=0.005) as client:  # 5 KB
        big = tmp_path / "big.mp4"
        big.write_bytes(media["clip"].read_bytes() + b"\0" * 10_000)
        r = submit(client, media["source"], big)
        assert r.status_code == 413
        assert r.json()["error"]["code"] in ("file_too_large", "request_too_large")
        nothing_queued(client)
        # a body that does not announce its length is cut at the limit too
        boundary = "XyZ"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"driving\"; "
                f"filename=\"x.mp4\"\r\n\r\n").encode()
        chunks = iter([head] + [b"\0" * 4096] * 10 + [f"\r\n--{boundary}--\r\n".encode()])
        r = client.post("/v1/animations", content=chunks,
                        headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
        nothing_queued(client)


def test_duration_and_resolution_limits(tmp_path, animator, media):
    with make_client(tmp_path, animator, max_duration_s=0.2, max_resolution=80) as client:
        r = submit(client, media["source"], media["clip"])  # 96 px source
        assert r.status_code == 422 and r.json()["error"]["code"] == "resolution_too_large"
        small = tmp_path / "small.png"
        Image.new("RGB", (64, 64)).save(small)
        r = submit(client, small, media["clip"])  # 12 frames at 25 fps = 0.48 s
        assert r.status_code == 422 and r.json()["error"]["code"] == "video_too_long"
        nothing_queued(client)


@pytest.mark.parametrize("fields, code", [
    ({"relative": "maybe"}, "invalid_option"),
    ({"face_index": "-1"}, "invalid_option"),
    ({"crop_driving": "sideways"}, "invalid_option"),
    ({"best_frame": "1", "find_best_frame": "true"}, "invalid_option"),
    ({"face_index": "1", "multi_person": "true"}, "invalid_option"),
    ({"output": "/etc/passwd"}, "unknown_field"),
])  # fmt: skip
def test_bad_options_are_refused(client, media, fields, code):
    r = submit(client, media["source"], media["clip"], **fields)
    assert r.status_code == 400 and r.json()["error"]["code"] == code
    nothing_queued(client)


def test_best_frame_out_of_range_and_missing_file(client, media):
    r = submit(client, media["source"], media["clip"], best_frame="12")
    assert r.status_code == 422 and "12 frames" in r.json()["error"]["message"]
    r = client.post("/v1/animations", files={"source": ("a.png", media["source"].read_bytes())})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_file"
    r = client.post("/v1/animations", json={"source": "x"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "not_multipart"
    nothing_queued(client)


def test_unknown_ids_and_pages(client):
    for url in ("/v1/animations/nope", "/v1/animations/nope/result.mp4",
                "/v1/animations/..%2F..%2Fetc%2Fpasswd"):
        r = client.get(url)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert client.delete("/v1/animations/nope").status_code == 404
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"]["image_size"] == 64
    page = client.get("/")
    assert page.status_code == 200 and "<script src=\"/static/app.js\">" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert "/v1/animations" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 404  # off by default: its page uses a CDN


def test_examples_are_served_or_absent(client):
    r = client.get("/v1/examples")
    if r.status_code == 404:  # no fomm.inference.demo.builtin_inputs (or its clip) in this install
        assert r.json()["error"]["code"] == "not_found"
        assert client.get("/v1/examples/source.png").status_code == 404
        return
    urls = r.json()
    image = client.get(urls["source_url"])
    assert image.status_code == 200
    assert Image.open(io.BytesIO(image.content)).size[0] > 0
    assert client.get(urls["driving_url"]).status_code == 200
    assert client.get("/v1/examples/other.txt").status_code == 404


# ---------------------------------------------------------------- queue, cancel, shutdown


def test_full_queue_answers_503_with_retry_after(tmp_path, gated, media):
    with make_client(tmp_path, gated, max_queue=1, workers=1) as client:
        first = submit(client, media["source"], media["short"])
        second = submit(client, media["source"], media["short"])
        assert (first.status_code, second.status_code) == (202, 202)
        third = submit(client, media["source"], media["short"])
        assert third.status_code == 503
        assert int(third.headers["retry-after"]) >= 1
        assert third.json()["error"]["code"] == "busy"
        assert len(list((tmp_path / "data" / "jobs").iterdir())) == 2  # nothing left of it
        gated.gate.set()
        for r in (first, second):
            assert wait(client, r.json()["status_url"])["status"] == "succeeded"
        assert submit(client, media["source"], media["short"]).status_code == 202


def test_cancel_a_running_and_a_queued_job(tmp_path, gated, media):
    with make_client(tmp_path, gated) as client:
        running = submit(client, media["source"], media["clip"]).json()
        queued = submit(client, media["source"], media["clip"]).json()
        wait(client, running["status_url"], until=("running",))
        jobs = tmp_path / "data" / "jobs"

        r = client.delete(queued["status_url"])
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert not (jobs / queued["id"]).exists()

        r = client.delete(running["status_url"])
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        gated.gate.set()  # the worker writes one more frame, sees the cancel and stops
        deadline = time.monotonic() + 20
        while (jobs / running["id"]).exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert gated.frames < 12
        assert client.get(running["status_url"]).json()["status"] == "cancelled"
        assert client.get(running["result_url"]).status_code == 409
        # deleting a finished job forgets it
        assert client.delete(running["status_url"]).status_code == 200
        assert client.get(running["status_url"]).status_code == 404
        assert client.app.state.queue.stats()["running"] == 0


def test_shutdown_keeps_the_queued_job_and_queues_the_running_one_again(tmp_path, gated, media):
    client = make_client(tmp_path, gated, shutdown_grace_s=0.2)
    with client:
        running = submit(client, media["source"], media["clip"]).json()
        queued = submit(client, media["source"], media["clip"]).json()
        wait(client, running["status_url"], until=("running",))
        threading.Timer(0.5, gated.gate.set).start()  # the frame in flight ends after the grace
    queue = client.app.state.queue
    assert queue.get(queued["id"]).status == "queued"  # runs at the next start (test_app_durable)
    job = queue.get(running["id"])
    deadline = time.monotonic() + 60  # its worker may outlive stop() on a loaded machine
    while job.status == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (job.status, job.restarts) == ("queued", 1)
    assert not job.output.exists()
    assert not any(job.folder.glob("*.mp4"))  # nothing half-written was left
    assert (job.folder / "driving.upload").is_file()  # its inputs are kept for the next run


def test_eight_concurrent_submissions_over_http(tmp_path, animator):
    lengths = [5, 6, 7, 8, 9, 10, 11, 12]
    source = tmp_path / "face.png"
    Image.fromarray(moving_square(1, 80)[0]).save(source)
    clips = [write_clip(tmp_path / f"drive{n}.mp4", frames=moving_square(n), fps=25)
             for n in lengths]
    app = create_app(Settings(data_dir=str(tmp_path / "data"), max_queue=8), animator=animator)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=60) as http:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda clip: submit(http, source, clip), clips))
        assert [r.status_code for r in responses] == [202] * 8
        assert len({r.json()["id"] for r in responses}) == 8
        for n, r in zip(lengths, responses, strict=True):
            state = wait(http, r.json()["status_url"])
            assert state["status"] == "succeeded", state
            assert state["progress"] == {"done": n, "total": n}
            out = tmp_path / f"out{n}.mp4"
            out.write_bytes(http.get(r.json()["result_url"]).content)
            assert count_frames(out) == n


def test_fomm_serve_command_serves_and_shuts_down_cleanly(tmp_path, media):
    models, cfg = tiny_models(image_size=64)
    save_checkpoint(tmp_path / "tiny.safetensors", models, cfg)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fomm", "serve", "--checkpoint", str(tmp_path / "tiny.safetensors"),
         "--device", "cpu", "--port", str(port), "--data-dir", str(data), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "fomm serve did not start"
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=60) as http:
            r = submit(http, media["source"], media["clip"])
            assert r.status_code == 202, r.text
            assert wait(http, r.json()["status_url"])["status"] == "succeeded"
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output
    assert (data / "jobs" / r.json()["id"] / "result.mp4").is_file()  # kept until the TTL
    assert (data / "jobs.sqlite3").is_file()


def test_fomm_serve_reports_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--checkpoint", str(bad), "--port", "1"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")


# ---------------------------------------------------------------- the queue on its own


def test_job_queue_ttl_and_errors(tmp_path):
    def run(job, on_progress):
        if job.payload == "boom":
            raise RuntimeError("secret detail")
        on_progress(1, 1)
        return {"ok": True}

    queue = JobQueue(run, max_queue=2, workers=1, ttl_s=60)
    with pytest.raises(QueueFull):  # not started: not accepting
        queue.submit(Job("a", tmp_path / "a", None))
    queue.start()
    try:
        for name in ("ok", "boom"):
            (tmp_path / name).mkdir()
            queue.submit(Job(name, tmp_path / name, name))
        deadline = time.monotonic() + 10
        while any(queue.get(n).status not in FINISHED for n in ("ok", "boom")):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert queue.snapshot("ok")["result"] == {"ok": True}
        boom = queue.snapshot("boom")
        assert boom["status"] == "failed" and "secret" not in boom["error"]
        assert queue.remove_expired(now=time.time()) == 0
        assert queue.remove_expired(now=time.time() + 61) == 2
        assert queue.get("ok") is None and not (tmp_path / "ok").exists()
    finally:
        queue.stop(grace_s=1)
