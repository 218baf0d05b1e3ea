"""fomm serve --broker + fomm worker (issue 15 §2): jobs through a real redis-server on loopback.

The end-to-end test runs 2 API processes and 2 worker processes on one shared --data-dir, kills
a worker mid-job with SIGKILL and expects every job's result exactly once. The others run the API
in this process and a worker in this thread (RQ's burst mode) for the limits, cancel and storage.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")
pytest.importorskip("rq", reason="the broker needs the Redis extras: pip install 'fomm[redis]'")

import test_app as base  # noqa: E402
from conftest import write_clip  # noqa: E402
from test_app import GatedAnimator, submit, wait  # noqa: E402
from tiny import tiny_models  # noqa: E402

from fomm.app import worker as worker_module  # noqa: E402
from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.broker import ACTIVE, connect, job_key  # noqa: E402
from fomm.app.serve import serve_in_thread  # noqa: E402
from fomm.app.storage import DirectoryStorage  # noqa: E402
from fomm.checkpoints import save_checkpoint  # noqa: E402
from fomm.media.video import count_frames  # noqa: E402

animator, media = base.animator, base.media  # the fixtures of test_app
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port, no persistence; its URL (db 0)."""
    if not Path(REDIS).is_file():
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; "
                    "scripts/test.sh installs it)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            connect(url)
            break
        except Exception:
            assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis(redis_url):
    client = connect(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


def broker_app(tmp_path: Path, redis_url: str, **settings):
    return create_app(Settings(data_dir=str(tmp_path / "shared"), broker=redis_url, **settings))


def run_worker_here(redis, tmp_path: Path, animator, name: str = "here", storage=None) -> None:
    """A worker in this thread that runs what is queued now, then returns (RQ's burst mode)."""
    storage = storage or DirectoryStorage(tmp_path / "shared" / "jobs")
    worker_module._RUNNER = worker_module.Runner(
        redis, storage, animator, Settings(device="cpu"), tmp_path / "scratch", name, 3.0)
    try:
        worker_module.make_worker(redis, name, heartbeat_s=1).work(burst=True,
                                                                   logging_level="WARNING")
    finally:
        worker_module._RUNNER = None


def test_queue_limit_cancel_and_results_through_redis(tmp_path, redis, redis_url, animator,
                                                      media):
    app = broker_app(tmp_path, redis_url, max_queue=1)
    assert app.state.animator is None  # no model in a broker's API process
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        health = http.get("/healthz").json()
        assert health["broker"] == {"kind": "redis", "ok": True}
        assert (health["storage"]["kind"], health["storage"]["ok"]) == ("directory", True)
        first = submit(http, media["source"], media["clip"])
        second = submit(http, media["source"], media["short"])
        assert first.status_code == second.status_code == 202, first.text
        full = submit(http, media["source"], media["short"])  # 1 waiting + 1 (no worker yet)
        assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
        assert full.json()["error"]["code"] == "busy"
        second = second.json()
        folder = tmp_path / "shared" / "jobs" / second["id"]
        assert folder.is_dir()
        cancelled = http.delete(second["status_url"]).json()
        assert cancelled["status"] == "cancelled" and cancelled["deleted"] is True
        assert not folder.exists()
        assert http.get(second["status_url"]).json()["status"] == "cancelled"

        run_worker_here(redis, tmp_path, animator)
        state = http.get(first.json()["status_url"]).json()
        assert state["status"] == "succeeded", state
        assert state["progress"] == {"done": 12, "total": 12}
        video = tmp_path / "out.mp4"
        video.write_bytes(http.get(first.json()["result_url"]).content)
        assert count_frames(video) == 12
        files = sorted(p.name for p in (tmp_path / "shared" / "jobs" / state["id"]).iterdir())
        assert len(files) == 1 and files[0].startswith("result-")  # inputs gone, result kept
        assert redis.zcard(ACTIVE) == 0
        assert int(redis.hget(job_key(state["id"]), "completions")) == 1

        app.state.queue.observe()  # what the janitor does every few seconds
        metrics = http.get("/metrics").text.splitlines()
        for line in ('fomm_jobs{state="succeeded"} 1.0', 'fomm_jobs{state="cancelled"} 1.0',
                     "fomm_queue_depth 0.0", "fomm_workers 0.0",
                     'fomm_job_duration_seconds_count{status="succeeded"} 1.0'):
            assert line in metrics, line
        assert http.delete(first.json()["status_url"]).json()["deleted"] is True
        assert http.get(first.json()["status_url"]).status_code == 404
        assert not (tmp_path / "shared" / "jobs" / state["id"]).exists()


class SlowAnimator(GatedAnimator):
    """Frames wait for the gate (a test holds a job running)."""


def test_cancel_reaches_a_running_job_in_another_process(tmp_path, redis, redis_url, media):
    slow = SlowAnimator(*tiny_models(image_size=64), device="cpu")
    app = broker_app(tmp_path, redis_url)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        job = submit(http, media["source"], media["clip"]).json()

        def step() -> None:  # let about one frame through
            seen, deadline = slow.frames, time.monotonic() + 10
            slow.gate.set()
            while slow.frames == seen and not finished.is_set() and time.monotonic() < deadline:
                time.sleep(0.001)
            slow.gate.clear()

        def cancel_when_running() -> None:
            wait(http, job["status_url"], until=("running",))
            while slow.frames < 2 and not finished.is_set():
                step()
            assert http.delete(job["status_url"]).json()["status"] == "cancelled"
            while not finished.is_set():  # a few frames a second: the worker hears of it
                step()
                time.sleep(0.25)

        finished = threading.Event()
        canceller = threading.Thread(target=cancel_when_running)
        canceller.start()
        try:
            run_worker_here(redis, tmp_path, slow)
        finally:
            finished.set()
            slow.gate.set()
            canceller.join()
        state = http.get(job["status_url"]).json()
        assert state["status"] == "cancelled"
        assert slow.frames < 12  # stopped early
        assert not (tmp_path / "shared" / "jobs" / job["id"]).exists()
        assert redis.zcard(ACTIVE) == 0


def test_healthz_without_the_token_says_up_or_down_only(tmp_path, redis, redis_url):
    token = "t0ken-for-the-broker-test"
    app = broker_app(tmp_path, redis_url, token=token)
    with serve_in_thread(app) as url:
        open_ = httpx.get(f"{url}/healthz")
        assert open_.status_code == 200
        assert open_.json() == {"status": "ok", "broker": {"ok": True}, "storage": {"ok": True}}
        assert httpx.get(f"{url}/metrics").status_code == 401
        full = httpx.get(f"{url}/healthz", headers={"Authorization": f"Bearer {token}"}).json()
        assert full["queue"]["max_queue"] == 8 and full["broker"]["kind"] == "redis"


# ---------------------------------------------------------------- processes, as deployed


def start(args: list[str], log: Path, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fomm", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def wait_ready(url: str, procs: list[subprocess.Popen], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert all(p.poll() is None for p in procs), "a process exited early"
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not start"
        time.sleep(0.2)


def test_two_apis_two_workers_and_a_worker_killed_mid_job(tmp_path, redis, redis_url, media):
    """12 jobs through 2 API processes and 2 workers; one worker SIGKILLed while it animates.

    Every job ends succeeded with one result, written once; the killed worker's job is run again
    by the other worker after its lease (3 × --heartbeat-s) runs out.
    """
    models, cfg = tiny_models(image_size=64)
    save_checkpoint(tmp_path / "tiny.safetensors", models, cfg)
    clip = write_clip(tmp_path / "long.mp4", frames=base.moving_square(15) * 2, fps=25)
    shared, logs = tmp_path / "shared", tmp_path / "logs"
    logs.mkdir()
    ports = [free_port(), free_port()]
    apis = [start(["serve", "--broker", redis_url, "--data-dir", str(shared), "--port", str(p),
                   "--max-queue", "16", "--log-level", "warning"], logs / f"api{i}.log")
            for i, p in enumerate(ports)]
    workers = {f"w{i}": start(["worker", "--broker", redis_url, "--data-dir", str(shared),
                               "--checkpoint", str(tmp_path / "tiny.safetensors"),
                               "--device", "cpu", "--heartbeat-s", "1", "--name", f"w{i}",
                               "--log-level", "warning"], logs / f"w{i}.log")
               for i in range(2)}
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    procs = [*apis, *workers.values()]
    try:
        for url in urls:  # the API processes load no model: they are up long before the workers
            wait_ready(url, procs)
        ids = []
        for n in range(12):
            with httpx.Client(base_url=urls[n % 2], timeout=30) as http:
                r = submit(http, media["source"], clip)
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
        victim = None
        deadline = time.monotonic() + 180  # the workers load torch and the model first
        while victim is None:  # the first job seen running with frames done: kill its worker
            assert time.monotonic() < deadline, "no job was seen running"
            for job_id in ids:
                status, name, done = redis.hmget(job_key(job_id), "status", "worker", "done")
                if status == b"running" and int(done or 0) >= 1:
                    victim = job_id
                    workers[name.decode()].send_signal(signal.SIGKILL)
                    break
            time.sleep(0.005)
        states = {}
        for n, job_id in enumerate(ids):  # read from the API that did not take the job
            with httpx.Client(base_url=urls[(n + 1) % 2], timeout=30) as http:
                states[job_id] = wait(http, f"/v1/animations/{job_id}", timeout=150)
                assert states[job_id]["status"] == "succeeded", (states[job_id], _logs(logs))
                assert states[job_id]["progress"] == {"done": 30, "total": 30}
                out = tmp_path / f"{job_id}.mp4"
                out.write_bytes(http.get(f"/v1/animations/{job_id}/result.mp4").content)
                assert count_frames(out) == 30
        for job_id in ids:
            completions, attempts = redis.hmget(job_key(job_id), "completions", "attempts")
            assert int(completions) == 1, job_id  # one result per job, written once
            files = [p.name for p in (shared / "jobs" / job_id).iterdir()]
            assert len(files) == 1 and files[0].startswith("result-"), files
            assert int(attempts) == (2 if job_id == victim else 1), (job_id, victim)
        assert redis.zcard(ACTIVE) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc in apis else signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(folder.iterdir()))


def test_a_stalled_run_that_lost_its_job_cannot_write_a_result(redis):
    """Run A stalls past its lease; the job is queued again and run B takes it. A's late finish
    is refused, B's is kept: one result, written once."""
    from fomm.app.broker import FINISHED_SET, OBSERVED, RECENT, Scripts, lease_key, stop_job

    scripts = Scripts(redis)
    keys = [job_key("j"), lease_key("j")]
    redis.hset(job_key("j"), mapping={"status": "queued", "payload": "{}", "done": 0})
    redis.zadd(ACTIVE, {"j": 1})

    def claim(token: str) -> bytes:
        return scripts.claim(keys, [token, 60_000, f"worker-{token}", time.time()])

    def finish(token: str) -> int:
        return scripts.finish([*keys, ACTIVE, FINISHED_SET, OBSERVED, RECENT],
                              [token, "j", time.time(), "succeeded", "", '{"frames": 3}',
                               f"j/result-{token}.mp4", 3, '{"status": "succeeded"}'])

    assert claim("a") == b"ok"
    assert claim("b") == b"leased"  # a second delivery while A is alive runs nothing
    assert stop_job(redis, scripts, "j", error="", requeue=True) == "running"  # A's lease ran out
    assert claim("b") == b"ok"
    assert scripts.beat(keys, ["a", 60_000]) == b"lost"  # A learns at its next beat ...
    assert finish("a") == 0  # ... and cannot write
    assert finish("b") == 1
    state = redis.hgetall(job_key("j"))
    assert state[b"status"] == b"succeeded" and state[b"result_key"] == b"j/result-b.mp4"
    assert state[b"completions"] == b"1" and state[b"attempts"] == b"2"
    assert claim("c") == b"succeeded"  # a late duplicate delivery runs nothing
    assert redis.zcard(ACTIVE) == 0 and redis.zscore(FINISHED_SET, "j") is not None


def test_a_job_no_run_and_no_queue_holds_is_queued_again(tmp_path, redis, redis_url):
    """The janitor's reconcile pass: a job whose run vanished without RQ's clean-up (a running job
    without a lease, a queued job RQ does not hold) is queued again after LOST_ROUNDS rounds, by
    one API process only; a live lease and a job RQ holds are left alone; a job lost more times
    than MAX_RETRIES allows fails."""
    from rq.job import Job

    from fomm.app.broker import (
        ABANDONED_ERROR,
        LOST_ROUNDS,
        MAX_RETRIES,
        QUEUE,
        BrokerJobs,
        lease_key,
    )

    storage = DirectoryStorage(tmp_path / "jobs")
    apis = [BrokerJobs(redis_url, storage, janitor_s=1.0) for _ in range(2)]
    jobs = {"dead-run": ("running", 1), "never-queued": ("queued", 0),
            "alive": ("running", 1), "rq-has-it": ("queued", 0), "lost-twice": ("running", 2)}
    for n, (job_id, (status, attempts)) in enumerate(jobs.items()):
        redis.hset(job_key(job_id), mapping={"status": status, "attempts": attempts,
                                             "attempt": "t" if status == "running" else ""})
        redis.zadd(ACTIVE, {job_id: n})
    redis.set(lease_key("alive"), "t", px=60_000)
    apis[0]._enqueue("rq-has-it", MAX_RETRIES)

    for _ in range(LOST_ROUNDS - 1):
        assert apis[0].reconcile() == [] and apis[1].reconcile() == []
    requeued = apis[0].reconcile() + apis[1].reconcile()
    assert sorted(requeued) == ["dead-run", "never-queued"]  # each once, by one of the two
    queued = [i.decode() for i in redis.lrange(f"rq:queue:{QUEUE}", 0, -1)]
    assert sorted(queued) == ["dead-run", "never-queued", "rq-has-it"]
    status = {j: redis.hget(job_key(j), "status").decode() for j in jobs}
    assert status == {"dead-run": "queued", "never-queued": "queued", "alive": "running",
                      "rq-has-it": "queued", "lost-twice": "failed"}
    assert redis.hget(job_key("lost-twice"), "error").decode() == ABANDONED_ERROR
    assert Job.fetch("dead-run", connection=redis).retries_left is None  # its one retry is used
    assert Job.fetch("never-queued", connection=redis).retries_left == MAX_RETRIES
    for _ in range(LOST_ROUNDS + 1):  # held by RQ now: nothing more to do
        assert apis[0].reconcile() == [] and apis[1].reconcile() == []


def test_the_janitor_thread_records_a_dead_workers_job_as_queued_again(tmp_path, redis,
                                                                      redis_url):
    """RQ's clean-up run by an API process's janitor (a thread, where SIGALRM cannot be set):
    the failure callback runs, so the job's state says queued (not the dead run) when RQ queues
    it again."""
    from rq.job import Job, JobStatus

    from fomm.app.broker import QUEUE, BrokerJobs, lease_key

    api = BrokerJobs(redis_url, DirectoryStorage(tmp_path / "jobs"))
    redis.hset(job_key("j"), mapping={"status": "running", "attempts": 1, "attempt": "dead"})
    redis.zadd(ACTIVE, {"j": 1})
    api._enqueue("j", 1)
    redis.lrem(f"rq:queue:{QUEUE}", 0, "j")  # a worker took it ...
    Job.fetch("j", connection=redis).set_status(JobStatus.STARTED)
    redis.zadd(f"rq:wip:{QUEUE}", {"j:run": time.time() - 10})  # ... and stopped renewing it
    assert not redis.exists(lease_key("j"))
    janitor = threading.Thread(target=api.recover)
    janitor.start()
    janitor.join(timeout=30)
    assert redis.hget(job_key("j"), "status") == b"queued"
    assert redis.hget(job_key("j"), "attempt") == b""  # the dead run no longer owns it
    assert [i.decode() for i in redis.lrange(f"rq:queue:{QUEUE}", 0, -1)] == ["j"]


def _start_redis(port: int, folder: Path) -> subprocess.Popen:
    """redis-server on ``port`` with an append-only file in ``folder`` (kept across restarts)."""
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes", "--appendfsync", "always",
                             "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            connect(f"redis://127.0.0.1:{port}/0")
            return proc
        except Exception:
            assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)


def _status(http: httpx.Client, job_id: str) -> str | None:
    r = http.get(f"/v1/animations/{job_id}")
    return r.json()["status"] if r.status_code == 200 else None


def test_a_broker_restart_loses_no_job(tmp_path, media):
    """Redis restarted (append-only) while a worker runs a job and others wait: the worker and
    the API ride it out; the API answers 503 + Retry-After meanwhile; every job succeeds."""
    if not Path(REDIS).is_file():
        pytest.skip("redis-server is not installed")
    port, folder = free_port(), tmp_path / "redis"
    folder.mkdir()
    url = f"redis://127.0.0.1:{port}/0"
    server = _start_redis(port, folder)
    models, cfg = tiny_models(image_size=64)
    save_checkpoint(tmp_path / "tiny.safetensors", models, cfg)
    clip = write_clip(tmp_path / "long.mp4", frames=base.moving_square(15) * 4, fps=25)
    shared, logs = tmp_path / "shared", tmp_path / "logs"
    logs.mkdir()
    api_port = free_port()
    api = start(["serve", "--broker", url, "--data-dir", str(shared), "--port", str(api_port),
                 "--log-level", "warning"], logs / "api.log")
    worker = start(["worker", "--broker", url, "--data-dir", str(shared), "--checkpoint",
                    str(tmp_path / "tiny.safetensors"), "--device", "cpu", "--heartbeat-s", "2",
                    "--name", "w0", "--log-level", "warning"], logs / "w0.log")
    api_url = f"http://127.0.0.1:{api_port}"
    try:
        wait_ready(api_url, [api, worker])
        with httpx.Client(base_url=api_url, timeout=30) as http:
            ids = [submit(http, media["source"], clip).json()["id"] for _ in range(3)]
            deadline = time.monotonic() + 180  # the worker loads torch and the model first
            while _status(http, ids[0]) != "running":
                assert time.monotonic() < deadline and worker.poll() is None, _logs(logs)
                time.sleep(0.05)
            server.send_signal(signal.SIGTERM)  # the broker goes away mid-job
            server.wait(timeout=20)
            away = submit(http, media["source"], media["short"])
            assert away.status_code == 503, away.text
            assert away.json()["error"]["code"] == "broker_unavailable"
            assert int(away.headers["retry-after"]) >= 1
            assert http.get(f"/v1/animations/{ids[1]}").status_code == 503
            assert http.get("/healthz").status_code == 503
            time.sleep(5)
            server = _start_redis(port, folder)  # back, with what it had
            for job_id in ids:
                deadline = time.monotonic() + 240
                while (status := _status(http, job_id)) not in ("succeeded", "failed",
                                                                "cancelled"):
                    assert time.monotonic() < deadline, (job_id, status, _logs(logs))
                    assert worker.poll() is None, _logs(logs)
                    time.sleep(0.1)
                assert status == "succeeded", (job_id, status, _logs(logs))
            assert submit(http, media["source"], media["short"]).status_code == 202
        assert worker.poll() is None and api.poll() is None
    finally:
        for proc in (api, worker):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is api else signal.SIGTERM)
        for proc in (api, worker, server):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if server.poll() is None:
            server.terminate()
