"""The live WebSocket runs the networks as ``fomm live`` does: the side chosen where the CPU
draws them fast enough, on ``network_threads`` threads."""

from __future__ import annotations

import pytest
from tiny import tiny_models

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.live import encode_jpeg  # noqa: E402
from fomm.inference.animator import Animator  # noqa: E402


def test_live_socket_chooses_the_network_size_and_threads(tmp_path, monkeypatch):
    from skimage import data

    from fomm.app import live as live_module
    from fomm.live import loop

    timed: list[tuple[int, int]] = []

    def network_ms(animator, image, frames=loop.PROBE_FRAMES, threads=1):
        timed.append((animator.size, threads))
        return 80.0 if animator.size == 256 else 30.0  # 256 over either budget, 192 within

    monkeypatch.setattr(loop, "network_ms", network_ms)
    monkeypatch.setattr(live_module, "network_threads", lambda: 1)
    seen = []
    real = live_module.LiveAnimator

    def spy(animator, photo, opts):
        seen.append(animator)
        return real(animator, photo, opts)

    monkeypatch.setattr(live_module, "LiveAnimator", spy)
    server = Animator(*tiny_models(image_size=256), device="cpu")
    app = create_app(Settings(data_dir=str(tmp_path)), animator=server)
    with TestClient(app) as client:
        for _ in range(2):  # chosen at the first session, kept for the next
            with client.websocket_connect("/v1/live") as ws:
                ws.send_bytes(encode_jpeg(data.astronaut()[:256, 128:384]))
                assert ws.receive_json()["type"] == "ready"
    assert [size for size, _ in timed] == [256, 192]
    assert len(seen) == 2 and seen[0] is seen[1] and seen[0].size == 192
    if server.backend in ("onnx", "openvino"):  # graph backends: timed on their one thread
        assert all(threads == 1 for _, threads in timed)
