"""Jobs through Redis: API processes queue them (RQ), ``fomm worker`` processes anywhere run them.

Knows Redis keys and RQ, not HTTP or models. RQ delivers each job to one worker and re-queues
it when that worker dies (its entry in RQ's started registry stops being renewed; RQ's cleanup
then retries it once, see :func:`on_rq_failure`). The job's state is a Redis hash that every API
process reads, so progress, cancel and results work from any of them. Keys (prefix ``fomm:``):

- ``job:<id>``: the hash (status, progress, payload, result, and ``attempt``: the token of the
  worker run that owns it); ``lease:<id>``: that run's lease, renewed while it is alive.
- ``active`` (sorted set): queued and running jobs, for the queue limit (checked and added in
  one script, so two API processes cannot both take the last place).
- ``finished`` (sorted set by finish time): for the TTL; ``observed``: durations for /metrics.

A worker run claims a job only when no other live run holds it, and writes its result only while
it still owns it, so a job retried after a stalled (not dead) worker still ends with one result.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fomm.app.jobs import FINISHED, Job, QueueFull
from fomm.app.storage import Storage
from fomm.errors import FommError

log = logging.getLogger("fomm.broker")
QUEUE = "fomm"
PREFIX = "fomm:"
ACTIVE, FINISHED_SET = PREFIX + "active", PREFIX + "finished"
OBSERVED, RECENT = PREFIX + "observed", PREFIX + "recent"  # durations: for /metrics, Retry-After
JANITOR_LOCK = PREFIX + "janitor"
RUN_FUNCTION = "fomm.app.worker.run_job"
FAILURE_CALLBACK = "fomm.app.broker.on_rq_failure"
MAX_RETRIES = 1  # a job whose worker dies is run again this many times
LOST_ROUNDS = 2  # janitor rounds a job must look lost (held by no run) before it is queued again
ABANDONED_ERROR = ("the worker running this job stopped twice; it was not tried a third time "
                   "(submit it again, perhaps with a shorter clip)")
GENERIC_ERROR = "internal error while animating; the worker log has the details"
CANCEL_ERROR = "cancelled by the client"
TEXT_FIELDS = ("status", "error", "attempt", "worker", "result_key")
FLOAT_FIELDS = ("created_at", "started_at", "finished_at")
BROKER_RETRY_AFTER_S = 5  # Retry-After while the broker does not answer
_F = TypeVar("_F", bound=Callable[..., Any])


class BrokerAway(QueueFull):
    """The broker does not answer (restarting, unreachable): try again in ``retry_after`` s."""

    code = "broker_unavailable"


def broker_errors() -> tuple[type[Exception], ...]:
    """Redis's "not reachable now" errors (connection refused or lost, timeouts, loading)."""
    import redis

    return (redis.ConnectionError, redis.TimeoutError)


def _needs_broker(method: _F) -> _F:
    """Turn Redis's "not reachable" errors raised by ``method`` into :class:`BrokerAway`."""

    @functools.wraps(method)
    def wrapped(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except broker_errors() as err:
            log.warning("the broker does not answer (%s)", err)
            raise BrokerAway(BROKER_RETRY_AFTER_S, "the job broker is not reachable just now "
                             "(jobs already submitted are kept)") from err

    return wrapped  # type: ignore[return-value]


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def lease_key(job_id: str) -> str:
    return f"{PREFIX}lease:{job_id}"


# KEYS: active, job; ARGV: limit, id, created_at, field, value, ...  → 1 added, 0 full
_RESERVE = """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
return 1
"""
# KEYS: job, lease; ARGV: token, lease_ms, worker, now → 'ok' or why not
_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'gone' end
if status ~= 'queued' and status ~= 'running' then return status end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'leased' end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'running', 'attempt', ARGV[1], 'worker', ARGV[3],
           'started_at', ARGV[4], 'done', 0)
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return 'ok'
"""
# KEYS: job, lease; ARGV: token, lease_ms, [done, total] → 'running' or what the job is now
_BEAT = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 'lost' end
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' then return status end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if ARGV[3] then redis.call('HSET', KEYS[1], 'done', ARGV[3], 'total', ARGV[4]) end
return 'running'
"""
# KEYS: job, lease, active, finished, observed, recent; ARGV: token, id, now, status, error, result,
# result_key, done, observation → 1 written, 0 not the owner (or cancelled meanwhile)
_FINISH = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'error', ARGV[5], 'result', ARGV[6],
           'result_key', ARGV[7], 'finished_at', ARGV[3])
if ARGV[4] == 'succeeded' then
  redis.call('HSET', KEYS[1], 'done', ARGV[8], 'total', ARGV[8])
  redis.call('HINCRBY', KEYS[1], 'completions', 1)
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
redis.call('RPUSH', KEYS[5], ARGV[9])
redis.call('LTRIM', KEYS[5], -10000, -1)
if ARGV[4] == 'succeeded' then
  redis.call('RPUSH', KEYS[6], ARGV[9])
  redis.call('LTRIM', KEYS[6], -20, -1)
end
return 1
"""
# KEYS: job, lease, active, finished; ARGV: id, now, error, requeue (1/0), from (csv of states)
# → the status before, or '' when the job was not in one of those states
_STOP = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
local allowed = false
for s in string.gmatch(ARGV[5], '[^,]+') do if s == status then allowed = true end end
if not allowed then return '' end
redis.call('DEL', KEYS[2])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'done', 0, 'started_at', '', 'attempt', '')
  return status
end
redis.call('HSET', KEYS[1], 'status', ARGV[6], 'error', ARGV[3], 'finished_at', ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return status
"""


def connect(url: str):
    """A Redis client for ``url`` (``redis://HOST:PORT/DB``); FommError when it does not answer."""
    try:
        import redis
    except ImportError as err:
        raise FommError("--broker needs the Redis extras: pip install 'fomm[redis]'") from err
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise FommError(f"--broker {url}: expected redis://HOST:PORT/DB")
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    # a dropped connection is made again on the next command, a few times over ~2 s; longer
    # outages are ridden out by the callers (BrokerAway here, a reconnect loop in the worker)
    client = redis.Redis.from_url(url, socket_connect_timeout=5,
                                  health_check_interval=30,
                                  retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 4),
                                  retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    try:
        client.ping()
    except redis.RedisError as err:
        raise FommError(f"--broker: Redis at {_safe_url(url)} does not answer ({err})") from err
    return client


def _safe_url(url: str) -> str:
    """The URL without a password (for messages)."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class Scripts:
    """The Lua scripts above, registered on one client."""

    def __init__(self, client) -> None:
        self.reserve = client.register_script(_RESERVE)
        self.claim = client.register_script(_CLAIM)
        self.beat = client.register_script(_BEAT)
        self.finish = client.register_script(_FINISH)
        self.stop = client.register_script(_STOP)


def stop_job(client, scripts: Scripts, job_id: str, *, error: str, requeue: bool = False,
             status: str = "failed", states: tuple[str, ...] = ("queued", "running")) -> str:
    """Move a job out of ``states``: queued again, or finished with ``status`` and ``error``.

    Returns the status it had, or "" when it was in none of ``states``.
    """
    keys = [job_key(job_id), lease_key(job_id), ACTIVE, FINISHED_SET]
    before = scripts.stop(keys, [job_id, time.time(), error, "1" if requeue else "0",
                                 ",".join(states), status], client=client)
    return before.decode() if isinstance(before, bytes) else before


def decode_state(raw: dict) -> dict[str, Any]:
    """A job hash (bytes from Redis) → typed fields."""
    state = {k.decode(): v.decode() for k, v in raw.items()}
    out: dict[str, Any] = {name: state.get(name) or None for name in TEXT_FIELDS}
    for name in FLOAT_FIELDS:
        out[name] = float(state[name]) if state.get(name) else None
    out["done"] = int(state.get("done") or 0)
    out["total"] = int(state["total"]) if state.get("total") else None
    out["attempts"] = int(state.get("attempts") or 0)
    out["completions"] = int(state.get("completions") or 0)
    out["result"] = json.loads(state["result"]) if state.get("result") else None
    out["payload"] = json.loads(state["payload"]) if state.get("payload") else None
    return out


def public_snapshot(job_id: str, state: dict[str, Any]) -> dict[str, Any]:
    """What the HTTP API shows of a job: the same fields as the embedded queue's."""
    return {"id": job_id, "status": state["status"],
            "progress": {"done": state["done"], "total": state["total"]},
            "error": state["error"],
            "result": state["result"] if state["status"] == "succeeded" else None,
            "created_at": state["created_at"], "started_at": state["started_at"],
            "finished_at": state["finished_at"]}


def on_rq_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ's failure callback: the worker died (or the run raised); queue again or fail.

    RQ calls it from whichever process cleans the registry; it then retries the job when
    ``job.retries_left`` allows, so the state says "queued" exactly then.
    """
    from rq.exceptions import AbandonedJobError

    retry = bool(job.retries_left and job.retries_left > 0)
    abandoned = exc_type is AbandonedJobError
    before = stop_job(connection, Scripts(connection), job.id, requeue=retry,
                      error=ABANDONED_ERROR if abandoned else GENERIC_ERROR)
    if before:
        log.warning("job %s: its worker %s; %s", job.id,
                    "stopped" if abandoned else f"raised {exc_type.__name__}",
                    "queued again" if retry else "failed")


class BrokerJobs:
    """The API side: submit, read, cancel and expire jobs kept in Redis; the queue's interface.

    Args:
        url: the broker, ``redis://HOST:PORT/DB``.
        storage: where uploads go and results come from.
        max_queue: waiting jobs allowed besides one running per live worker.
        ttl_s: finished jobs and their files are removed this long after they finish.
        job_timeout_s: a run taking longer fails (RQ's job timeout).
        janitor_s: how often expired jobs and dead workers' jobs are looked for.
    """

    def __init__(self, url: str, storage: Storage, max_queue: int = 8, ttl_s: float = 3600,
                 job_timeout_s: float = 3600, janitor_s: float = 5.0, client=None) -> None:
        from rq import Queue

        self.url, self.storage = url, storage
        self.client = client or connect(url)
        self.scripts = Scripts(self.client)
        self.queue = Queue(QUEUE, connection=self.client)
        self.max_queue, self.ttl_s, self.job_timeout_s = max_queue, ttl_s, job_timeout_s
        self.janitor_s = janitor_s
        self.on_observe: Callable[[str, float, int], None] | None = None  # metrics
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._accepting = False
        self._lost: dict[str, int] = {}  # job id → janitor rounds in a row it looked lost

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._accepting = True
        self._stopped.clear()
        self._thread = threading.Thread(target=self._janitor, name="fomm-broker-janitor",
                                        daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 0) -> None:
        """Stop taking jobs (they keep running on the workers) and the janitor."""
        self._accepting = False
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # ---------------------------------------------------------------- requests

    def workers(self) -> int:
        """Workers registered on the queue now (a killed one counts until its key expires)."""
        from rq import Worker

        return Worker.count(connection=self.client, queue=self.queue)

    def _limit(self) -> int:
        return self.max_queue + max(1, self.workers())

    @_needs_broker
    def check_room(self) -> None:
        if not self._accepting:
            raise QueueFull(30, "the server is not accepting jobs (starting or shutting down)")
        if self.client.zcard(ACTIVE) >= self._limit():
            raise QueueFull(self._retry_after())

    def _retry_after(self) -> int:
        raw = self.client.lrange(RECENT, 0, -1)
        seconds = sorted(json.loads(r)["seconds"] for r in raw)
        typical = seconds[len(seconds) // 2] if seconds else 10.0
        return max(1, round(typical * (self.max_queue + 1) / max(1, self.workers())))

    @_needs_broker
    def submit(self, job: Job) -> None:
        """Put the job's inputs in storage, take a place in the queue, enqueue it (or QueueFull).

        ``job.payload`` is a :class:`fomm.app.api.JobInput` whose files are in ``job.folder``.
        """
        if not self._accepting:
            raise QueueFull(30, "the server is not accepting jobs (starting or shutting down)")
        inp = job.payload
        keys = {"source": f"{job.id}/{inp.source.name}", "driving": f"{job.id}/{inp.driving.name}"}
        payload = {**keys, "fields": inp.fields,
                   "filenames": {"source": inp.names[str(inp.source)],
                                 "driving": inp.names[str(inp.driving)]}}
        try:
            self.storage.put(keys["source"], inp.source)
            self.storage.put(keys["driving"], inp.driving)
            fields = {"status": "queued", "payload": json.dumps(payload), "done": 0,
                      "total": "" if job.total is None else job.total,
                      "created_at": job.created_at, "attempts": 0, "completions": 0}
            args = [self._limit(), job.id, job.created_at]
            for name, value in fields.items():
                args += [name, value]
            if not self.scripts.reserve([ACTIVE, job_key(job.id)], args):
                raise QueueFull(self._retry_after())
            try:
                self._enqueue(job.id, MAX_RETRIES)
            except BaseException:
                self.client.zrem(ACTIVE, job.id)
                self.client.delete(job_key(job.id))
                raise
        except BaseException:
            self.storage.delete(job.id)
            raise
        finally:
            if self.storage.local(keys["source"]) is None:  # sent on: the local copies go
                shutil.rmtree(job.folder, ignore_errors=True)

    def _enqueue(self, job_id: str, retries: int) -> None:
        """Put ``job_id`` on RQ's queue; RQ runs it again ``retries`` times if its worker dies."""
        from rq import Callback, Retry

        self.queue.enqueue(RUN_FUNCTION, job_id, job_id=job_id,
                           job_timeout=int(self.job_timeout_s), result_ttl=600,
                           failure_ttl=int(self.ttl_s),
                           retry=Retry(max=retries) if retries > 0 else None,
                           on_failure=Callback(FAILURE_CALLBACK))

    @_needs_broker
    def state(self, job_id: str) -> dict[str, Any] | None:
        raw = self.client.hgetall(job_key(job_id))
        return decode_state(raw) if raw else None

    def snapshot(self, job_id: str) -> dict[str, Any] | None:
        state = self.state(job_id)
        return None if state is None else public_snapshot(job_id, state)

    @_needs_broker
    def delete(self, job_id: str) -> dict[str, Any] | None:
        """Cancel an unfinished job or forget a finished one; None if unknown."""
        before = stop_job(self.client, self.scripts, job_id, error=CANCEL_ERROR,
                          status="cancelled")
        if before == "queued":
            self.queue.remove(job_id)
            self.storage.delete(job_id)
        # a running one: its worker sees "cancelled" at its next frame and removes the files
        state = self.state(job_id)
        if state is None:
            return None
        if not before:  # finished already: forget it
            self.client.delete(job_key(job_id))
            self.client.zrem(FINISHED_SET, job_id)
            self.storage.delete(job_id)
        return {**public_snapshot(job_id, state), "deleted": True}

    @_needs_broker
    def stats(self) -> dict[str, int]:
        counts = self.counts(active_only=True)
        return {"queued": counts.get("queued", 0), "running": counts.get("running", 0),
                "max_queue": self.max_queue, "workers": self.workers()}

    @_needs_broker
    def counts(self, active_only: bool = False) -> dict[str, int]:
        """Jobs known now, by status."""
        ids = [i.decode() for i in self.client.zrange(ACTIVE, 0, -1)]
        if not active_only:
            ids += [i.decode() for i in self.client.zrange(FINISHED_SET, 0, -1)]
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(job_key(job_id), "status")
            statuses = pipe.execute()
        counts: dict[str, int] = {}
        for status in statuses:
            if status is not None:
                counts[status.decode()] = counts.get(status.decode(), 0) + 1
        return counts

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # any Redis or network error is "not ok" for /healthz
            return False

    # ---------------------------------------------------------------- upkeep

    def remove_expired(self, now: float | None = None) -> int:
        """Forget finished jobs older than the TTL and delete their files; returns how many."""
        now = time.time() if now is None else now
        old = [i.decode() for i in self.client.zrangebyscore(FINISHED_SET, 0, now - self.ttl_s)]
        for job_id in old:
            self.storage.delete(job_id)
            self.client.delete(job_key(job_id))
            self.client.zrem(FINISHED_SET, job_id)
        return len(old)

    def observe(self) -> None:
        """Hand durations the workers recorded to ``on_observe`` (each to one API process)."""
        while raw := self.client.lpop(OBSERVED, 100):
            for item in raw:
                seen = json.loads(item)
                if self.on_observe is not None and seen["status"] in FINISHED:
                    self.on_observe(seen["status"], seen["seconds"], seen["frames"])

    def recover(self) -> None:
        """RQ's registry cleanup: the jobs of workers that stopped renewing are retried.

        It runs on the janitor thread, so the failure callback's time limit (:func:`on_rq_failure`
        records the retry in the job's state) is a timer: RQ's default, SIGALRM, can only be set
        on the main thread, and without the callback RQ would queue the job again while its state
        still named the dead run.
        """
        from rq.registry import StartedJobRegistry, clean_registries
        from rq.timeouts import TimerDeathPenalty

        if self.queue.acquire_maintenance_lock():
            try:
                StartedJobRegistry(queue=self.queue,
                                   death_penalty_class=TimerDeathPenalty).cleanup()
                clean_registries(self.queue)
            finally:
                self.queue.release_maintenance_lock()

    def reconcile(self) -> list[str]:
        """Queue again the jobs that no run holds and RQ does not hold either; returns their ids.

        fomm's job hash is the record: a job ``running`` whose lease ran out, or ``queued`` while
        RQ has it neither queued nor started, is lost (RQ's clean-up, :meth:`recover`, handles
        the usual case first). Seen so for :data:`LOST_ROUNDS` janitor rounds in a row, it is put
        on RQ's queue again; a lost run counts as a run, so a job runs at most
        ``MAX_RETRIES + 1`` times and then fails with :data:`ABANDONED_ERROR`. One API process
        acts on each job (the state change and a lock are atomic in Redis).
        """
        from rq.job import Job

        held = {b"queued", b"started", b"scheduled", b"deferred"}
        lost: dict[str, int] = {}
        for raw in self.client.zrange(ACTIVE, 0, -1):
            job_id = raw.decode()
            status, attempts = self.client.hmget(job_key(job_id), "status", "attempts")
            if status == b"running":
                if self.client.exists(lease_key(job_id)):
                    continue
            elif status != b"queued" or self.client.hget(Job.key_for(job_id), "status") in held:
                continue
            lost[job_id] = int(attempts or 0)
        self._lost = {job_id: self._lost.get(job_id, 0) + 1 for job_id in lost}
        requeued = []
        for job_id, rounds in self._lost.items():
            if rounds < LOST_ROUNDS:
                continue
            attempts = lost[job_id]
            if not self.client.set(f"{PREFIX}requeue:{job_id}", 1, nx=True,
                                   ex=max(1, round(self.janitor_s * LOST_ROUNDS))):
                continue  # another API process has it
            before = stop_job(self.client, self.scripts, job_id, error=ABANDONED_ERROR,
                              requeue=attempts <= MAX_RETRIES, states=("queued", "running"))
            if not before:
                continue
            if attempts > MAX_RETRIES:
                log.warning("job %s: its run was lost %d times; failed", job_id, attempts)
                continue
            self._enqueue(job_id, MAX_RETRIES - attempts)
            log.warning("job %s: %s but held by no worker; queued again", job_id, before)
            requeued.append(job_id)
        return requeued

    def _janitor(self) -> None:
        while not self._stopped.wait(self.janitor_s):
            try:
                self.recover()
                self.reconcile()
                self.observe()
                if self.client.set(JANITOR_LOCK, 1, nx=True, ex=max(1, int(self.janitor_s))):
                    self.remove_expired()
            except broker_errors() as err:  # Redis away for a while: the next round tries
                log.warning("broker upkeep skipped: the broker does not answer (%s)", err)
            except Exception:
                log.exception("broker upkeep failed")
