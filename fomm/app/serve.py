"""The ``fomm serve`` subcommand, and a helper that runs the app on a loopback port in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


def server_options(settings) -> dict:
    """uvicorn options that bound slow clients: header deadline, header size, keep-alive, and
    WebSocket message size and backlog."""
    from fomm.app.protocol import MAX_HEADER_BYTES, WS_MAX_MESSAGE, WS_MAX_QUEUE, bounded_h11

    return {"http": bounded_h11(settings.header_timeout_s), "timeout_keep_alive": 5,
            "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
            "ws_max_size": WS_MAX_MESSAGE, "ws_max_queue": WS_MAX_QUEUE}


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", timeout_s: float = 30) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free port of ``host`` in a thread; yields its base URL.

    For tests and benchmarks: the app's lifespan runs at start and at exit, as under ``fomm serve``.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    settings = getattr(getattr(app, "state", None), "settings", None)
    options = server_options(settings) if settings is not None else {}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="fomm-uvicorn")
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s + 30)
        sock.close()
