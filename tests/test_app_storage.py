"""Shared storage for the broker (fomm.app.storage): a folder, and S3 through a local server.

No real S3 or MinIO server can be installed here (MinIO ships neither a Debian nor a PyPI
package), so the S3 tests run against moto's server mode (``moto[server]``): a local HTTP server
that speaks the S3 API, used through boto3 exactly as a real endpoint (``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")
boto3 = pytest.importorskip("boto3", reason="S3 storage needs boto3: pip install 'fomm[redis]'")

import test_app as base  # noqa: E402
import test_app_broker as broker  # noqa: E402
from test_app import submit  # noqa: E402
from test_app_broker import free_port, run_worker_here  # noqa: E402

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.serve import serve_in_thread  # noqa: E402
from fomm.app.storage import DirectoryStorage, S3Storage, open_storage  # noqa: E402
from fomm.errors import FommError  # noqa: E402
from fomm.media.video import count_frames  # noqa: E402

animator, media = base.animator, base.media  # the fixtures of test_app
redis, redis_url = broker.redis, broker.redis_url  # and of test_app_broker
BUCKET = "fomm-test"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto's S3 server on a free loopback port; its URL."""
    if shutil.which("moto_server") is None and not _has_module("moto.server"):
        pytest.skip("moto[server] is not installed (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url)
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _has_module(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A fresh bucket; boto3 pointed at the local server through the standard variables."""
    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test",
                        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"
                        }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture(params=["directory", "s3"])
def storage(request, tmp_path):
    if request.param == "directory":
        return DirectoryStorage(tmp_path / "jobs")
    request.getfixturevalue("s3")
    return open_storage(f"s3://{BUCKET}/some/prefix", tmp_path)


def test_storage_contract(storage, tmp_path):
    local = tmp_path / "upload.bin"
    local.write_bytes(b"x" * 3_000_000)
    storage.put("job1/source.upload", local)
    (tmp_path / "other.bin").write_bytes(b"result")
    storage.put("job1/result-a.mp4", tmp_path / "other.bin")
    assert storage.size("job1/source.upload") == 3_000_000
    assert storage.size("job1/nothing") is None
    assert b"".join(storage.stream("job1/result-a.mp4")) == b"result"
    fetched = storage.fetch("job1/source.upload", tmp_path / "scratch")
    assert fetched.read_bytes() == b"x" * 3_000_000
    storage.keep_only("job1/result-a.mp4")
    assert storage.size("job1/source.upload") is None
    assert storage.size("job1/result-a.mp4") == 6
    storage.remove("job1/result-a.mp4")
    storage.remove("job1/result-a.mp4")  # gone already: no error
    assert storage.size("job1/result-a.mp4") is None
    local.write_bytes(b"y")  # put may move the file away (directory storage does)
    storage.put("job2/x.upload", local)
    storage.delete("job2")
    storage.delete("job2")
    assert storage.size("job2/x.upload") is None
    assert storage.ping()
    for bad in ("../etc/passwd", "job/../../x", "a/b/c", "/abs"):
        with pytest.raises(ValueError):
            storage.size(bad)


def test_s3_urls_and_a_missing_bucket(s3, tmp_path):
    assert S3Storage(f"s3://{BUCKET}").prefix == ""
    assert not S3Storage("s3://no-such-bucket/x").ping()
    for bad in ("s3://", "gs://bucket/x"):
        with pytest.raises(FommError):
            open_storage(bad, tmp_path)


def test_a_job_through_redis_and_s3(tmp_path, s3, redis, redis_url, animator, media):
    app = create_app(Settings(data_dir=str(tmp_path / "api"), broker=redis_url,
                              storage=f"s3://{BUCKET}/fomm"))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        health = http.get("/healthz").json()
        assert (health["storage"]["kind"], health["storage"]["ok"]) == ("s3", True)
        job = submit(http, media["source"], media["clip"]).json()
        assert not any((tmp_path / "api" / "uploads").iterdir())  # sent on to S3
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
        assert keys == [f"fomm/{job['id']}/driving.upload", f"fomm/{job['id']}/source.upload"]
        worker = S3Storage(f"s3://{BUCKET}/fomm")  # the worker's own client, as on another host
        run_worker_here(redis, tmp_path / "worker", animator, storage=worker)
        state = http.get(job["status_url"]).json()
        assert state["status"] == "succeeded", state
        r = http.get(job["result_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        assert int(r.headers["content-length"]) == len(r.content)
        (tmp_path / "out.mp4").write_bytes(r.content)
        assert count_frames(tmp_path / "out.mp4") == 12
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
        assert len(keys) == 1 and keys[0].startswith(f"fomm/{job['id']}/result-")
        assert not list((tmp_path / "worker" / "scratch").glob("*"))  # scratch tidied
        assert http.delete(job["status_url"]).json()["deleted"] is True
        assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
