"""Slow clients (issue 15 §4): request headers have a deadline, idle connections are closed.

Raw sockets against the app under uvicorn with fomm's protocol (fomm.app.protocol), as
``fomm serve`` runs it.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

import test_app as base  # noqa: E402

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.serve import serve_in_thread  # noqa: E402

animator, media = base.animator, base.media  # the fixtures of test_app
DEADLINE_S = 1.5
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: trickle\r\n\r\n"


@pytest.fixture
def address(tmp_path, animator):
    app = create_app(Settings(data_dir=str(tmp_path / "data"), header_timeout_s=DEADLINE_S),
                     animator=animator)
    with serve_in_thread(app) as url:
        parts = urlsplit(url)
        yield parts.hostname, parts.port


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response (headers and a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and when it closed (monotonic)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data, time.monotonic()


def test_headers_sent_a_byte_at_a_time_are_cut_off(address):
    sock = socket.create_connection(address)
    start = time.monotonic()
    sent = 0
    with sock:
        sock.settimeout(0.3)
        try:
            for byte in REQUEST[:-4] * 10:  # far longer than the deadline at this pace
                sock.sendall(bytes([byte]))
                sent += 1
                try:
                    answer = sock.recv(4096)
                    break  # the server answered (or closed): stop sending
                except TimeoutError:
                    continue
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"header_timeout" in answer
    assert DEADLINE_S - 0.1 <= elapsed < DEADLINE_S + 3, elapsed
    assert sent < len(REQUEST)  # cut off long before the headers could end


def test_a_connection_that_sends_nothing_is_closed(address):
    with socket.create_connection(address) as sock:
        start = time.monotonic()
        data, closed = read_until_closed(sock, timeout=DEADLINE_S + 5)
    assert data == b""  # nothing was asked: closed without an answer
    assert closed - start < DEADLINE_S + 3


def test_keep_alive_requests_get_the_same_deadline(address):
    with socket.create_connection(address) as sock:
        sock.settimeout(10)
        for _ in range(2):  # prompt requests on one connection are answered
            sock.sendall(REQUEST)
            assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(REQUEST[:10])  # then a third that stalls in its headers
        start = time.monotonic()
        data, closed = read_until_closed(sock, timeout=DEADLINE_S + 5)
    assert data.startswith(b"HTTP/1.1 408")
    assert closed - start < DEADLINE_S + 3


def test_ordinary_requests_are_unaffected(address, media):
    """A whole request, then a pause longer than the deadline while the body is read."""
    source = media["source"].read_bytes()
    with socket.create_connection(address) as sock:
        sock.settimeout(10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        body = (b"--B\r\nContent-Disposition: form-data; name=\"source\"; filename=\"a.png\"\r\n"
                b"\r\n" + source + b"\r\n--B--\r\n")
        sock.sendall(b"POST /v1/animations HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: multipart/form-data; boundary=B\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        time.sleep(DEADLINE_S + 0.5)  # the headers are in: the body has the upload's own bound
        sock.sendall(body)
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 400") and b"missing_file" in answer, answer


def exchange(address, data: bytes, pieces: int = 1) -> bytes:
    """Send ``data`` in ``pieces`` writes; everything the server answers until it closes."""
    with socket.create_connection(address) as sock:
        sock.settimeout(10)
        step = -(-len(data) // pieces)
        try:
            for i in range(0, len(data), step):
                sock.sendall(data[i:i + step])
                time.sleep(0.01 if pieces > 1 else 0)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end: the answer is still there to read
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"connection: keep-alive" not in answer.lower() \
                        and answer.startswith(b"HTTP/1.1 200"):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    return answer


@pytest.mark.parametrize("pieces", [1, 40])
def test_a_big_request_head_gets_431_however_it_arrives(address, pieces):
    head = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
            + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(100)) + b"\r\n")
    assert len(head) > 100_000
    answer = exchange(address, head, pieces)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"headers_too_large" in answer


def test_a_head_under_the_limit_is_served(address):
    head = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
            + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(20)) + b"\r\n")
    answer = exchange(address, head)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def drip(address, stop) -> None:
    """An upload that sends its headers, then one body byte every 2 s until cut or stopped."""
    body_head = b'--B\r\nContent-Disposition: form-data; name="driving"; filename="a.mp4"\r\n\r\n'
    with socket.create_connection(address) as sock:
        sock.sendall(b"POST /v1/animations HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: multipart/form-data; boundary=B\r\n"
                     b"Content-Length: 100000\r\n\r\n" + body_head)
        sock.settimeout(2)
        try:
            while not stop.is_set():
                try:
                    if sock.recv(4096):
                        return  # answered (cut): the slot is free
                except TimeoutError:
                    sock.sendall(b"\0")
        except OSError:
            return


def test_dripping_uploads_free_their_slots(tmp_path, animator, media):
    """Every upload slot held by a client sending a byte every 2 s: they are cut by the minimum
    rate, and a normal upload gets in."""
    import threading

    app = create_app(Settings(data_dir=str(tmp_path / "data"), max_queue=1, workers=1,
                              upload_min_rate_kib=1), animator=animator)
    stop = threading.Event()
    with serve_in_thread(app) as url:
        parts = urlsplit(url)
        address = parts.hostname, parts.port
        drippers = [threading.Thread(target=drip, args=(address, stop)) for _ in range(2)]
        for thread in drippers:
            thread.start()
        time.sleep(1)  # their headers are in
        try:
            import httpx

            with httpx.Client(base_url=url, timeout=30) as http:
                statuses = []
                for _ in range(60):  # one try a second: busy while the drippers hold the slots
                    r = base.submit(http, media["source"], media["clip"])
                    statuses.append(r.status_code)
                    if r.status_code != 503:
                        break
                    time.sleep(1)
                assert statuses[0] == 503  # the drippers held every slot
                assert statuses[-1] == 202, statuses
        finally:
            stop.set()
            for thread in drippers:
                thread.join()
