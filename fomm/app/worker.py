"""``fomm worker``: runs the jobs that ``fomm serve --broker`` queues in Redis, on any machine.

One model per worker process, loaded at start; one job at a time (start more workers for more).
The RQ worker runs each job in its own process (no fork: the model stays loaded) while a thread
renews the job's lease and RQ's heartbeat. A worker that dies (SIGKILL, power cut) stops renewing;
after ``3 × --heartbeat-s`` RQ's cleanup, run by every API process and worker, queues the job again
for another worker (:mod:`fomm.app.broker`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fomm.errors import FommError

log = logging.getLogger("fomm.worker")
PROGRESS_EVERY_S = 0.5  # progress written to Redis at most this often
_RUNNER: Runner | None = None  # set by cmd_worker; RQ calls run_job in this process


@dataclass
class Runner:
    """What a job needs in this process: Redis, storage, the model and the form's settings."""

    client: Any
    storage: Any
    animator: Any
    settings: Any  # fomm.app.settings.Settings (batch size, device, precision for the options)
    scratch: Path
    name: str
    lease_s: float = 30.0

    def run(self, job_id: str) -> str:
        """Claim ``job_id``, animate it, write the result once; returns what happened."""
        from fomm.app.broker import Scripts, job_key, lease_key

        scripts = Scripts(self.client)
        token = secrets.token_hex(8)
        lease_ms = int(self.lease_s * 1000)
        claim = _while_broker_away(lambda: scripts.claim(
            [job_key(job_id), lease_key(job_id)], [token, lease_ms, self.name, time.time()],
            client=self.client), f"job {job_id}: claim")
        claim = claim.decode() if isinstance(claim, bytes) else claim
        if claim != "ok":
            log.info("job %s: not run (%s)", job_id, claim)
            return claim
        log.info("job %s: started (attempt %s)", job_id, token)
        run = _Run(self, scripts, job_id, token, lease_ms)
        try:
            return run.execute()
        finally:
            run.stop()


class _Run:
    """One attempt at one job: the lease, the progress, the files."""

    def __init__(self, runner: Runner, scripts, job_id: str, token: str, lease_ms: int) -> None:
        from fomm.app.broker import job_key, lease_key

        self.runner, self.scripts, self.job_id, self.token = runner, scripts, job_id, token
        self.keys = [job_key(job_id), lease_key(job_id)]
        self.lease_ms = lease_ms
        self.now_status = "running"  # what the last beat said the job is
        self.cancel = threading.Event()
        self._stop = threading.Event()
        self._progress: tuple[int, int | None] | None = None
        self._last_write = 0.0
        self._thread = threading.Thread(target=self._renew, daemon=True,
                                        name=f"fomm-lease-{job_id[:8]}")
        self._thread.start()

    def beat(self, progress: tuple[int, int | None] | None = None) -> None:
        args = [self.token, self.lease_ms]
        if progress is not None:
            done, total = progress
            args += [done, "" if total is None else total]
        status = self.scripts.beat(self.keys, args, client=self.runner.client)
        self.now_status = status.decode() if isinstance(status, bytes) else status
        if self.now_status != "running":
            self.cancel.set()

    def _renew(self) -> None:
        period = max(0.2, self.lease_ms / 3000)
        while not self._stop.wait(period):
            try:
                self.beat()
            except Exception as err:  # Redis away: the next beat may work; the lease says how long
                log.warning("job %s: lease renewal failed (%s)", self.job_id, err,
                            exc_info=not isinstance(err, _broker_errors()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def on_progress(self, done: int, total: int | None) -> None:
        from fomm.app.broker import broker_errors
        from fomm.app.jobs import Cancelled

        now = time.monotonic()
        if now - self._last_write >= PROGRESS_EVERY_S:
            self._last_write = now
            try:
                self.beat((done, total))
            except broker_errors():  # the broker is away: the job goes on, the lease says how long
                log.warning("job %s: progress not written (the broker does not answer)",
                            self.job_id)
        self._progress = (done, total)
        if self.cancel.is_set():
            raise Cancelled

    def execute(self) -> str:
        from rq.timeouts import JobTimeoutException

        from fomm.app.animation import JobInput, animate, parse_options, public_message
        from fomm.app.broker import GENERIC_ERROR, Scripts, decode_state
        from fomm.app.jobs import DISK_FULL_ERROR, Cancelled, disk_full

        runner, storage = self.runner, self.runner.storage
        state = decode_state(_while_broker_away(lambda: runner.client.hgetall(self.keys[0]),
                                                f"job {self.job_id}: state"))
        payload = state["payload"]
        scratch = runner.scratch / f"{self.job_id}-{self.token}"
        result_key = f"{self.job_id}/result-{self.token}.mp4"
        local = storage.local(result_key)
        output = local if local is not None else scratch / "result.mp4"
        status, error, result = "failed", None, None
        names: dict[str, str] = {}
        started = time.time()
        try:
            source = storage.fetch(payload["source"], scratch)
            driving = storage.fetch(payload["driving"], scratch)
            names = {str(source): payload["filenames"]["source"],
                     str(driving): payload["filenames"]["driving"], str(scratch): "",
                     str(output.parent): ""}
            inp = JobInput(source, driving, parse_options(payload["fields"], runner.settings),
                           names, payload["fields"])
            output.parent.mkdir(parents=True, exist_ok=True)
            result = animate(runner.animator, inp, output, self.on_progress)
            if local is None:
                storage.put(result_key, output)
            status = "succeeded"
        except Cancelled:
            status = ""
        except FommError as err:
            error = public_message(str(err), names)
        except JobTimeoutException:
            error = "the job took longer than the server's limit"
        except Exception as err:
            if disk_full(err):  # the half-written result goes with the job's files below
                log.error("job %s failed: out of disk space", self.job_id)
                error = DISK_FULL_ERROR
            else:
                log.exception("job %s failed", self.job_id)
                error = GENERIC_ERROR
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.stop()
        if self.cancel.is_set() or not status:
            return self._abandon(result_key, local)
        frames = result["frames"] if result else (self._progress or (0, None))[0]
        observation = {"status": status, "seconds": time.time() - started, "frames": frames}
        written = _while_broker_away(lambda: Scripts(runner.client).finish(
            [*self.keys, *_finish_keys()],
            [self.token, self.job_id, time.time(), status, error or "",
             json.dumps(result) if result else "", result_key if result else "", frames,
             json.dumps(observation)], client=runner.client), f"job {self.job_id}: result")
        if not written:
            return self._abandon(result_key, local)
        try:  # the result stays until the TTL; the inputs (and a dead run's leftovers) go now
            if status == "succeeded":
                storage.keep_only(result_key)
            else:
                storage.delete(self.job_id)
        except Exception:  # leftovers go with the job at its TTL
            log.warning("job %s: could not tidy its files", self.job_id, exc_info=True)
        log.info("job %s: %s", self.job_id, status)
        return status

    def _abandon(self, result_key: str, local: Path | None) -> str:
        """The job was cancelled or taken by another run: drop what this run wrote."""
        storage = self.runner.storage
        _remove(storage, result_key)
        if self.now_status == "cancelled":
            storage.delete(self.job_id)  # a cancelled job keeps no files
        log.info("job %s: stopped (%s)", self.job_id, self.now_status)
        return self.now_status


def backoff(first_s: float = 1.0, most_s: float = 30.0) -> Iterator[float]:
    """Waits for retries: ``first_s``, doubling, at most ``most_s``, with 20 % jitter."""
    wait = first_s
    while True:
        yield wait * random.uniform(0.8, 1.2)
        wait = min(wait * 2, most_s)


def _while_broker_away(call: Callable[[], Any], what: str, give_up_s: float = 600.0) -> Any:
    """``call()``, retried with :func:`backoff` while the broker does not answer (at most
    ``give_up_s``; then its error is raised)."""
    from fomm.app.broker import broker_errors

    deadline = time.monotonic() + give_up_s
    for wait in backoff():
        try:
            return call()
        except broker_errors() as err:
            if time.monotonic() + wait > deadline:
                raise
            log.warning("%s: the broker does not answer (%s); again in %.0f s", what, err, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def wait_for_broker(client, stop: threading.Event | None = None) -> bool:
    """Block until Redis answers a ping (retrying with :func:`backoff`); False if ``stop`` is set
    meanwhile."""
    from fomm.app.broker import broker_errors

    for wait in backoff():
        try:
            client.ping()
            return True
        except broker_errors() as err:
            log.warning("the broker does not answer (%s); again in %.0f s", err, wait)
        if stop is not None and stop.wait(wait):
            return False
        if stop is None:
            time.sleep(wait)
    return False


def _broker_errors() -> tuple[type[Exception], ...]:
    from fomm.app.broker import broker_errors

    return broker_errors()


def _finish_keys() -> list[str]:
    from fomm.app.broker import ACTIVE, FINISHED_SET, OBSERVED, RECENT

    return [ACTIVE, FINISHED_SET, OBSERVED, RECENT]


def _remove(storage, key: str) -> None:
    try:
        storage.remove(key)
    except Exception:  # a leftover file goes with the job's folder at its TTL
        log.warning("could not remove %s", key, exc_info=True)


def run_job(job_id: str) -> str:
    """The function RQ runs for each job (in a ``fomm worker`` process)."""
    if _RUNNER is None:
        raise RuntimeError("run_job runs inside 'fomm worker' only")
    return _RUNNER.run(job_id)


def make_worker(client, name: str, heartbeat_s: float):
    """An RQ worker on the fomm queue that runs jobs in-process and renews them every beat."""
    from rq import SimpleWorker

    from fomm.app.broker import QUEUE

    lease_s = 3 * heartbeat_s

    class FommWorker(SimpleWorker):
        def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
            return max(1, round(lease_s))  # RQ's started registry expires the job after this

        def execute_job(self, job, queue) -> None:
            execution = self.prepare_execution(job)
            stop = threading.Event()

            def beat() -> None:
                while not stop.wait(heartbeat_s):
                    try:
                        self.maintain_heartbeats(job, execution)
                    except Exception as err:
                        self.log.warning("heartbeat failed (%s)", err,
                                         exc_info=not isinstance(err, _broker_errors()))

            thread = threading.Thread(target=beat, daemon=True, name="fomm-rq-heartbeat")
            thread.start()
            try:
                self.perform_job(job, queue, execution)
            finally:
                stop.set()
                thread.join(timeout=10)
            from rq.worker import WorkerStatus

            self.set_state(WorkerStatus.IDLE)

    # the idle loop wakes (heartbeat, registry cleanup) every lease; dead workers' keys expire
    ttl = max(16, round(lease_s) + 15)
    return FommWorker([QUEUE], connection=client, name=name, worker_ttl=ttl,
                      maintenance_interval=max(1, round(heartbeat_s)))


def cmd_worker(args: argparse.Namespace) -> None:
    from fomm.app.animation import load_animator
    from fomm.app.broker import _safe_url, connect
    from fomm.app.settings import Settings
    from fomm.app.storage import open_storage

    global _RUNNER
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    client = connect(args.broker)
    storage = open_storage(args.storage, args.data_dir)
    settings = Settings(checkpoint=args.checkpoint, config=args.config, flavour=args.flavour,
                        device=args.device, precision=args.precision, backend=args.backend,
                        batch_size=args.batch_size,
                        data_dir=args.data_dir)
    animator = load_animator(settings)
    name = args.name or f"{socket.gethostname()}:{os.getpid()}"
    scratch = Path(args.data_dir) / "scratch" / secrets.token_hex(4)
    _RUNNER = Runner(client, storage, animator, settings, scratch, name, 3 * args.heartbeat_s)
    print(f"fomm worker {name}: {_safe_url(args.broker)}, storage {storage.kind}, "
          f"device {animator.device}", flush=True)
    try:
        work(client, name, args.heartbeat_s, args.log_level.upper())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def work(client, name: str, heartbeat_s: float, log_level: str = "INFO") -> None:
    """Run RQ's worker loop until it is asked to stop; when the loop ends because the broker
    went away (RQ's worker quits on a lost connection), wait for the broker and start it again.

    A job running meanwhile goes on (its progress and lease wait for the broker), and a job RQ
    lost is retried by the registry cleanup as when a worker dies.
    """
    from fomm.app.broker import broker_errors

    while True:
        worker = make_worker(client, name, heartbeat_s)
        try:
            worker.work(with_scheduler=False, logging_level=log_level)
        except broker_errors() as err:  # while starting up
            log.warning("worker %s: the broker does not answer (%s)", name, err)
        except ValueError as err:  # "an active worker named ... already": ours, from before
            log.info("worker %s: %s; registering again", name, err)
        if getattr(worker, "_stop_requested", False) or \
                getattr(worker, "_shutdown_requested_date", None) is not None:
            return  # SIGTERM or SIGINT: RQ's warm shutdown, while busy or idle
        log.warning("worker %s: the job loop ended; waiting for the broker", name)
        wait_for_broker(client)
        with contextlib.suppress(Exception):  # the old registration would block the new one
            worker.register_death()
        time.sleep(1.0)  # a loop that ends at once for another reason does not spin
