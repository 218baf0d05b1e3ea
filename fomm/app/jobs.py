"""The job table and its bounded queue: worker threads run one animation each, cancelled per frame.

Knows nothing about HTTP. A job is queued, then running, then succeeded, failed or cancelled.
The queue holds at most ``max_queue`` waiting jobs besides the ones running; beyond that
:meth:`JobQueue.submit` raises :class:`QueueFull` and nothing is queued. With a
:class:`~fomm.app.store.JobStore`, every change of state is written to disk and read back at
start: finished jobs stay until their TTL, queued ones run, and one that was running when the
server stopped (or died) is queued again once, then failed with :data:`RESTART_ERROR`.
"""

from __future__ import annotations

import errno
import logging
import secrets
import shutil
import sqlite3
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fomm.app.store import JobStore
from fomm.errors import FommError

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED = ("succeeded", "failed", "cancelled")
GENERIC_ERROR = "internal error while animating; the server log has the details"
SHUTDOWN_ERROR = "the server shut down before the job finished"
RESTART_ERROR = ("the server stopped twice while this job was running; it was not tried a third "
                 "time (submit it again, perhaps with a shorter clip)")
RESTORE_ERROR = "the job could not be restored after a restart of the server"
DISK_FULL_ERROR = ("the server ran out of disk space while making the result; nothing was kept "
                   "(submit it again later)")
MAX_RESTARTS = 1  # a job interrupted by a stop of the server is queued again this many times

log = logging.getLogger("fomm.serve")


class QueueFull(Exception):
    """No room for another job; ``retry_after`` is a guess of the seconds until there is."""

    code = "busy"  # the error code the API answers with (503)

    def __init__(self, retry_after: int, message: str = "the job queue is full") -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Cancelled(Exception):
    """Raised from the progress callback to stop a running job at the next frame."""


def new_job_id() -> str:
    """An unguessable id that is also a safe folder name (URL-safe base64, 128 bits)."""
    return secrets.token_urlsafe(16)


@dataclass
class Job:
    """One animation request, its files (all under ``folder``) and its state."""

    id: str
    folder: Path
    payload: Any  # what the run function needs (inputs, options); opaque here
    total: int | None = None  # driving frames expected, when known
    status: Status = "queued"
    done: int = 0
    error: str | None = None
    result: Any = None  # what the run function returned
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    restarts: int = 0  # times the server stopped while this job was running
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def output(self) -> Path:
        return self.folder / "result.mp4"

    def snapshot(self) -> dict[str, Any]:
        """The public state (no paths)."""
        return {"id": self.id, "status": self.status,
                "progress": {"done": self.done, "total": self.total},
                "error": self.error, "result": self.result if self.status == "succeeded" else None,
                "created_at": self.created_at,
                "started_at": self.started_at, "finished_at": self.finished_at}


def disk_full(err: BaseException | None) -> bool:
    """Whether ``err``, or an exception it was raised from, is "no space left" (or over quota)."""
    seen = 0
    while err is not None and seen < 16:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


RunFn = Callable[[Job, Callable[[int, int | None], None]], Any]


class JobQueue:
    """Jobs by id, a bounded FIFO of waiting jobs, worker threads and a TTL janitor.

    Args:
        run: ``run(job, on_progress)`` does the work and returns the job's result; it may raise
            :class:`~fomm.errors.FommError` (the job fails with its message) or anything else
            (the job fails with a generic message; the traceback is logged).
        max_queue: waiting jobs allowed besides the running ones.
        workers: jobs run at once (each in its own thread; they share the model).
        ttl_s: finished jobs and their files are removed this long after they finish.
        store: where job state is kept across restarts (None: in memory only).
        dump, load: payload → a JSON-able value and back, for the store.
    """

    def __init__(self, run: RunFn, max_queue: int = 8, workers: int = 1,
                 ttl_s: float = 3600.0, store: JobStore | None = None,
                 dump: Callable[[Any], Any] = lambda p: p,
                 load: Callable[[Any], Any] = lambda p: p) -> None:
        if max_queue < 0 or workers < 1:
            raise ValueError(f"JobQueue: max_queue >= 0 and workers >= 1, got {max_queue}, "
                             f"{workers}")
        self._run = run
        self.max_queue = max_queue
        self.workers = workers
        self.ttl_s = ttl_s
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._running = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._accepting = False
        self._stopping = False
        self._stopped = threading.Event()  # wakes the janitor
        self._threads: list[threading.Thread] = []
        self._durations: deque[float] = deque(maxlen=20)
        self.store, self._dump, self._load = store, dump, load
        self._restored = False
        self.on_finish: Callable[[Job], None] | None = None  # called after a job ran (metrics)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        with self._lock:
            if self._threads:
                return
            self._accepting, self._stopping = True, False
            self._stopped.clear()
            if self.store is not None and not self._restored:
                self._restore()
        for i in range(self.workers):
            self._spawn(self._work, f"fomm-worker-{i}")
        self._spawn(self._janitor, "fomm-janitor")

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop accepting, cancel waiting jobs, give running ones ``grace_s`` to finish.

        Running jobs still going after that are stopped at their next frame and marked failed.
        With a store, waiting jobs stay queued and stopped ones are queued again (once) instead:
        they run at the next start.
        """
        with self._lock:
            self._accepting = False
            while self._waiting:
                job = self._waiting.popleft()
                if self.store is None:
                    self._finish(job, "cancelled", SHUTDOWN_ERROR)
                    shutil.rmtree(job.folder, ignore_errors=True)
            self._stopping = True
            self._stopped.set()
            self._wake.notify_all()
        deadline = time.monotonic() + grace_s
        with self._lock:
            while self._running and time.monotonic() < deadline:
                self._wake.wait(min(0.5, max(0.0, deadline - time.monotonic())))
            for job in self._jobs.values():
                if job.status == "running":
                    job.cancel.set()  # → Cancelled at the next frame → failed (shutdown)
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    # ---------------------------------------------------------------- requests

    def check_room(self) -> None:
        """Raise :class:`QueueFull` when a submission now would be refused."""
        with self._lock:
            self._check_room()

    def submit(self, job: Job) -> None:
        """Queue ``job``, or raise :class:`QueueFull` (and queue nothing)."""
        with self._lock:
            self._check_room()
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._save(job)
            self._wake.notify()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def snapshot(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.snapshot()

    def delete(self, job_id: str) -> dict[str, Any] | None:
        """Cancel an unfinished job (kept as "cancelled" until its TTL) or forget a finished one.

        Files are removed either way: now for a waiting or finished job, by its worker (at the
        next frame) for a running one. Returns the job's state after this, or None if unknown.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.status in FINISHED:
                del self._jobs[job_id]
                if self.store is not None:
                    self.store.delete([job_id])
                shutil.rmtree(job.folder, ignore_errors=True)
                return {**job.snapshot(), "deleted": True}
            if job.status == "queued":
                self._waiting.remove(job)
                shutil.rmtree(job.folder, ignore_errors=True)
            job.cancel.set()  # a running job stops at its next frame; its worker removes files
            self._finish(job, "cancelled", "cancelled by the client")
            return {**job.snapshot(), "deleted": True}

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"queued": len(self._waiting), "running": self._running,
                    "max_queue": self.max_queue, "workers": self.workers}

    def counts(self) -> dict[str, int]:
        """Jobs known now, by status."""
        with self._lock:
            counts: dict[str, int] = {}
            for job in self._jobs.values():
                counts[job.status] = counts.get(job.status, 0) + 1
            return counts

    def remove_expired(self, now: float | None = None) -> int:
        """Forget finished jobs older than the TTL and delete their files; returns how many."""
        now = time.time() if now is None else now
        with self._lock:
            old = [job for job in self._jobs.values() if job.status in FINISHED
                   and job.finished_at is not None and now - job.finished_at >= self.ttl_s]
            for job in old:
                del self._jobs[job.id]
            if self.store is not None and old:
                self.store.delete([job.id for job in old])
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)
        return len(old)

    # ---------------------------------------------------------------- internals

    def _check_room(self) -> None:
        if not self._accepting:
            raise QueueFull(30, "the server is not accepting jobs (starting or shutting down)")
        if len(self._waiting) + self._running >= self.max_queue + self.workers:
            raise QueueFull(self._retry_after())

    def _retry_after(self) -> int:
        """Seconds until a slot frees up, guessed from recent job durations (at least 1)."""
        typical = statistics.median(self._durations) if self._durations else 10.0
        return max(1, round(typical * (len(self._waiting) + 1) / self.workers))

    def _finish(self, job: Job, status: Status, error: str | None = None) -> None:
        job.status, job.error, job.finished_at = status, error, time.time()
        self._save(job)

    def _save(self, job: Job) -> None:
        """Write the job's row (under the lock); nothing without a store."""
        if self.store is None:
            return
        try:
            self._put(job)
        except (sqlite3.Error, OSError) as err:  # a full disk: the job lives on in memory
            log.warning("job %s: its state could not be saved (%s)", job.id, err)

    def _put(self, job: Job) -> None:
        self.store.put({"id": job.id, "folder": str(job.folder), "status": job.status,
                        "payload": self._dump(job.payload), "total": job.total, "done": job.done,
                        "error": job.error, "result": job.result, "created_at": job.created_at,
                        "started_at": job.started_at, "finished_at": job.finished_at,
                        "restarts": job.restarts})

    def _interrupted(self, job: Job) -> None:
        """The server stopped while ``job`` ran: queue it again once, then fail it."""
        if job.restarts >= MAX_RESTARTS:
            self._finish(job, "failed", RESTART_ERROR)
            return
        job.restarts += 1
        job.status, job.done, job.started_at = "queued", 0, None
        self._save(job)

    def _restore(self) -> None:
        """Read the store (under the lock at start): the jobs of an earlier run of the server."""
        self._restored = True
        for row in self.store.rows():
            job = Job(row["id"], Path(row["folder"]), None, total=row["total"],
                      status=row["status"], done=row["done"], error=row["error"],
                      result=row["result"], created_at=row["created_at"],
                      started_at=row["started_at"], finished_at=row["finished_at"],
                      restarts=row["restarts"])
            self._jobs[job.id] = job
            if job.status in FINISHED:
                continue
            try:
                job.payload = self._load(row["payload"])
            except Exception:
                log.exception("job %s could not be restored", job.id)
                self._finish(job, "failed", RESTORE_ERROR)
                continue
            if job.status == "running":
                log.warning("job %s was running when the server stopped", job.id)
                self._interrupted(job)
            if job.status == "queued":
                self._waiting.append(job)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _next(self) -> Job | None:
        with self._lock:
            while not self._waiting and not self._stopping:
                self._wake.wait()
            if self._stopping:
                return None
            job = self._waiting.popleft()
            job.status, job.started_at = "running", time.time()
            self._running += 1
            self._save(job)
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                self._execute(job)
            finally:
                with self._lock:
                    self._running -= 1
                    self._wake.notify_all()

    def _execute(self, job: Job) -> None:
        def on_progress(done: int, total: int | None) -> None:
            job.done, job.total = done, total if total is not None else job.total
            if job.cancel.is_set():
                raise Cancelled

        status: Status
        error, result = None, None
        try:
            result = self._run(job, on_progress)
            status = "succeeded"
        except Cancelled:
            status, error = "failed", SHUTDOWN_ERROR  # a user's cancel has set its own status
        except Exception as err:
            status = "failed"
            if disk_full(err):  # nothing half-written stays: the folder goes
                log.error("job %s failed: out of disk space in %s", job.id, job.folder)
                error = DISK_FULL_ERROR
                shutil.rmtree(job.folder, ignore_errors=True)
            elif isinstance(err, FommError):
                error = str(err)
            else:
                log.exception("job %s failed", job.id)
                error = GENERIC_ERROR
        with self._lock:
            if job.status == "cancelled":  # deleted by the client while running
                shutil.rmtree(job.folder, ignore_errors=True)
            elif status == "failed" and error == SHUTDOWN_ERROR and self.store is not None:
                self._interrupted(job)  # runs again at the next start
            else:
                job.result = result
                if status == "succeeded":
                    job.total = job.done
                    self._durations.append(time.time() - (job.started_at or job.created_at))
                self._finish(job, status, error)
        if self.on_finish is not None:
            try:
                self.on_finish(job)
            except Exception:
                log.exception("on_finish failed for job %s", job.id)

    def _janitor(self) -> None:
        period = max(0.5, min(60.0, self.ttl_s / 4))
        while not self._stopped.wait(period):
            self.remove_expired()
