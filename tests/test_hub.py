"""`fomm weights`: cached, resumable, verified downloads, tested against a loopback HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fomm.checkpoints import hub
from fomm.errors import CheckpointError, FommError

NAME = "test-vox.pdparams"


class Server(http.server.ThreadingHTTPServer):
    """Serves ``body`` at any path; ``cut_first`` stops the first response half-way."""

    body: bytes
    cut_first = False
    ranges: list[str | None]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server: Server = self.server  # type: ignore[assignment]
        body, start = server.body, 0
        server.ranges.append(self.headers.get("Range"))
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if server.cut_first and len(server.ranges) == 1:
            self.wfile.write(body[: len(body) // 2])  # then the connection drops
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def payload(paddle_fixture) -> bytes:
    """The download: a real, small .pdparams, written by PaddleGAN's own save helper."""
    return paddle_fixture.checkpoint.read_bytes()


@pytest.fixture
def server(payload: bytes) -> Iterator[Server]:
    srv = Server(("127.0.0.1", 0), Handler)
    srv.body, srv.ranges = payload, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paddle_fixture) -> Path:
    """A private cache and one test entry (PaddleGAN-layout weights and their config)."""
    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    entry = hub.Weights(NAME, "test", "faces", "test", str(paddle_fixture.config),
                        url="http://127.0.0.1:9/unused")
    monkeypatch.setitem(hub.WEIGHTS, NAME, entry)
    return tmp_path / "cache"


def _url(server: Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{NAME}"


def test_download_then_load_by_name(server: Server, cache: Path, payload: bytes,
                                    paddle_fixture) -> None:
    path = hub.download(NAME, url=_url(server), progress=False)
    assert path == cache / NAME and path.read_bytes() == payload
    assert [p.name for p in cache.iterdir()] == [NAME]  # no .part left
    from fomm.checkpoints import resolve
    from fomm.checkpoints.loading import load_model

    assert resolve(NAME) == (path, str(paddle_fixture.config))  # the file and the entry's config
    _, config = load_model(NAME)  # -c NAME: found in the cache, config from the entry
    assert config.flavour == "paddle"
    assert hub.download(NAME, url=_url(server), progress=False) == path  # cached: no request
    assert len(server.ranges) == 1
    assert any(row[0] == NAME and "cached" in row[2] for row in hub.table())


def test_interrupted_download_resumes_with_a_range_request(server: Server, cache: Path,
                                                           payload: bytes) -> None:
    server.cut_first = True
    with pytest.raises(FommError, match="run the same command again to resume"):
        hub.download(NAME, url=_url(server), progress=False)
    part = cache / f"{NAME}.part"
    size = part.stat().st_size
    assert 0 < size < len(payload) and not (cache / NAME).exists()
    path = hub.download(NAME, url=_url(server), progress=False)
    assert server.ranges == [None, f"bytes={size}-"]  # only the rest was asked for
    assert path.read_bytes() == payload and not part.exists()


def test_corrupt_download_is_refused_and_removed(server: Server, cache: Path) -> None:
    server.body = b"<html>not a checkpoint</html>" * 100
    with pytest.raises(CheckpointError, match="not a valid checkpoint"):
        hub.download(NAME, url=_url(server), progress=False)
    assert list(cache.iterdir()) == []


def test_recorded_sha256_is_checked(server: Server, cache: Path, payload: bytes,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    entry = hub.WEIGHTS[NAME]
    monkeypatch.setitem(hub.WEIGHTS, NAME, hub.Weights(**{**entry.__dict__, "sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match="SHA-256"):
        hub.download(NAME, url=_url(server), progress=False)
    good = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(hub.WEIGHTS, NAME, hub.Weights(**{**entry.__dict__, "sha256": good}))
    assert hub.download(NAME, url=_url(server), progress=False).read_bytes() == payload


def test_no_network_is_a_clear_error(cache: Path) -> None:
    with pytest.raises(FommError, match="cannot download .*no network"):
        hub.download(NAME, url="http://127.0.0.1:9/closed-port", progress=False, timeout=5)


def test_nothing_downloads_unless_asked(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(hub.urllib.request, "urlopen", no_network)
    from fomm.checkpoints import resolve
    from fomm.checkpoints.loading import load_model

    with pytest.raises(CheckpointError, match="fomm weights download vox-cpk.pdparams"):
        resolve("vox-cpk.pdparams")
    with pytest.raises(CheckpointError, match="drive.google.com"):
        load_model("vox-cpk.pth.tar")
    with pytest.raises(FommError, match="no direct link"):
        hub.download("vox-cpk.pth.tar")


def test_weights_cli_list_and_download(server: Server, cache: Path, capsys) -> None:
    from fomm.cli.main import main

    main(["weights", "list"])
    out = capsys.readouterr().out
    assert "vox-cpk.pdparams" in out and "vox-cpk-512.pdparams" in out and "yadi.sk" in out
    main(["weights", "download", NAME, "--url", _url(server), "-q"])
    assert f"-c {NAME}" in capsys.readouterr().out
    main(["weights", "list"])
    assert NAME in capsys.readouterr().out and (cache / NAME).is_file()
