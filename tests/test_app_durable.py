"""Durable jobs (fomm.app.store): a restart of the app on the same --data-dir keeps its jobs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

import test_app as base  # noqa: E402
from test_app import make_client, submit, wait  # noqa: E402

from fomm.app.jobs import FINISHED, RESTART_ERROR, RESTORE_ERROR, JobQueue  # noqa: E402
from fomm.app.store import JobStore  # noqa: E402
from fomm.errors import FommError  # noqa: E402

animator, gated, media = base.animator, base.gated, base.media  # the fixtures of test_app


def test_restart_keeps_finished_jobs_and_runs_queued_and_interrupted_ones(
    tmp_path, gated, animator, media
):
    first = make_client(tmp_path, gated, shutdown_grace_s=0.2)
    with first:
        gated.gate.set()
        done = submit(first, media["source"], media["short"]).json()
        assert wait(first, done["status_url"])["status"] == "succeeded"
        video = first.get(done["result_url"]).content
        gated.gate.clear()
        running = submit(first, media["source"], media["clip"]).json()
        wait(first, running["status_url"], until=("running",))
        queued = submit(first, media["source"], media["clip"]).json()
        threading.Timer(0.5, gated.gate.set).start()  # the frame in flight ends after the grace
    # a new app on the same data folder, as after a restart of `fomm serve`
    with make_client(tmp_path, animator) as second:
        state = second.get(done["status_url"]).json()
        assert state["status"] == "succeeded" and state["result"]["frames"] == 3
        assert second.get(done["result_url"]).content == video
        for job in (running, queued):
            state = wait(second, job["status_url"])
            assert state["status"] == "succeeded", state
            assert state["progress"] == {"done": 12, "total": 12}
            assert second.get(job["result_url"]).status_code == 200
        assert second.app.state.queue.get(running["id"]).restarts == 1
        assert second.get("/healthz").json()["storage"]["ok"] is True


def test_leftover_folders_without_a_job_are_removed_at_start(tmp_path, animator):
    stray = tmp_path / "data" / "jobs" / "half-uploaded"
    stray.mkdir(parents=True)
    (stray / "driving.upload").write_bytes(b"\0" * 100)
    with make_client(tmp_path, animator):
        assert not stray.exists()


def _row(job_id: str, folder: Path, status: str, **extra) -> dict:
    return {
        "id": job_id,
        "folder": str(folder),
        "status": status,
        "payload": job_id,
        "total": 1,
        "done": 0,
        "error": None,
        "result": None,
        "created_at": time.time(),
        "started_at": None,
        "finished_at": None,
        "restarts": 0,
        **extra,
    }


def test_a_job_running_at_a_crash_runs_again_once_then_fails(tmp_path):
    """Rows as a killed server leaves them: still "running"; one of them already re-run once."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    for name in ("fresh", "again", "bad", "old"):
        (tmp_path / name).mkdir()
    store.put(_row("fresh", tmp_path / "fresh", "running"))
    store.put(_row("again", tmp_path / "again", "running", restarts=1))
    store.put(_row("bad", tmp_path / "bad", "queued"))
    store.put(
        _row(
            "old",
            tmp_path / "old",
            "succeeded",
            finished_at=time.time() - 7200,
            result={"frames": 1},
        )
    )
    store.close()

    def load(payload: str) -> str:
        if payload == "bad":
            raise ValueError("an option this version does not know")
        return payload

    ran: list[str] = []
    queue = JobQueue(
        lambda job, progress: ran.append(job.payload) or {"ok": True},
        ttl_s=3600,
        store=JobStore(tmp_path / "jobs.sqlite3"),
        load=load,
    )
    queue.start()
    try:
        deadline = time.monotonic() + 10
        while queue.get("fresh").status not in FINISHED:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert ran == ["fresh"]
        assert queue.snapshot("fresh")["result"] == {"ok": True}
        assert queue.get("fresh").restarts == 1
        assert queue.snapshot("again")["status"] == "failed"
        assert queue.snapshot("again")["error"] == RESTART_ERROR
        assert queue.snapshot("bad")["error"] == RESTORE_ERROR
        assert queue.remove_expired() == 1 and queue.get("old") is None
        assert not (tmp_path / "old").exists()
    finally:
        queue.stop(grace_s=1)
        queue.store.close()
    rows = {row["id"]: row for row in JobStore(tmp_path / "jobs.sqlite3").rows()}
    assert set(rows) == {"fresh", "again", "bad"}  # the expired one is gone from disk too
    assert rows["fresh"]["status"] == "succeeded" and rows["again"]["status"] == "failed"


def test_one_server_per_data_folder(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    with pytest.raises(FommError, match="another fomm serve"):
        JobStore(tmp_path / "jobs.sqlite3")
    store.close()
    JobStore(tmp_path / "jobs.sqlite3").close()  # free again
