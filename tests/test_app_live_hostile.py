"""Hostile live clients (issue 24): image bombs, silence, malformed messages, floods.

Each is answered and ends (or not) cleanly: a JSON ``error`` and a close code for what ends the
session (1003 text where the photo was due, 1007 what cannot be read, 1008 a limit), a
``skipped`` answer for a camera frame that cannot be used; the slot is freed for the next.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from fuzz_bounds import Bounds
from tiny import tiny_models

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from fomm.app import live as live_module  # noqa: E402
from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.live import LiveLimits, _Clock, encode_jpeg, page_message  # noqa: E402
from fomm.app.uploads import UploadError, decode_image_bytes  # noqa: E402
from fomm.inference.animator import Animator  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from soak import jpeg_bomb, png_bomb  # noqa: E402  (benchmarks/soak.py: the same payloads)


def photo_bytes() -> bytes:
    from skimage import data

    return encode_jpeg(data.astronaut()[:256, 128:384])


@pytest.fixture(scope="module")
def animator():
    return Animator(*tiny_models(image_size=64), device="cpu")


def make(tmp_path, animator, **settings) -> TestClient:
    app = create_app(Settings(data_dir=str(tmp_path / "data"), **settings), animator=animator)
    return TestClient(app)


def ended(ws) -> tuple[dict, int, dict]:
    """The error message, the close code and the close reason (JSON) that end a session."""
    error = ws.receive_json()
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_text()
    return error, closed.value.code, json.loads(closed.value.reason)


def start(ws) -> None:
    ws.send_bytes(photo_bytes())
    assert ws.receive_json()["type"] == "ready"
    ws.receive_bytes()


def still_free(client) -> None:
    """The slot is free: a new session gets ready."""
    with client.websocket_connect("/v1/live") as ws:
        start(ws)


@pytest.mark.parametrize("bomb", ["png", "jpeg"])
def test_image_bombs_are_refused_by_their_header(tmp_path, animator, bomb):
    data = png_bomb(6000) if bomb == "png" else jpeg_bomb(20000)
    with make(tmp_path, animator) as client:
        with client.websocket_connect("/v1/live") as ws:  # as the photo
            ws.send_bytes(data)
            error, code, reason = ended(ws)
        assert error["code"] == "bad_photo" and "largest side may be 4096" in error["message"]
        assert code == 1008 and reason == {"code": "bad_photo"}
        with client.websocket_connect("/v1/live") as ws:  # as a camera frame
            start(ws)
            ws.send_bytes(data)
            skipped = ws.receive_json()
            assert skipped["type"] == "skipped" and skipped["code"] == "resolution_too_large"
            ws.send_bytes(encode_jpeg(np.full((120, 160, 3), 90, np.uint8)))
            assert ws.receive_json()["type"] == "frame"  # the session goes on
            ws.receive_bytes()


def test_a_silent_session_is_closed_and_frees_the_slot(tmp_path, animator):
    with make(tmp_path, animator, live_photo_s=0.5, live_idle_s=0.5) as client:
        with client.websocket_connect("/v1/live") as ws:  # no photo
            error, code, reason = ended(ws)
            assert (error["code"], code, reason["code"]) == ("photo_timeout", 1008,
                                                             "photo_timeout")
        with client.websocket_connect("/v1/live") as ws:  # a photo, then nothing
            start(ws)
            error, code, _ = ended(ws)
            assert (error["code"], code) == ("idle", 1008)
            assert "--" not in error["message"]
        still_free(client)


def test_a_session_has_a_total_limit(tmp_path, animator):
    with make(tmp_path, animator, live_session_s=1.0) as client:
        with client.websocket_connect("/v1/live") as ws:
            start(ws)
            frame = encode_jpeg(np.full((120, 160, 3), 90, np.uint8))
            for _ in range(1000):  # keeps sending: the session still ends
                ws.send_bytes(frame)
                answer = ws.receive_json()
                if answer["type"] == "error":
                    break
                ws.receive_bytes()
            assert answer["code"] == "session_limit"
        still_free(client)


@pytest.mark.parametrize("message, code, close", [
    ("[" * 3000 + "]" * 1000, "bad_message", 1007),  # nested deeper than json's recursion limit
    ("not json", "bad_message", 1007),
    ("[1, 2]", "bad_message", 1007),
    ('{"type": 5}', "bad_message", 1007),
    ('{"type": "teleport"}', "bad_message", 1008),
    ('{"type": "reference", "pad": "' + "x" * 5000 + '"}', "bad_message", 1008),
])
def test_malformed_commands_end_the_session_cleanly(tmp_path, animator, message, code, close):
    with make(tmp_path, animator) as client:
        with client.websocket_connect("/v1/live") as ws:
            start(ws)
            ws.send_text(message)
            error, got, reason = ended(ws)
        assert (error["type"], error["code"], got, reason["code"]) == ("error", code, close, code)
        still_free(client)


def test_text_where_the_photo_was_due_is_1003(tmp_path, animator):
    with make(tmp_path, animator) as client:
        with client.websocket_connect("/v1/live") as ws:
            ws.send_text('{"type": "reference"}')
            error, code, _ = ended(ws)
        assert (error["code"], code) == ("bad_message", 1003)
        with client.websocket_connect("/v1/live") as ws:
            ws.send_bytes(b"\0garbage")
            error, code, _ = ended(ws)
        assert (error["code"], code) == ("bad_photo", 1007)
        still_free(client)


def test_every_frame_gets_an_answer(tmp_path, animator):
    good = encode_jpeg(np.full((120, 160, 3), 90, np.uint8))
    with make(tmp_path, animator) as client, client.websocket_connect("/v1/live") as ws:
        start(ws)
        for data in (b"\0not an image", b"", good, b"GIF89a", good):
            ws.send_bytes(data)
            answer = ws.receive_json()
            if data is good:
                assert answer["type"] == "frame"
                ws.receive_bytes()
            else:
                assert answer["type"] == "skipped" and answer["code"] == "invalid_image"
                assert "--" not in answer["message"]


def test_messages_are_read_at_most_max_fps(monkeypatch):
    now = [0.0]
    slept = []

    async def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(live_module.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(live_module.asyncio, "sleep", sleep)
    clock = _Clock(LiveLimits(max_fps=10))

    async def flood():
        for _ in range(40):  # 40 messages at once: one second's burst, then 10 a second
            await clock._pace()

    asyncio.run(flood())
    assert len(slept) == 30 and sum(slept) == pytest.approx(3.0)
    now[0] += 10  # a pause refills the bucket (up to one second's worth)
    slept.clear()
    asyncio.run(flood())
    assert len(slept) == 30


def test_page_messages_name_no_command_line_options():
    assert page_message("no face found in the source image; use --no-crop to animate the "
                        "whole image") == "no face found in the source image"
    assert page_message("the expression layer needs a face crop: off with --no-crop") == \
        "the expression layer needs a face crop: off"
    assert page_message("a plain message") == "a plain message"


@pytest.mark.parametrize("mode, dtype", [("I;16", np.uint16), ("RGB", np.uint8),
                                         ("RGBA", np.uint8), ("L", np.uint8), ("P", np.uint8)])
def test_decoded_images_are_8_bit_rgb(mode, dtype):
    values = np.linspace(0, np.iinfo(dtype).max, 40 * 30).reshape(40, 30).astype(dtype)
    if mode in ("RGB", "RGBA"):
        values = np.repeat(values[..., None], len(mode), axis=2)
    image = Image.fromarray(values)
    image = image.convert("P") if mode == "P" else image
    buf = io.BytesIO()
    image.save(buf, "PNG")
    rgb = decode_image_bytes(buf.getvalue(), "x", 4096)
    assert rgb.shape == (40, 30, 3) and rgb.dtype == np.uint8
    assert rgb.max() >= 250 and rgb.min() <= 5  # the whole range, not clipped


def test_decode_refuses_by_header_before_decoding():
    with pytest.raises(UploadError) as err:
        decode_image_bytes(jpeg_bomb(20000), "the photo", 4096)
    assert err.value.status == 422
    with pytest.raises(UploadError) as err:
        decode_image_bytes(b"x" * 100, "the photo", 4096, max_bytes=10)
    assert err.value.status == 413


def test_bombs_cost_no_memory_under_uvicorn(tmp_path, animator):
    """Under uvicorn, as ``fomm serve`` runs: 20000x20000 JPEG bombs as photos and as frames are
    answered, /healthz with them, and this process's memory does not grow (a decode of one
    would take 1.2 GB, and the allocator keeps much of it)."""
    import httpx
    import psutil
    from websockets.sync.client import connect

    from fomm.app.serve import serve_in_thread

    me = psutil.Process()
    app = create_app(Settings(data_dir=str(tmp_path / "data")), animator=animator)
    bomb = jpeg_bomb(20000)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        socket_url = url.replace("http", "ws") + "/v1/live"
        with connect(socket_url) as ws:  # the model's first session warms it up
            ws.send(photo_bytes())
            assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        before, peak, stop = me.memory_info().rss, [0], threading.Event()

        def sample():
            while not stop.wait(0.01):
                peak[0] = max(peak[0], me.memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for _ in range(3):
                with connect(socket_url) as ws:
                    ws.send(bomb)
                    assert json.loads(ws.recv(timeout=30))["code"] == "bad_photo"
                assert http.get("/healthz").status_code == 200
                with connect(socket_url) as ws:
                    ws.send(photo_bytes())
                    assert json.loads(ws.recv(timeout=60))["type"] == "ready"
                    ws.recv(timeout=30)
                    ws.send(bomb)
                    assert json.loads(ws.recv(timeout=30))["type"] == "skipped"
                assert http.get("/healthz").status_code == 200
        finally:
            stop.set()
            sampler.join()
        after = me.memory_info().rss
    assert peak[0] - before < 500 * 2**20, (peak[0] - before) / 2**20
    assert after - before < 200 * 2**20, (after - before) / 2**20


# ---------------------------------------------------------------- fuzz: generated and mutated


def _seeds() -> list[bytes]:
    """Small valid images of every format the server takes, to mutate."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    seeds = []
    for fmt in ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, fmt)
        seeds.append(buf.getvalue())
    return seeds


SEEDS = _seeds()


def _mutated(draw) -> bytes:
    from hypothesis import strategies as st

    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "size"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:  # a header field set to a huge value
            data[at:at + 4] = struct.pack(">I", draw(st.integers(2**12, 2**32 - 1)))
        if not data:
            data = bytearray(b"\0")
    return bytes(data)


def _fuzz_images(examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.one_of(st.composite(lambda draw: _mutated(draw))(), st.binary(max_size=512)))
    def run(data: bytes) -> None:
        with bounds.case():
            one(data)

    def one(data: bytes) -> None:
        try:
            rgb = decode_image_bytes(data, "the photo", 512, live_module.MAX_MESSAGE)
        except UploadError as err:
            assert err.status in (413, 415, 422)
        else:
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            assert max(rgb.shape[:2]) <= 512

    bounds = Bounds("live images")
    run()
    bounds.check()


def _fuzz_commands(examples: int) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from fomm.app.live import _command, _Refused

    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                          max_leaves=30)
    texts = st.one_of(st.text(max_size=300), values.map(json.dumps),
                      st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
                      st.integers(1, 5000).map(lambda n: '{"a":' * n + "1" + "}" * n))

    @settings(max_examples=examples, deadline=None, derandomize=True)
    @given(texts)
    def run(text: str) -> None:
        with bounds.case():
            one(text)

    def one(text: str) -> None:
        try:
            command = _command(text)
        except _Refused as err:
            assert err.close in (1007, 1008) and err.code == "bad_message"
        else:
            assert isinstance(command, dict) and isinstance(command["type"], str)

    bounds = Bounds("live commands")
    run()
    bounds.check()


def test_fuzz_live_images_and_commands():
    pytest.importorskip("hypothesis")
    _fuzz_images(200)
    _fuzz_commands(200)


@pytest.mark.slow
def test_fuzz_live_images_and_commands_long():
    pytest.importorskip("hypothesis")
    _fuzz_images(5000)
    _fuzz_commands(5000)
