"""The live mode of the web page over its WebSocket (in-process client, no browser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import tiny_models

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.live import decode_image, encode_jpeg  # noqa: E402
from fomm.inference.animator import Animator  # noqa: E402


def camera_frames(n: int) -> list[np.ndarray]:
    """A real face (skimage's astronaut) moving sideways in a 320×240 frame."""
    from skimage import data

    face = data.astronaut()[0:300, 100:400][::2, ::2]  # 150×150
    frames = []
    for i in range(n):
        frame = np.full((240, 320, 3), 80, np.uint8)
        x = 60 + 8 * i
        frame[45:195, x : x + 150] = face
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    animator = Animator(*tiny_models(image_size=64), device="cpu")
    app = create_app(Settings(data_dir=str(tmp_path_factory.mktemp("serve"))), animator=animator)
    with TestClient(app) as client:
        yield client


def photo_bytes() -> bytes:
    from skimage import data

    return encode_jpeg(data.astronaut()[:256, 128:384])


def test_live_socket_animates_frames(client):
    with client.websocket_connect("/v1/live") as ws:
        ws.send_bytes(photo_bytes())
        ready = ws.receive_json()
        assert ready == {"type": "ready", "width": 256, "height": 256}
        still = decode_image(ws.receive_bytes())
        results, faces, latencies = [], 0, []
        for frame in camera_frames(6):
            ws.send_bytes(encode_jpeg(frame))  # one in flight: the next after the answer
            info = ws.receive_json()
            assert info["type"] == "frame" and info["latency_ms"] >= 0
            faces += info["face"]
            latencies.append(info["latency_ms"])
            results.append(decode_image(ws.receive_bytes()))
            if len(results) == 2:
                ws.send_text('{"type": "reference"}')
        print(f"live socket: {info['fps']} fps, latency {np.median(latencies):.0f} ms (median)")
    assert faces >= 5 and all(r.shape == still.shape for r in results)
    assert np.abs(results[-1].astype(int) - results[1].astype(int)).mean() > 0.1  # it moves


def test_live_socket_one_session_per_model(client):
    with client.websocket_connect("/v1/live") as first:
        first.send_bytes(photo_bytes())
        assert first.receive_json()["type"] == "ready"
        with client.websocket_connect("/v1/live") as second:
            answer = second.receive_json()
            assert answer["type"] == "error" and answer["code"] == "busy"


def test_live_socket_refuses_a_photo_that_is_not_an_image(client):
    with client.websocket_connect("/v1/live") as ws:
        ws.send_bytes(b"not an image")
        answer = ws.receive_json()
        assert answer["type"] == "error" and answer["code"] == "bad_photo"


def test_live_socket_runs_with_the_live_defaults(client, monkeypatch):
    from fomm.app import live as live_module

    seen = {}
    real = live_module.LiveAnimator

    def spy(animator, photo, opts):
        seen["detail"], seen["threads"] = opts.animate.detail, torch.get_num_threads()
        seen["backend"] = animator.backend
        return real(animator, photo, opts)

    monkeypatch.setattr(live_module, "LiveAnimator", spy)
    with client.websocket_connect("/v1/live") as ws:
        ws.send_bytes(photo_bytes())
        assert ws.receive_json()["type"] == "ready"
    assert seen["detail"] is False  # the server's files keep --detail on; live is off
    if seen["backend"] == "onnx":
        assert seen["threads"] == 1  # torch's glue on one thread beside ONNX Runtime
