"""Safe to expose (fomm.app.guard, fomm.app.metrics): token, hosts, other sites, headers."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

import test_app as base  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402
from test_app import make_client, submit, wait  # noqa: E402

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.cli.main import main  # noqa: E402

animator, media = base.animator, base.media  # the fixtures of test_app
TOKEN = "s3cret-token-for-tests_0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def locked(tmp_path, animator):
    with make_client(tmp_path, animator, token=TOKEN) as client:
        yield client


def test_every_api_call_needs_the_token(locked, media):
    for method, url in (
        ("GET", "/v1/animations/x"),
        ("DELETE", "/v1/animations/x"),
        ("GET", "/v1/examples"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/animations"),
    ):
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-0123456789"},
            {"Authorization": TOKEN},
        ):
            r = locked.request(method, url, headers=headers)
            assert r.status_code == 401, (method, url, headers)
            assert r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
    assert locked.get("/").status_code == 200  # the page loads, then asks for the token
    # liveness probes need no token, and learn only up or down
    assert locked.get("/healthz").json() == {"status": "ok", "storage": {"ok": True}}
    assert locked.get("/static/app.js").status_code == 200
    files = {
        "source": ("a.png", media["source"].read_bytes()),
        "driving": ("d.mp4", media["short"].read_bytes()),
    }
    r = locked.post("/v1/animations", files=files, data=base.NO_CROP, headers=AUTH)
    assert r.status_code == 202, r.text
    state = r.json()
    assert locked.get(state["status_url"]).status_code == 401
    locked.headers.update(AUTH)
    assert wait(locked, state["status_url"])["status"] == "succeeded"
    assert locked.get(state["result_url"]).status_code == 200


def test_the_live_websocket_needs_the_token_as_a_subprotocol(locked):
    with pytest.raises(WebSocketDisconnect) as refused, locked.websocket_connect("/v1/live"):
        pass
    assert refused.value.code == 1008
    with locked.websocket_connect("/v1/live", subprotocols=["fomm", f"bearer.{TOKEN}"]) as ws:
        assert ws.accepted_subprotocol == "fomm"
        ws.send_bytes(b"not a photo")
        assert ws.receive_json()["code"] == "bad_photo"
    rebound = {"origin": "http://evil.example:8000", "host": "evil.example:8000"}  # DNS rebinding
    for headers in (rebound, {"origin": "http://evil.example"}):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            locked.websocket_connect(
                "/v1/live", headers=headers, subprotocols=["fomm", f"bearer.{TOKEN}"]
            ),
        ):
            pass
        assert refused.value.code == 1008


def test_non_loopback_without_a_token_refuses_to_start(monkeypatch, capsys):
    monkeypatch.delenv("FOMM_TOKEN", raising=False)
    for argv in (["--host", "0.0.0.0"], ["--host", "192.168.1.5"], ["--token", "short"]):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", "--checkpoint", "never-loaded.safetensors", *argv])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and ("--token" in err or "token" in err), err


@pytest.mark.parametrize("headers, status, code", [
    ({"Host": "evil.example"}, 421, "unknown_host"),
    ({"Host": "evil.example:8000"}, 421, "unknown_host"),
    ({"Origin": "http://evil.example"}, 403, "cross_site"),
    ({"Origin": "null"}, 403, "cross_site"),
    ({"Sec-Fetch-Site": "cross-site"}, 403, "cross_site"),
    ({"Sec-Fetch-Site": "same-site"}, 403, "cross_site"),
])  # fmt: skip
def test_other_sites_and_unknown_hosts_are_refused(
    tmp_path, animator, media, headers, status, code
):
    with make_client(tmp_path, animator, allowed_hosts=("fomm.example",)) as client:
        files = {
            "source": ("a.png", media["source"].read_bytes()),
            "driving": ("d.mp4", media["short"].read_bytes()),
        }
        r = client.post("/v1/animations", files=files, data=base.NO_CROP, headers=headers)
        assert r.status_code == status and r.json()["error"]["code"] == code
        assert client.app.state.queue.counts() == {}
        ok = {
            "Host": "fomm.example",
            "Origin": "http://fomm.example",
            "Sec-Fetch-Site": "same-origin",
        }
        assert client.get("/healthz", headers=ok).status_code == 200
        assert client.get("/healthz", headers={"Sec-Fetch-Site": "none"}).status_code == 200


def test_a_wildcard_bind_answers_to_any_host_name(tmp_path, animator):
    app = create_app(
        Settings(data_dir=str(tmp_path / "d"), host="0.0.0.0", token=TOKEN), animator=animator
    )
    with TestClient(app, base_url="http://gpu-box.lan:8000", headers=AUTH) as client:
        assert client.get("/healthz").status_code == 200
        origin = {"Origin": "http://gpu-box.lan:8000"}
        assert client.get("/healthz", headers=origin).status_code == 200


def test_security_headers_and_no_cdn_docs(client):
    for url in ("/", "/healthz", "/v1/animations/nope", "/static/app.js"):
        r = client.get(url)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert "default-src 'self'" in r.headers["content-security-policy"]
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404


def test_docs_can_be_turned_on(tmp_path, animator):
    with make_client(tmp_path, animator, docs=True) as client:
        assert client.get("/docs").status_code == 200


def test_metrics_and_health(client, media):
    r = submit(client, media["source"], media["short"])
    assert wait(client, r.json()["status_url"])["status"] == "succeeded"
    bad = submit(client, media["source"], media["short"], crop="true")  # no face: fails
    assert wait(client, bad.json()["status_url"])["status"] == "failed"
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    lines = r.text.splitlines()
    for line in (
        'fomm_jobs{state="succeeded"} 1.0',
        'fomm_jobs{state="failed"} 1.0',
        'fomm_jobs{state="queued"} 0.0',
        "fomm_queue_depth 0.0",
        "fomm_workers 1.0",
        'fomm_job_duration_seconds_count{status="succeeded"} 1.0',
        'fomm_job_duration_seconds_count{status="failed"} 1.0',
        "fomm_frame_duration_seconds_count 1.0",
    ):
        assert line in lines, line
    health = client.get("/healthz").json()
    assert health["storage"]["kind"] == "directory" and health["storage"]["ok"] is True
    assert health["storage"]["free_mb"] > health["storage"]["min_free_mb"]


@pytest.fixture
def client(tmp_path, animator):
    with make_client(tmp_path, animator) as c:
        yield c
