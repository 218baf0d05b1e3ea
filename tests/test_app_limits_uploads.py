"""The number issue 24 names for dripping uploads, with ``fomm serve``'s default limits under
uvicorn: while clients hold every upload slot (9: the queue's 8 and the running job) sending a byte
every 10 s, a normal upload is accepted within 45 s.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

import httpx  # noqa: E402
import test_app as base  # noqa: E402

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.serve import serve_in_thread  # noqa: E402

animator, media = base.animator, base.media  # the fixtures of test_app
ACCEPTED_WITHIN_S = 45  # issue 24
DRIP_EVERY_S = 10  # issue 24: one byte every 10 s


def drip(address: tuple[str, int], stop: threading.Event, answers: list[bytes]) -> None:
    """An upload's headers, then one body byte every DRIP_EVERY_S until the server answers."""
    with socket.create_connection(address) as sock:
        sock.sendall(b"POST /v1/animations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: multipart/form-data; boundary=B\r\n"
                     b"Content-Length: 100000\r\n\r\n--B\r\nContent-Disposition: form-data; "
                     b'name="driving"; filename="a.mp4"\r\n\r\n')
        sock.settimeout(DRIP_EVERY_S)
        try:
            while not stop.is_set():
                try:
                    answers.append(sock.recv(4096))
                    return  # answered (or closed): the slot is free
                except TimeoutError:
                    sock.sendall(b"\0")
        except OSError:
            answers.append(b"")


def test_a_normal_upload_gets_in_within_45_s_while_every_slot_drips(tmp_path, animator, media):
    settings = Settings(data_dir=str(tmp_path / "data"))
    slots = settings.max_queue + settings.workers
    stop, answers = threading.Event(), []
    with serve_in_thread(create_app(settings, animator=animator)) as url:
        parts = urlsplit(url)
        address = parts.hostname, parts.port
        drippers = [threading.Thread(target=drip, args=(address, stop, answers))
                    for _ in range(slots)]
        start = time.monotonic()
        for thread in drippers:
            thread.start()
        try:
            with httpx.Client(base_url=url, timeout=30) as http:
                deadline = time.monotonic() + 10
                while True:  # until the drippers' headers are in and they hold every slot
                    r = base.submit(http, media["source"], media["clip"])
                    if r.status_code == 503:
                        break
                    assert r.status_code == 202, r.text
                    http.delete(r.json()["status_url"])
                    assert time.monotonic() < deadline, "the drippers never held the slots"
                    time.sleep(0.1)
                assert r.json()["error"]["message"].startswith("too many uploads in progress")
                while r.status_code == 503:  # a client retrying once a second
                    assert time.monotonic() - start <= ACCEPTED_WITHIN_S + 5, "still busy"
                    time.sleep(1)
                    r = base.submit(http, media["source"], media["clip"])
                accepted_s = time.monotonic() - start
                print(f"accepted {accepted_s:.1f} s after the drippers began")
                assert r.status_code == 202, r.text
                assert base.wait(http, r.json()["status_url"])["status"] == "succeeded"
        finally:
            stop.set()
            for thread in drippers:
                thread.join()
    assert accepted_s <= ACCEPTED_WITHIN_S, accepted_s
    assert len(answers) == slots and all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
