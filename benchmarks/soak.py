#!/usr/bin/env python
"""Soak: ``fomm serve`` under a bounded mixed load for a given time, measured from outside.

Starts ``fomm serve`` (the bundled model, or ``--checkpoint``; 127.0.0.1, a free port, a data
folder under ``--work-dir``, every limit at its default) as a child process, or with ``--broker``
a ``redis-server`` (append-only, loopback), ``fomm serve --broker`` and one ``fomm worker``. Then,
for ``--minutes``, threads in this process act as clients at a fixed, modest rate:

- jobs: every ``--job-every-s`` a photo (scikit-image's astronaut) and a ``--frames``-frame clip
  (the start of the packaged demo clip) are uploaded while fewer than ``--max-open-jobs`` are
  unfinished; every ``--cancel-every``-th is cancelled (DELETE) 0.5 to 12 s after; every
  unfinished job's status is read every ``--poll-s`` (the status latency), and each result is
  downloaded and checked to be an MP4;
- live sessions (not with ``--broker``: the API has no model then): every ``--live-every-s``, in
  turn, a normal session (photo, then ``--live-frames`` camera frames at most 10 a second, one in
  flight) or an attack: JPEG/PNG bombs as the photo or as a frame, undecodable frames, malformed
  and deeply nested JSON, text where the photo was due, unknown messages, a flood of frames, and
  (every ``--idle-every`` attacks) a client that sends nothing (the server must close it, freeing
  the model); each attack's answer and close code are checked;
- hostile uploads: every ``--hostile-every-s`` one of: a 100 KB request head in one write and in
  pieces (431), a body that drips one byte a second (cut with 408; at most two at once), a
  20000x20000 JPEG bomb and a 6000x6000 PNG bomb as the photo (422), a 1,000-field form (400), a
  driving "video" of random bytes (415/422), an upload abandoned half-way;
- measurements: ``/healthz`` every second (latency, status; the maximum during the live attacks
  and during the hostile uploads), the server's (and worker's) resident memory every 2 s.

With ``--broker``, Redis is restarted once (SIGTERM, ``--outage-s`` away, started again on the
same append-only file) at the middle of the run: submissions meanwhile must get 503 +
Retry-After, and every job accepted before must still finish.

At the end submissions stop and the unfinished jobs get ``--drain-s`` to finish. A job is *lost*
when it was accepted (202), not cancelled here, and did not end succeeded or failed (its status
went missing, or it never finished): that must be 0. Results go to
``benchmarks/results/soak-<device>.json`` (``soak-broker-<device>.json`` with ``--broker``),
rewritten every 30 s while the run goes on (``"complete": false``) so that a run cut short still
leaves its numbers; with the machine, the load's rates and a per-minute series.

    nice -n 10 python benchmarks/soak.py --minutes 30 --work-dir /work/scratch/soak/run
    nice -n 10 python benchmarks/soak.py --minutes 3 --broker
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import psutil
from machine import machine  # noqa: E402  (benchmarks/machine.py)
from PIL import Image
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
FINISHED = ("succeeded", "failed", "cancelled")
LIVE_ATTACKS = ("photo_bomb_jpeg", "nested_json", "idle", "bad_frames", "flood", "photo_bomb_png",
                "text_before_photo", "not_json", "unknown_type")
CANCEL_DELAYS_S = (0.5, 3.0, 6.0, 12.0)  # a cancelled job's age when cancelled, in turn
MB = 2**20


# ------------------------------------------------------------------------------------ inputs


def jpeg_bytes(rgb: np.ndarray, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def png_bomb(side: int) -> bytes:
    """A real PNG of side x side black RGB pixels: small on the wire, side² x 3 bytes decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    comp = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * side)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def jpeg_bomb(side: int = 20000) -> bytes:
    """A 16x16 JPEG whose header says side x side."""
    data = bytearray(jpeg_bytes(np.zeros((16, 16, 3), np.uint8)))
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", side, side)
    return bytes(data)


class Inputs:
    """What the clients send: the photo, the clip, camera frames and the hostile payloads."""

    def __init__(self, folder: Path, frames: int) -> None:
        from skimage import data

        from fomm.inference.demo import _packaged_clip
        from fomm.media.video import VideoWriter, iter_frames, probe

        astronaut = data.astronaut()
        self.source = png_bytes(astronaut)
        self.photo = jpeg_bytes(astronaut[:256, 128:384])
        clip = _packaged_clip()
        camera = list(iter_frames(clip, max_frames=max(frames, 60)))
        path = folder / "driving.mp4"
        with VideoWriter(path, fps=probe(clip).fps or 25) as writer:
            for frame in camera[:frames]:
                writer.write(frame)
        self.driving = path.read_bytes()
        self.camera = [jpeg_bytes(frame) for frame in camera]
        self.jpeg_bomb = jpeg_bomb(20000)
        self.png_bomb = png_bomb(6000)
        self.noise = np.random.default_rng(0).bytes(64 * 1024)


# ------------------------------------------------------------------------------------ record


def pct(values: list[float], digits: int = 1) -> dict[str, float | int | None]:
    """count, p50, p95, max of ``values``."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    a = np.asarray(values, float)
    return {"count": len(values), "p50": round(float(np.percentile(a, 50)), digits),
            "p95": round(float(np.percentile(a, 95)), digits), "max": round(float(a.max()), digits)}


class Record:
    """Everything measured, shared by the client threads (one lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.jobs: dict[str, dict] = {}  # id -> {t, status, cancelled, ...}
        self.refused: dict[str, int] = {}  # submission answers other than 202, by code
        self.status_ms: list[tuple[float, float]] = []  # (t, ms)
        self.status_codes: dict[str, int] = {}
        self.healthz: list[tuple[float, float, int]] = []  # (t, ms, status; 0: no answer)
        self.rss: list[tuple] = []  # (t, server MB, worker MB, server+worker CPU s, load 1 min)
        self.attacks: list[tuple[str, str, float, float]] = []  # (family, kind, t0, t1)
        self.hostile: dict[str, dict] = {}  # kind -> {count, expected, unexpected, seconds}
        self.live = {"sessions": 0, "busy": 0, "frames_sent": 0, "frames_answered": 0,
                     "skipped": 0, "dropped": 0, "errors": []}
        self.live_ms: list[tuple[float, float]] = []  # camera frame round trips
        self.warm_rss: float | None = None
        self.outage: tuple[float, float] | None = None
        self.events: list[str] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def outcome(self, kind: str, ok: bool, what: str, seconds: float | None = None) -> None:
        with self.lock:
            entry = self.hostile.setdefault(kind, {"count": 0, "expected": 0, "unexpected": 0,
                                                   "answers": {}, "seconds": [],
                                                   "unexpected_examples": []})
            entry["count"] += 1
            entry["expected" if ok else "unexpected"] += 1
            entry["answers"][what] = entry["answers"].get(what, 0) + 1
            if seconds is not None:
                entry["seconds"].append(seconds)
            if not ok and len(entry["unexpected_examples"]) < 5:
                entry["unexpected_examples"].append(f"{self.now():.0f}s: {what}")

    @contextlib.contextmanager
    def attack(self, family: str, kind: str):
        start = self.now()
        try:
            yield
        finally:
            with self.lock:
                self.attacks.append((family, kind, start, self.now()))


# ------------------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-m", "fomm", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env, cwd=REPO)


def start_redis(port: int, folder: Path, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes", "--appendfsync", "always", "--dir",
                             str(folder)], stdout=log.open("a"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)


def wait_ready(url: str, procs: list[subprocess.Popen], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a server process exited before it was ready")
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not get ready in {timeout} s")
        time.sleep(0.5)


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGINT, timeout: float = 60) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------ clients


class Soak:
    """The client threads and the measurements of one run."""

    def __init__(self, args: argparse.Namespace, url: str, inputs: Inputs,
                 server: subprocess.Popen, worker: subprocess.Popen | None) -> None:
        self.args, self.url, self.inputs = args, url, inputs
        self.host, self.port = "127.0.0.1", int(url.rsplit(":", 1)[1])
        self.server, self.worker = server, worker
        self.rec = Record()
        self.stop = threading.Event()  # the load's end
        self.done = threading.Event()  # the measurements' end
        self.drips = threading.Semaphore(2)
        self.open_jobs: dict[str, dict] = {}
        self.started_at = ""
        self.commit = _commit()

    # ---------------------------------------------------------------- measurements

    def sample_healthz(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.done.wait(self.args.healthz_every_s):
                start = time.perf_counter()
                try:
                    code = http.get("/healthz").status_code
                except httpx.HTTPError:
                    code = 0
                ms = (time.perf_counter() - start) * 1000
                with self.rec.lock:
                    self.rec.healthz.append((self.rec.now(), ms, code))

    def sample_rss(self) -> None:
        server = psutil.Process(self.server.pid)
        worker = psutil.Process(self.worker.pid) if self.worker else None
        while True:
            try:
                rss = server.memory_info().rss / MB
                wrss = worker.memory_info().rss / MB if worker else None
                cpu = sum(server.cpu_times()[:2]) + (sum(worker.cpu_times()[:2]) if worker
                                                     else 0.0)
            except psutil.Error:
                return
            with self.rec.lock:
                self.rec.rss.append((self.rec.now(), rss, wrss, cpu, os.getloadavg()[0]))
            if self.done.wait(2.0):
                return

    # ---------------------------------------------------------------- jobs

    def submit_jobs(self) -> None:
        files = {"source": ("astronaut.png", self.inputs.source, "image/png"),
                 "driving": ("clip.mp4", self.inputs.driving, "video/mp4")}
        accepted = 0
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self.stop.is_set():
                with self.rec.lock:
                    room = len(self.open_jobs) < self.args.max_open_jobs
                if room:
                    t = self.rec.now()
                    try:
                        r = http.post("/v1/animations", files=files)
                    except Exception as err:  # noqa: BLE001  counted; the load goes on
                        self.count_refused(f"no answer: {type(err).__name__}")
                    else:
                        if r.status_code == 202:
                            accepted += 1
                            cancel = self.args.cancel_every and \
                                accepted % self.args.cancel_every == 0
                            delay = CANCEL_DELAYS_S[accepted // (self.args.cancel_every or 1)
                                                    % len(CANCEL_DELAYS_S)]
                            job = {"t": t, "status": r.json()["status"], "cancelled": False,
                                   "cancel_at": t + delay if cancel else None,
                                   "before_outage": False}
                            with self.rec.lock:
                                self.rec.jobs[r.json()["id"]] = job
                                self.open_jobs[r.json()["id"]] = job
                        else:
                            code = _code(r)
                            if r.status_code == 503 and "retry-after" not in r.headers:
                                code += " (no Retry-After)"
                            self.count_refused(f"{r.status_code} {code}")
                self.stop.wait(self.args.job_every_s)

    def event(self, what: str) -> None:
        with self.rec.lock:
            if len(self.rec.events) < 50:
                self.rec.events.append(f"{self.rec.now():.0f}s: {what}")

    def count_refused(self, what: str) -> None:
        with self.rec.lock:
            self.rec.refused[what] = self.rec.refused.get(what, 0) + 1

    def poll_jobs(self) -> None:
        """Every unfinished job's status each ``--poll-s``; cancels when due; results fetched."""
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.done.wait(self.args.poll_s):
                with self.rec.lock:
                    jobs = list(self.open_jobs.items())
                for job_id, job in jobs:
                    try:
                        self.poll_one(http, job_id, job)
                    except Exception as err:  # noqa: BLE001  counted; the polling goes on
                        self.event(f"polling {job_id}: {type(err).__name__}: {err}")

    def poll_one(self, http: httpx.Client, job_id: str, job: dict) -> None:
        now = self.rec.now()
        if job["cancel_at"] is not None and now >= job["cancel_at"] and not job["cancelled"]:
            try:
                r = http.delete(f"/v1/animations/{job_id}")
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                job.update(cancelled=True, status=r.json().get("status", "cancelled"),
                           was=job["status"])
                self.finish(job_id, job)
            return
        start = time.perf_counter()
        try:
            r = http.get(f"/v1/animations/{job_id}")
        except httpx.HTTPError:
            return
        ms = (time.perf_counter() - start) * 1000
        with self.rec.lock:
            self.rec.status_ms.append((now, ms))
            key = str(r.status_code)
            self.rec.status_codes[key] = self.rec.status_codes.get(key, 0) + 1
        if r.status_code == 404:
            job.update(status="missing")
            self.finish(job_id, job)
        elif r.status_code == 200:
            state = r.json()
            job["status"] = state["status"]
            if state["status"] in FINISHED:
                job["seconds"] = now - job["t"]
                if state["status"] == "failed":
                    job["error"] = state.get("error")
                if state["status"] == "succeeded":
                    try:
                        result = http.get(state["result_url"])
                        job["result_ok"] = result.status_code == 200 and \
                            result.content[4:8] == b"ftyp"
                    except httpx.HTTPError:
                        job["result_ok"] = False
                self.finish(job_id, job)

    def finish(self, job_id: str, job: dict) -> None:
        with self.rec.lock:
            self.open_jobs.pop(job_id, None)
            if self.rec.warm_rss is None and job["status"] == "succeeded" and \
                    (self.args.broker or self.rec.live["sessions"]) and self.rec.rss:
                self.rec.warm_rss = self.rec.rss[-1][1]

    # ---------------------------------------------------------------- live

    def live_loop(self) -> None:
        attacks = self.args.live_attacks.split(",")
        turn = 0
        idle_count = 0
        while not self.stop.is_set():
            if turn % 2 == 0:
                self.live_session()
            else:
                kind = attacks[(turn // 2) % len(attacks)]
                if kind == "idle":
                    idle_count += 1
                    if idle_count % self.args.idle_every:
                        kind = "bad_frames"
                with self.rec.attack("live", kind):
                    try:
                        getattr(self, f"live_{kind}")()
                    except Exception as err:  # noqa: BLE001  counted; the load goes on
                        self.rec.outcome(f"live_{kind}", False, f"{type(err).__name__}: {err}")
            turn += 1
            self.stop.wait(self.args.live_every_s)

    def ws(self):
        return connect(self.url.replace("http", "ws") + "/v1/live", open_timeout=30,
                       max_size=16 * MB, close_timeout=5)

    def begin(self, ws) -> bool:
        """Send the photo; True when the session is ready (False: the model was busy)."""
        try:
            ws.send(self.inputs.photo)
            answer = json.loads(ws.recv(timeout=120))
        except ConnectionClosed as closed:  # busy: told, then closed (1013) before the photo
            if not (closed.rcvd and closed.rcvd.code == 1013):
                raise
            answer = {"type": "error", "code": "busy"}
        if answer.get("type") == "error" and answer.get("code") == "busy":
            with self.rec.lock:
                self.rec.live["busy"] += 1
            return False
        if answer.get("type") != "ready":
            raise RuntimeError(f"the photo got {answer}")
        ws.recv(timeout=60)  # the still photo
        return True

    def frame(self, ws, data: bytes) -> dict:
        """Send one camera frame; its answer (notices before it are passed over, the image
        after a ``frame`` answer is read)."""
        start = time.perf_counter()
        ws.send(data)
        while True:
            message = ws.recv(timeout=60)
            if isinstance(message, bytes):  # a late image of an earlier answer
                continue
            if (answer := json.loads(message)).get("type") != "notice":
                break
        with self.rec.lock:
            self.rec.live["frames_sent"] += 1
        if answer.get("type") == "frame":
            ws.recv(timeout=60)
            with self.rec.lock:
                self.rec.live["frames_answered"] += 1
                self.rec.live_ms.append((self.rec.now(), (time.perf_counter() - start) * 1000))
        elif answer.get("type") == "skipped":
            with self.rec.lock:
                self.rec.live["skipped"] += 1
        return answer

    def live_session(self) -> None:
        try:
            with self.ws() as ws:
                if not self.begin(ws):
                    return
                with self.rec.lock:
                    self.rec.live["sessions"] += 1
                for i in range(self.args.live_frames):
                    if self.stop.is_set():
                        break
                    t = time.perf_counter()
                    answer = self.frame(ws, self.inputs.camera[i % len(self.inputs.camera)])
                    if answer.get("type") not in ("frame", "skipped"):
                        raise RuntimeError(f"a camera frame got {answer}")
                    time.sleep(max(0.0, 0.1 - (time.perf_counter() - t)))  # <= 10 a second
        except Exception as err:  # noqa: BLE001  counted; the load goes on
            with self.rec.lock:
                if len(self.rec.live["errors"]) < 10:
                    self.rec.live["errors"].append(f"{self.rec.now():.0f}s: {err}")

    def ended(self, ws, code: str, close: int, kind: str, timeout: float = 60) -> None:
        """Expect ``{"type": "error", "code": code}``, then the close ``close``."""
        start = time.monotonic()
        got, closed = None, None
        try:
            while True:
                message = ws.recv(timeout=timeout)
                if isinstance(message, str):
                    got = json.loads(message)
                    if got.get("type") == "error":
                        break
        except ConnectionClosed as err:
            closed = err.rcvd.code if err.rcvd else None
        if closed is None:
            try:
                ws.recv(timeout=timeout)
            except ConnectionClosed as err:
                closed = err.rcvd.code if err.rcvd else None
        what = f"{(got or {}).get('code')} {closed}"
        ok = got is not None and got.get("code") == code and closed == close
        self.rec.outcome(f"live_{kind}", ok, what, time.monotonic() - start)

    def live_photo_bomb_jpeg(self) -> None:
        with self.ws() as ws:
            ws.send(self.inputs.jpeg_bomb)
            self.ended(ws, "bad_photo", 1008, "photo_bomb_jpeg")

    def live_photo_bomb_png(self) -> None:
        with self.ws() as ws:
            ws.send(self.inputs.png_bomb)
            self.ended(ws, "bad_photo", 1008, "photo_bomb_png")

    def live_text_before_photo(self) -> None:
        with self.ws() as ws:
            ws.send('{"type": "reference"}')
            self.ended(ws, "bad_message", 1003, "text_before_photo")

    @contextlib.contextmanager
    def started(self, kind: str):
        """A ready session (None when the model was busy)."""
        with self.ws() as ws:
            if self.begin(ws):
                yield ws
            else:
                self.rec.outcome(f"live_{kind}", True, "busy")
                yield None

    def live_nested_json(self) -> None:
        with self.started("nested_json") as ws:
            if ws:
                ws.send("[" * 2000 + "]" * 2000)  # deeper than json's recursion limit, < 4 KiB
                self.ended(ws, "bad_message", 1007, "nested_json")

    def live_not_json(self) -> None:
        with self.started("not_json") as ws:
            if ws:
                ws.send("not json {")
                self.ended(ws, "bad_message", 1007, "not_json")

    def live_unknown_type(self) -> None:
        with self.started("unknown_type") as ws:
            if ws:
                ws.send('{"type": "teleport"}')
                self.ended(ws, "bad_message", 1008, "unknown_type")

    def live_bad_frames(self) -> None:
        """Bombs and garbage as camera frames are skipped; the session goes on."""
        with self.started("bad_frames") as ws:
            if ws is None:
                return
            expect = [(self.inputs.jpeg_bomb, "resolution_too_large"),
                      (self.inputs.png_bomb, "resolution_too_large"),
                      (self.inputs.noise[:4096], "invalid_image"), (b"", "invalid_image"),
                      (self.inputs.camera[0][: len(self.inputs.camera[0]) // 2], None)]
            for data, code in expect:
                start = time.monotonic()
                answer = self.frame(ws, data)
                if code is None:  # a truncated JPEG: decoded partly or skipped, either is fine
                    ok = answer.get("type") in ("frame", "skipped")
                else:
                    ok = answer.get("type") == "skipped" and answer.get("code") == code
                self.rec.outcome("live_bad_frames", ok, f"{answer.get('type')} "
                                 f"{answer.get('code', '')}".strip(), time.monotonic() - start)
            answer = self.frame(ws, self.inputs.camera[1])
            self.rec.outcome("live_bad_frames", answer.get("type") == "frame",
                             f"then a good frame: {answer.get('type')}")

    def live_flood(self) -> None:
        """60 frames sent without reading: read at most --live-max-fps a second, newest wins;
        the session answers and goes on."""
        with self.started("flood") as ws:
            if ws is None:
                return
            start = time.monotonic()
            sent = 60
            for i in range(sent):
                ws.send(self.inputs.camera[i % len(self.inputs.camera)])
            frames = skipped = dropped = 0
            with contextlib.suppress(TimeoutError):
                while frames + skipped + dropped < sent:
                    message = ws.recv(timeout=60)
                    if isinstance(message, str):
                        answer = json.loads(message)
                        if answer.get("type") == "frame":
                            frames += 1
                            dropped = answer.get("dropped", dropped)
                            ws.recv(timeout=10)  # its image
                        elif answer.get("type") == "skipped":
                            skipped += 1
                        elif answer.get("type") == "error":
                            break
            with self.rec.lock:
                self.rec.live["frames_sent"] += sent
                self.rec.live["frames_answered"] += frames
                self.rec.live["skipped"] += skipped
                self.rec.live["dropped"] += dropped
            answer = self.frame(ws, self.inputs.camera[0])
            ok = frames >= 1 and frames + skipped + dropped >= sent and answer["type"] == "frame"
            self.rec.outcome("live_flood", ok, f"{frames} animated, {dropped} replaced, "
                             f"{skipped} skipped of {sent}" if not ok else "all answered",
                             time.monotonic() - start)

    def live_idle(self) -> None:
        """A client that sends nothing (pings keep the connection up): closed by the server."""
        with self.ws() as ws:
            self.ended(ws, "photo_timeout", 1008, "idle", timeout=self.args.live_photo_s + 60)

    # ---------------------------------------------------------------- hostile uploads

    def hostile_loop(self) -> None:
        kinds = ["head_one_write", "drip", "jpeg_bomb", "many_fields", "head_in_pieces",
                 "png_bomb", "drip", "random_video", "abandoned"]
        turn = 0
        while not self.stop.wait(self.args.hostile_every_s):
            kind = kinds[turn % len(kinds)]
            turn += 1
            if kind == "drip":
                if self.drips.acquire(blocking=False):
                    threading.Thread(target=self.drip, daemon=True).start()
                continue
            with self.rec.attack("http", kind):
                try:
                    getattr(self, f"http_{kind}")()
                except Exception as err:  # noqa: BLE001  counted; the load goes on
                    self.rec.outcome(kind, False, f"{type(err).__name__}: {err}")

    def raw(self, data: bytes, pieces: int = 1, timeout: float = 30) -> bytes:
        """``data`` in ``pieces`` writes; the answer's first bytes."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            step = -(-len(data) // pieces)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for i in range(0, len(data), step):
                    sock.sendall(data[i:i + step])
                    if pieces > 1:
                        time.sleep(0.01)
            answer = b""
            with contextlib.suppress(ConnectionResetError, TimeoutError):
                while b"\r\n\r\n" not in answer and (chunk := sock.recv(4096)):
                    answer += chunk
        return answer

    def big_head(self, pieces: int, kind: str) -> None:
        head = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(100)) + b"\r\n")
        start = time.monotonic()
        answer = self.raw(head, pieces)
        self.rec.outcome(kind, answer.startswith(b"HTTP/1.1 431"), answer[:12].decode("latin-1"),
                         time.monotonic() - start)

    def http_head_one_write(self) -> None:
        self.big_head(1, "head_one_write")

    def http_head_in_pieces(self) -> None:
        self.big_head(40, "head_in_pieces")

    def upload(self, kind: str, expect: tuple[int, ...], files: dict, data=None) -> None:
        start = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=120) as http:
            r = http.post("/v1/animations", files=files, data=data)
        what = f"{r.status_code} {_code(r)}"
        ok = r.status_code in expect
        if r.status_code == 503:  # the queue was full or a broker away: not this attack's answer
            ok, what = True, f"{what} (busy)"
        self.rec.outcome(kind, ok, what, time.monotonic() - start)

    def http_jpeg_bomb(self) -> None:
        self.upload("jpeg_bomb", (415, 422), {  # PIL calls it a bomb at open: 415
            "source": ("bomb.jpg", self.inputs.jpeg_bomb, "image/jpeg"),
            "driving": ("clip.mp4", self.inputs.driving, "video/mp4")})

    def http_png_bomb(self) -> None:
        self.upload("png_bomb", (422,), {
            "source": ("bomb.png", self.inputs.png_bomb, "image/png"),
            "driving": ("clip.mp4", self.inputs.driving, "video/mp4")})

    def http_random_video(self) -> None:
        self.upload("random_video", (415, 422), {
            "source": ("astronaut.png", self.inputs.source, "image/png"),
            "driving": ("clip.mp4", self.inputs.noise, "video/mp4")})

    def http_many_fields(self) -> None:
        self.upload("many_fields", (400, 413), {
            "source": ("astronaut.png", self.inputs.source, "image/png"),
            "driving": ("clip.mp4", self.inputs.driving, "video/mp4")},
            data={f"f{i}": "1" for i in range(1000)})

    def http_abandoned(self) -> None:
        """Headers for a 1 MB body, half of it, then the connection closed."""
        start = time.monotonic()
        with socket.create_connection((self.host, self.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/animations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: multipart/form-data; boundary=B\r\n"
                         b"Content-Length: 1000000\r\n\r\n--B\r\nContent-Disposition: form-data; "
                         b'name="driving"; filename="a.mp4"\r\n\r\n' + b"\0" * 500_000)
        with httpx.Client(base_url=self.url, timeout=30) as http:  # the server goes on
            ok = http.get("/healthz").status_code in (200, 503)
        self.rec.outcome("abandoned", ok, "server answers" if ok else "no answer",
                         time.monotonic() - start)

    def drip(self) -> None:
        """Headers, then one body byte a second until the server answers (408 expected)."""
        try:
            with self.rec.attack("http", "drip"):
                start = time.monotonic()
                what = "no answer"
                with socket.create_connection((self.host, self.port), timeout=30) as sock:
                    sock.sendall(b"POST /v1/animations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 b"Content-Type: multipart/form-data; boundary=B\r\n"
                                 b"Content-Length: 1000000\r\n\r\n--B\r\nContent-Disposition: "
                                 b'form-data; name="driving"; filename="a.mp4"\r\n\r\n')
                    sock.settimeout(1)
                    while time.monotonic() - start < 300 and not self.done.is_set():
                        try:
                            answer = sock.recv(4096)
                        except TimeoutError:
                            with contextlib.suppress(OSError):
                                sock.sendall(b"\0")
                            continue
                        except OSError as err:
                            what = f"closed: {err}"
                            break
                        what = answer[:12].decode("latin-1") or "closed without an answer"
                        break
                ok = what.startswith("HTTP/1.1 408") or what.startswith("HTTP/1.1 503")
                self.rec.outcome("drip", ok, what, time.monotonic() - start)
        finally:
            self.drips.release()

    # ---------------------------------------------------------------- broker restart

    def restart_broker(self, redis: list, port: int, folder: Path, log: Path) -> None:
        """At the middle of the run: Redis stopped (SIGTERM), a submission and a status read
        tried while it is away (503 + Retry-After expected), Redis started again on its
        append-only file after ``--outage-s``."""
        if self.stop.wait(self.args.minutes * 30):
            return
        with self.rec.lock:
            for job in self.open_jobs.values():
                job["before_outage"] = True
            before = len(self.open_jobs)
        self.event(f"redis stopped with {before} unfinished jobs")
        t0 = self.rec.now()
        stop(redis[0], signal.SIGTERM, 20)
        files = {"source": ("astronaut.png", self.inputs.source, "image/png"),
                 "driving": ("clip.mp4", self.inputs.driving, "video/mp4")}
        with httpx.Client(base_url=self.url, timeout=60) as http:
            for kind, call in (("outage_submit", lambda: http.post("/v1/animations",
                                                                   files=files)),
                               ("outage_status", lambda: http.get("/v1/animations/x"))):
                start = time.monotonic()
                try:
                    r = call()
                    what = f"{r.status_code} {_code(r)} Retry-After: {r.headers.get('retry-after')}"
                    ok = r.status_code == 503 and int(r.headers.get("retry-after", 0)) >= 1
                except (httpx.HTTPError, ValueError) as err:
                    ok, what = False, f"{type(err).__name__}: {err}"
                self.rec.outcome(kind, ok, what, time.monotonic() - start)
        self.stop.wait(max(0.0, self.args.outage_s - (self.rec.now() - t0)))
        redis[0] = start_redis(port, folder, log)
        with self.rec.lock:
            self.rec.outage = (t0, self.rec.now())
        self.event("redis back")

    # ---------------------------------------------------------------- results

    def summary(self, complete: bool) -> dict:
        a = self.args
        with self.rec.lock:
            jobs = {k: dict(v) for k, v in self.rec.jobs.items()}
            healthz = list(self.rec.healthz)
            status = list(self.rec.status_ms)
            rss = list(self.rec.rss)
            attacks = list(self.rec.attacks)
            live_ms = list(self.rec.live_ms)
            live = json.loads(json.dumps(self.rec.live))
            hostile = json.loads(json.dumps(self.rec.hostile))
            refused = dict(self.rec.refused)
        elapsed = self.rec.now()
        cancelled = [j for j in jobs.values() if j["cancelled"]]
        kept = [j for j in jobs.values() if not j["cancelled"]]
        open_ = [j for j in kept if j["status"] not in FINISHED]
        lost = [j for j in kept if j["status"] == "missing"
                or (complete and j["status"] not in FINISHED)]
        jobs_out = {
            "accepted": len(jobs), "refused": refused,
            "succeeded": sum(j["status"] == "succeeded" for j in kept),
            "failed": sum(j["status"] == "failed" for j in kept),
            "cancelled_by_client": len(cancelled),
            "cancelled_while": {w: sum(j.get("was") == w for j in cancelled)
                                for w in ("queued", "running", "succeeded")},
            "unfinished_now": 0 if complete else len(open_),
            "lost": len(lost),
            "results_downloaded_ok": sum(bool(j.get("result_ok")) for j in kept),
            "results_not_ok": sum(j.get("result_ok") is False for j in kept),
            "failure_messages": sorted({str(j.get("error")) for j in kept
                                        if j["status"] == "failed"}),
            "seconds_submit_to_finished": pct([j["seconds"] for j in kept if "seconds" in j]),
        }
        if a.broker:
            before = [j for j in kept if j["before_outage"]]
            jobs_out["accepted_before_broker_restart"] = len(before)
            jobs_out["succeeded_of_those"] = sum(j["status"] == "succeeded" for j in before)

        def during(family: str) -> list[float]:
            spans = [(t0, t1 + a.healthz_every_s) for f, _, t0, t1 in attacks if f == family]
            return [ms for t, ms, _ in healthz if any(t0 <= t <= t1 for t0, t1 in spans)]

        start_rss = rss[0][1] if rss else None
        warm = self.rec.warm_rss or start_rss
        peak = max((r[1] for r in rss), default=None)
        end = rss[-1][1] if rss else None
        rss_out = {"server_at_start": _r(start_rss), "server_warm": _r(warm),
                   "server_peak": _r(peak), "server_last": _r(end),
                   "peak_over_warm": _r(peak - warm) if peak and warm else None,
                   "last_over_warm": _r(end - warm) if end and warm else None,
                   "last_is": "after the drain and 10 s idle" if complete else "the latest sample",
                   "warm_is": "the server's RSS when the first job had succeeded (after a live "
                              "session when live is on)"}
        if a.broker:
            rss_out["worker_peak"] = _r(max((r[2] or 0 for r in rss), default=None))
            rss_out["worker_last"] = _r(rss[-1][2]) if rss else None
        outage = self.rec.outage
        hz = [(t, ms, c) for t, ms, c in healthz
              if not (outage and outage[0] <= t <= outage[1] + 10)]
        series = []
        for minute in range(int(elapsed // 60) + 1):
            lo, hi = minute * 60, minute * 60 + 60
            series.append({
                "minute": minute,
                "rss_mb_max": _r(max((r[1] for r in rss if lo <= r[0] < hi), default=None)),
                "server_cpu_s": _r(_spread([r[3] for r in rss if lo <= r[0] < hi])),
                "machine_load_1min": _r(max((r[4] for r in rss if lo <= r[0] < hi),
                                            default=None)),
                "healthz_ms_p95": pct([ms for t, ms, _ in healthz if lo <= t < hi])["p95"],
                "healthz_ms_max": pct([ms for t, ms, _ in healthz if lo <= t < hi])["max"],
                "status_ms_p95": pct([ms for t, ms in status if lo <= t < hi])["p95"],
                "jobs_accepted": sum(lo <= j["t"] < hi for j in jobs.values()),
                "jobs_finished": sum(lo <= j["t"] + j.get("seconds", 1e9) < hi
                                     for j in jobs.values()),
                "live_frames": sum(lo <= t < hi for t, _ in live_ms),
                "attacks": sum(lo <= t0 < hi for _, _, t0, _ in attacks),
            })
        for entry in hostile.values():
            entry["seconds"] = pct(entry["seconds"], 2)
        result = {
            "benchmark": "soak", "complete": complete, "machine": machine(),
            "started_at": self.started_at, "minutes_planned": a.minutes,
            "commit": self.commit,
            "elapsed_s": round(elapsed, 1),
            "server": {"mode": "fomm serve --broker + 1 fomm worker" if a.broker else "fomm serve",
                       "model": a.checkpoint or "bundled fomm-face-256",
                       "options": "defaults (limits as shipped), loopback",
                       "nice": a.nice},
            "load": {"job_every_s": a.job_every_s, "max_open_jobs": a.max_open_jobs,
                     "clip_frames": a.frames, "cancel_every": a.cancel_every,
                     "cancel_after_s": CANCEL_DELAYS_S,
                     "status_poll_s": a.poll_s, "healthz_every_s": a.healthz_every_s,
                     "live_every_s": None if a.broker else a.live_every_s,
                     "live_frames_per_session": None if a.broker else a.live_frames,
                     "live_max_client_fps": 10, "live_idle_attack_every": a.idle_every,
                     "hostile_upload_every_s": a.hostile_every_s, "drips_at_once_max": 2,
                     "note": "live turns alternate: a normal session, then one attack"},
            "jobs": jobs_out,
            "status_latency_ms": pct([ms for _, ms in status]),
            "status_codes": dict(self.rec.status_codes),
            "healthz_latency_ms": {
                **pct([ms for _, ms, _ in hz]),
                "not_200_outside_outage": sum(c != 200 for _, _, c in hz),
                "max_during_live_attacks": pct(during("live"))["max"],
                "max_during_hostile_uploads": pct(during("http"))["max"],
            },
            "rss_mb": rss_out,
            "live": None if a.broker else {
                **live, "frame_round_trip_ms": pct([ms for _, ms in live_ms])},
            "hostile": hostile,
            "hostile_unexpected_total": sum(e["unexpected"] for e in hostile.values()),
            "events": list(self.rec.events),
            "server_log_tracebacks": _tracebacks(Path(a.work_dir) / "logs"),
            "machine_load_1min": pct([r[4] for r in rss]),
            "machine_cpus": os.cpu_count(),
            "note": "the machine is shared (other jobs at normal priority, this run at nice "
                    f"{a.nice}): latencies include waiting for a CPU; see machine_load_1min",
            "series_every_s": 60, "series": series,
        }
        if outage:
            result["broker_outage_s"] = [round(outage[0], 1), round(outage[1], 1)]
        return result

    def write(self, complete: bool) -> dict:
        result = self.summary(complete)
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(out)
        return result

    def write_every(self, seconds: float) -> None:
        while not self.done.wait(seconds):
            try:
                self.write(complete=False)
            except Exception as err:  # noqa: BLE001  a partial write must not end the run
                print(f"partial results not written: {err}", file=sys.stderr)


def _commit() -> str | None:
    """The checkout's commit (with "+changes" when fomm/ differs from it), or None."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "fomm"], cwd=REPO)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty.returncode else "")


def _code(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return ""


def _spread(values: list[float]) -> float | None:
    return values[-1] - values[0] if len(values) > 1 else None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _tracebacks(folder: Path) -> int:
    return sum(p.read_text(errors="replace").count("Traceback") for p in folder.glob("*.log"))


# ------------------------------------------------------------------------------------ main


def run(args: argparse.Namespace) -> dict:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="fomm-soak-"))
    args.work_dir = str(work)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    inputs = Inputs(work, args.frames)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    model = ["--checkpoint", args.checkpoint] if args.checkpoint else []
    redis, worker = [None], None
    data = work / "data"
    if data.exists():
        shutil.rmtree(data)
    procs: list[subprocess.Popen] = []
    try:
        if args.broker:
            rport, rfolder = free_port(), work / "redis"
            if rfolder.exists():
                shutil.rmtree(rfolder)
            rfolder.mkdir()
            redis[0] = start_redis(rport, rfolder, logs / "redis.log")
            broker = f"redis://127.0.0.1:{rport}/0"
            server = start(["serve", "--broker", broker, "--data-dir", str(data), "--port",
                            str(port), "--log-level", "warning"], logs / "serve.log")
            worker = start(["worker", "--broker", broker, "--data-dir", str(data), *model,
                            "--device", "cpu", "--name", "w0", "--log-level", "warning"],
                           logs / "worker.log")
            procs = [server, worker]
        else:
            server = start(["serve", *model, "--data-dir", str(data), "--port", str(port),
                            "--device", "cpu", "--log-level", "warning"], logs / "serve.log")
            procs = [server]
        wait_ready(url, procs)
        soak = Soak(args, url, inputs, server, worker)
        soak.started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        measure = [threading.Thread(target=soak.sample_healthz), threading.Thread(
            target=soak.sample_rss), threading.Thread(target=soak.poll_jobs),
            threading.Thread(target=soak.write_every, args=(30,))]
        load = [threading.Thread(target=soak.submit_jobs),
                threading.Thread(target=soak.hostile_loop)]
        if not args.broker:
            load.append(threading.Thread(target=soak.live_loop))
        else:
            load.append(threading.Thread(target=soak.restart_broker, args=(
                redis, rport, rfolder, logs / "redis.log")))
        for thread in measure + load:
            thread.start()
        interrupted = []

        def on_signal(signum, frame):  # an interrupted run still leaves its numbers
            interrupted.append(signum)
            soak.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        soak.stop.wait(args.minutes * 60)
        soak.stop.set()
        for thread in load:
            thread.join()
        deadline = time.monotonic() + (0 if interrupted else args.drain_s)
        while time.monotonic() < deadline:  # the unfinished jobs may finish
            with soak.rec.lock:
                if not soak.open_jobs:
                    break
            time.sleep(1)
        time.sleep(0 if interrupted else 10)  # a quiet moment for the RSS after
        soak.done.set()
        for thread in measure:
            thread.join()
        return soak.write(complete=not interrupted)
    finally:
        for proc in procs:
            stop(proc, signal.SIGINT if proc is procs[0] else signal.SIGTERM)
        stop(redis[0], signal.SIGTERM)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--broker", action="store_true",
                   help="redis-server + fomm serve --broker + one fomm worker; Redis restarted "
                        "once, at the middle")
    p.add_argument("--checkpoint", help="a checkpoint instead of the bundled model")
    p.add_argument("--work-dir", help="logs and the data folder (default: a temporary folder)")
    p.add_argument("--out", help="JSON results (default benchmarks/results/soak[-broker]-cpu.json)")
    p.add_argument("--frames", type=int, default=16, help="frames of each job's driving clip")
    p.add_argument("--job-every-s", type=float, default=20)
    p.add_argument("--max-open-jobs", type=int, default=3)
    p.add_argument("--cancel-every", type=int, default=4,
                   help="every Nth accepted job is cancelled, 0.5, 3, 6 or 12 s after its "
                        "upload in turn (0: none)")
    p.add_argument("--poll-s", type=float, default=1.0)
    p.add_argument("--healthz-every-s", type=float, default=1.0)
    p.add_argument("--live-every-s", type=float, default=10)
    p.add_argument("--live-frames", type=int, default=30)
    p.add_argument("--live-photo-s", type=float, default=25,
                   help="the server's --live-photo-s (its default): how long the idle attack "
                        "may wait")
    p.add_argument("--live-attacks", default=",".join(LIVE_ATTACKS),
                   help="the live attacks, in turn (default: all)")
    p.add_argument("--idle-every", type=int, default=1,
                   help="the silent client is every Nth time its turn comes")
    p.add_argument("--hostile-every-s", type=float, default=8)
    p.add_argument("--outage-s", type=float, default=5, help="with --broker: Redis away this long")
    p.add_argument("--drain-s", type=float, default=300)
    p.add_argument("--nice", type=int, default=10, help="niceness of this run and the server")
    args = p.parse_args()
    if args.out is None:
        args.out = str(RESULTS / ("soak-broker-cpu.json" if args.broker else "soak-cpu.json"))
    if args.broker and not Path(REDIS).is_file():
        p.error("--broker needs redis-server")
    os.nice(args.nice)
    result = run(args)
    print(json.dumps({k: result[k] for k in ("complete", "elapsed_s", "jobs", "status_latency_ms",
                                             "healthz_latency_ms", "rss_mb",
                                             "hostile_unexpected_total")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
