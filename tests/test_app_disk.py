"""A full disk (issue 24): uploads get 507 before they are read, a job whose write hits ENOSPC
fails with a clear message and leaves no file, /healthz says degraded below the margin.

The real cases run on a small tmpfs (needs root to mount; skipped otherwise); the free-space
check itself is also tried with ``shutil.disk_usage`` reporting a nearly full disk.
"""

from __future__ import annotations

import collections
import errno
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

import test_app as base  # noqa: E402
from test_app import make_client, nothing_queued, submit, wait  # noqa: E402

from fomm.app import storage as storage_module  # noqa: E402
from fomm.app.jobs import DISK_FULL_ERROR, Job, JobQueue, disk_full  # noqa: E402
from fomm.errors import FommError  # noqa: E402

animator, media, gated = base.animator, base.media, base.gated  # the fixtures of test_app
MB = 2**20
Usage = collections.namedtuple("Usage", "total used free")


@pytest.fixture
def tmpfs(tmp_path):
    """A 6 MB tmpfs at tmp_path/disk (skipped where it cannot be mounted)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(folder)],
                          capture_output=True)
    if done.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """A file that takes the free space of ``folder``'s filesystem but ``leave`` bytes."""
    filler = folder / "filler"
    with filler.open("wb") as f:
        try:
            while storage_module.shutil.disk_usage(folder).free > leave:
                f.write(b"\0" * min(256 * 1024, max(4096, storage_module.shutil.disk_usage(
                    folder).free - leave)))
                f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


def test_an_upload_gets_507_and_healthz_degrades_when_space_is_short(tmp_path, animator, media,
                                                                     monkeypatch):
    with make_client(tmp_path, animator, min_free_mb=100) as client:
        assert client.get("/healthz").status_code == 200
        monkeypatch.setattr(storage_module.shutil, "disk_usage",
                            lambda path: Usage(10**12, 10**12 - 50 * MB, 50 * MB))
        r = submit(client, media["source"], media["clip"])
        assert r.status_code == 507, r.text
        error = r.json()["error"]
        assert error["code"] == "insufficient_storage" and "disk space" in error["message"]
        nothing_queued(client)
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert health.json()["storage"]["ok"] is False and health.json()["storage"]["free_mb"] == 50
        monkeypatch.undo()  # space freed: accepted again
        assert client.get("/healthz").status_code == 200
        r = submit(client, media["source"], media["clip"])
        assert r.status_code == 202
        assert wait(client, r.json()["status_url"])["status"] == "succeeded"


def test_a_full_tmpfs_gets_507_before_and_while_an_upload_is_read(tmpfs, tmp_path, animator,
                                                                  media):
    with make_client(tmpfs, animator, min_free_mb=1) as client:
        filler = fill(tmpfs, leave=512 * 1024)  # under the 1 MB margin
        r = submit(client, media["source"], media["clip"])
        assert r.status_code == 507 and r.json()["error"]["code"] == "insufficient_storage"
        assert client.get("/healthz").json()["status"] == "degraded"
        nothing_queued(client)
    filler.unlink()
    with make_client(tmpfs, animator, min_free_mb=0) as client:
        fill(tmpfs, leave=8 * 1024)  # no margin: the body itself runs out of room

        def body():  # streamed (no Content-Length), larger than the space left
            yield b'--B\r\nContent-Disposition: form-data; name="driving"; filename="a.mp4"\r\n\r\n'
            for _ in range(64):
                yield b"\0" * 4096
            yield b"\r\n--B--\r\n"

        r = client.post("/v1/animations", content=body(),
                        headers={"content-type": "multipart/form-data; boundary=B"})
        assert r.status_code == 507, r.text
        nothing_queued(client)


def test_a_job_that_hits_enospc_fails_clearly_and_leaves_no_file(tmpfs, tmp_path, gated, media):
    with make_client(tmpfs, gated, min_free_mb=0) as client:
        r = submit(client, media["source"], media["clip"])
        assert r.status_code == 202, r.text
        job_dir = tmpfs / "data" / "jobs" / r.json()["id"]
        filler = fill(tmpfs)  # the disk fills up while the job runs
        gated.gate.set()
        state = wait(client, r.json()["status_url"])
        assert state["status"] == "failed" and state["error"] == DISK_FULL_ERROR
        assert not job_dir.exists()  # no half-written result, no inputs
        assert not list((tmpfs / "data" / "jobs").rglob("*.mp4"))
        filler.unlink()  # space again: the next job runs
        r = submit(client, media["source"], media["clip"])
        assert wait(client, r.json()["status_url"])["status"] == "succeeded"


def test_disk_full_is_found_through_wrapping_errors(tmp_path):
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:
            raise FommError("could not write the video") from err
    except FommError as wrapped:
        assert disk_full(wrapped)
    assert not disk_full(OSError(errno.EACCES, "denied")) and not disk_full(None)

    def run(job, progress):
        (job.folder / "result.mp4").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    queue = JobQueue(run, max_queue=1, workers=1, ttl_s=60)
    queue.start()
    try:
        folder = tmp_path / "job"
        folder.mkdir()
        job = Job("j1", folder, None)
        queue.submit(job)
        for _ in range(500):
            if job.status in ("failed", "succeeded"):
                break
            time.sleep(0.01)
        assert job.status == "failed" and job.error == DISK_FULL_ERROR
        assert not folder.exists()
    finally:
        queue.stop(1)
