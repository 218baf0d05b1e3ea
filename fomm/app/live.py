"""Live mode of the web page: camera frames in over a WebSocket, animated frames out.

Protocol on ``/v1/live``: the client sends the photo (image bytes) first and gets
``{"type": "ready", "width", "height"}`` and the still photo as JPEG bytes; then it sends camera
frames as JPEG bytes and gets, for each one animated, ``{"type": "frame", "face", "latency_ms",
"fps", "dropped", "expression"}`` followed by the result as JPEG bytes. ``{"type": "reference"}``
takes the reference pose again; ``{"type": "expression", "expression": true, "animation_region":
"eyes", "expression_scale": 1.2, "eye_offset": 0, "mouth_offset": 0, "smile_offset": 0}`` (any
of those fields, as the animate form takes them) changes the expression layer from the next
frame; a bad value, or a layer that cannot run on the photo, is told in a
``{"type": "notice", "message"}`` before the next frame. Newest frame wins: frames that arrive
while one is being animated replace it and are counted as dropped, never queued. One live
session per model: another one is told ``{"type": "error", "code": "busy"}``. The per-frame
work is :class:`fomm.live.loop.LiveAnimator`, the step of ``fomm live``, with its defaults:
``--detail`` off, ``--precision auto`` on a graph backend on a CPU
(:func:`fomm.live.loop.live_animator`), the networks' side chosen at the first session where
the CPU draws them fast enough (:func:`fomm.live.loop.auto_network_size`) on half the CPUs
(:func:`fomm.live.loop.network_threads`) and torch's own work on one thread beside the
backend's (:func:`fomm.live.loop.glue_threads`).
The page keeps two frames in flight (one animating, the next waiting in the slot) and sends a
new camera frame when a result comes back, so the model never waits for the page's round trip.

Limits (:class:`LiveLimits`, from ``fomm serve``'s options): images are decoded in a worker
thread after the checks of the upload path (format, then the size from the header against
``--max-resolution``, before any pixel is decoded); the photo must come within
``--live-photo-s``, and a session that sends nothing for ``--live-idle-s`` while none of its
frames waits or is being animated is closed (as is one older than ``--live-session-s``),
freeing the model; messages are read at most ``--live-max-fps``
a second (faster senders wait). Every camera frame is answered: animated (``frame``), replaced
by a newer one (counted in ``dropped``), or ``{"type": "skipped", "code", "message"}`` when it
cannot be decoded or animated. A malformed message ends the session with
``{"type": "error", "code", "message"}`` and a close code: ``1003`` text where the photo was
due, ``1007`` an image or JSON that cannot be read, ``1008`` a limit or an unknown message; the
close reason is ``{"code": ...}`` as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from fomm.app.uploads import UploadError, decode_image_bytes
from fomm.config import AnimateOptions
from fomm.errors import FommError
from fomm.inference.animator import Animator
from fomm.live.loop import (
    LiveAnimator,
    LiveOptions,
    auto_network_size,
    glue_threads,
    network_threads,
)

MAX_MESSAGE = 8 * 2**20  # bytes: a photo or a camera frame
MAX_TEXT = 4096  # bytes: a command
JPEG_QUALITY = 85
CLOSE_UNSUPPORTED, CLOSE_INVALID, CLOSE_POLICY = 1003, 1007, 1008
log = logging.getLogger("fomm.serve")


@dataclass(frozen=True)
class LiveLimits:
    """What one live session may take (``fomm serve --max-resolution`` and ``--live-*``)."""

    max_resolution: int | None = 4096  # the largest side of the photo and of a camera frame
    photo_s: float = 30  # the photo must come within this
    idle_s: float = 30  # a session silent this long, no frame of its pending, is closed
    session_s: float | None = None  # the longest a session may last (None: no limit)
    max_fps: float = 30  # messages read a second (faster senders wait)


class _Refused(Exception):
    """End the session: tell the client ``code`` and ``message``, close with ``close``."""

    def __init__(self, code: str, message: str, close: int = CLOSE_POLICY) -> None:
        super().__init__(message)
        self.code, self.message, self.close = code, message, close


def decode_image(data: bytes, max_resolution: int | None = 4096) -> np.ndarray | None:
    """Image bytes (JPEG, PNG, WebP, ...) → uint8 (H, W, 3) RGB; None when not an image, over
    :data:`MAX_MESSAGE` or larger than ``max_resolution`` on a side (checked from the header)."""
    try:
        return decode_image_bytes(data, "image", max_resolution, MAX_MESSAGE)
    except UploadError:
        return None


def page_message(message: str) -> str:
    """A core message for the live page: what names command-line options is left out."""
    kept = [part.strip() for part in message.split(";") if "--" not in part]
    if kept:
        return "; ".join(kept)
    return re.sub(r"\s*\b(?:with|use|drop|add|give)?\s*--[a-z-]+", "", message).strip(" :,")


def encode_jpeg(frame: np.ndarray) -> bytes:
    """uint8 (H, W, 3) RGB → JPEG bytes."""
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    assert ok
    return data.tobytes()


class _Latest:
    """A one-frame slot: the newest camera frame not yet animated (and its arrival time)."""

    def __init__(self) -> None:
        self.frame: tuple[bytes, float] | None = None
        self.dropped = 0
        self.event = asyncio.Event()
        self.closed = False
        self.working = False  # a frame taken and not yet answered

    def waiting(self) -> bool:
        """A frame of the client's is waiting or being animated (the client waits on us)."""
        return self.working or self.frame is not None

    def put(self, data: bytes) -> None:
        if self.frame is not None:
            self.dropped += 1
        self.frame = (data, time.perf_counter())
        self.event.set()

    async def take(self) -> tuple[bytes, float] | None:
        while self.frame is None and not self.closed:
            self.event.clear()
            await self.event.wait()
        frame, self.frame = self.frame, None
        self.working = frame is not None
        return frame


def add_live_routes(app: FastAPI, animator: Animator, options: AnimateOptions,
                    limits: LiveLimits | None = None) -> None:
    """Add the ``/v1/live`` WebSocket to ``app``; one session at a time per ``animator``.

    ``options`` are the server's; live runs them with ``fomm live``'s defaults: ``detail`` off,
    the live precision, the networks' side and threads (the server's model is used when it
    already runs that way, else a second animator on the same networks is made at the first
    session, its side timed there on a noise image). ``limits`` bound each
    session (default: :class:`LiveLimits`'s).
    """
    limits = limits or LiveLimits()
    busy = threading.Lock()
    options = dataclasses.replace(options, detail=False, progress=False)
    made: list[Animator] = []  # the live animator, made at the first session

    def live_model() -> Animator:
        if not made:  # as fomm live: the side the CPU draws fast enough, half its CPUs
            probe = np.random.default_rng(0).integers(0, 256, (animator.size,) * 2 + (3,))
            chosen, _ = auto_network_size(animator, options, probe.astype(np.uint8),
                                          network_threads())
            made.append(chosen)
        return made[0]

    @app.websocket("/v1/live")
    async def live(ws: WebSocket) -> None:
        await ws.accept()
        if not busy.acquire(blocking=False):
            await ws.send_json(
                {
                    "type": "error",
                    "code": "busy",
                    "message": "another live session is using the model; try again later",
                }
            )
            await ws.close(code=1013)  # try again later
            return
        try:
            model = await run_in_threadpool(live_model)
            with glue_threads(model):  # as fomm live: torch's glue on one thread
                await _session(ws, model, options, limits)
        except _Refused as refused:
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                await _fail(ws, refused.code, refused.message, refused.close)
        except (WebSocketDisconnect, OSError):  # the page went away mid-frame: nothing to tell
            pass
        finally:
            busy.release()


class _Clock:
    """A session's deadlines: the session's end, and the next message's."""

    def __init__(self, limits: LiveLimits) -> None:
        self.limits = limits
        now = time.monotonic()
        self.end = None if limits.session_s is None else now + limits.session_s
        self.tokens, self.refilled = max(1.0, limits.max_fps), now

    async def receive(self, ws: WebSocket, wait_s: float, code: str, message: str) -> dict:
        """The next message, after the frame-rate limit; ``_Refused`` when none comes within
        ``wait_s`` or the session's end comes first."""
        await self._pace()
        now = time.monotonic()
        session_left = None if self.end is None else self.end - now
        if session_left is not None and session_left < wait_s:
            wait_s, code, message = max(session_left, 0.0), "session_limit", (
                f"live sessions last at most {self.limits.session_s:g} s; start again")
        try:
            return await asyncio.wait_for(ws.receive(), wait_s)
        except asyncio.TimeoutError:
            raise _Refused(code, message) from None

    async def _pace(self) -> None:
        """A token bucket of ``max_fps`` a second (one second's worth of burst)."""
        rate = self.limits.max_fps
        now = time.monotonic()
        self.tokens = min(max(1.0, rate), self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens < 1:
            await asyncio.sleep((1 - self.tokens) / rate)
            self.tokens, self.refilled = 1.0, time.monotonic()
        self.tokens -= 1


async def _read_image(data: bytes, name: str, limits: LiveLimits) -> np.ndarray:
    """Decode in a worker thread, header first (see :func:`decode_image_bytes`)."""
    return await run_in_threadpool(decode_image_bytes, data, name, limits.max_resolution,
                                   MAX_MESSAGE)


async def _session(ws: WebSocket, animator: Animator, options: AnimateOptions,
                   limits: LiveLimits | None = None) -> None:
    limits = limits or LiveLimits()
    clock = _Clock(limits)
    first = await clock.receive(ws, limits.photo_s, "photo_timeout",
                                f"no photo came within {limits.photo_s:g} s")
    if first["type"] == "websocket.disconnect":
        return
    if first.get("bytes") is None:
        raise _Refused("bad_message", "the first message must be the photo, as image bytes "
                       "(JPEG, PNG or WebP)", CLOSE_UNSUPPORTED)
    try:
        photo = await _read_image(first["bytes"], "the photo", limits)
    except UploadError as err:
        raise _Refused("bad_photo", err.message,
                       CLOSE_INVALID if err.status == 415 else CLOSE_POLICY) from err
    try:
        step = await run_in_threadpool(
            LiveAnimator, animator, photo, LiveOptions(window=False, animate=options)
        )
    except FommError as err:
        raise _Refused("bad_photo", page_message(str(err))) from err
    height, width = step.still.shape[:2]
    await ws.send_json({"type": "ready", "width": width, "height": height})
    await ws.send_bytes(encode_jpeg(step.still))
    latest = _Latest()
    notices: list[str] = [f"expression off: {page_message(step.note)}"] if step.note else []
    refused: list[_Refused] = []
    receiver = asyncio.create_task(_receive(ws, latest, step, options, notices, clock, refused))
    frames_out, start, failures = 0, time.perf_counter(), 0
    try:
        while (item := await latest.take()) is not None:
            data, arrived = item
            try:
                image = await _read_image(data, "the camera frame", limits)
                animated = await run_in_threadpool(step, image, arrived)
            except UploadError as err:
                latest.working = False
                await ws.send_json({"type": "skipped", "code": err.code, "message": err.message})
                continue
            except Exception as err:  # one bad frame must not end the session
                latest.working = False
                failures += 1
                log.warning("live: a frame could not be animated (%s)", err,
                            exc_info=failures == 1)
                await ws.send_json({"type": "skipped", "code": "cannot_animate",
                                    "message": "this camera frame could not be animated"})
                continue
            out = await run_in_threadpool(encode_jpeg, step.still if animated is None else animated)
            latest.working = False
            frames_out += 1
            now = time.perf_counter()
            while notices:
                await ws.send_json({"type": "notice", "message": notices.pop(0)})
            await ws.send_json(
                {
                    "type": "frame",
                    "face": animated is not None,
                    "latency_ms": round((now - arrived) * 1000, 1),
                    "fps": round(frames_out / max(now - start, 1e-6), 2),
                    "dropped": latest.dropped,
                    "expression": expression_state(step),
                }
            )
            await ws.send_bytes(out)
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await receiver
    if refused:
        raise refused[0]


def expression_state(step: LiveAnimator) -> dict | None:
    """The expression layer's settings as the form names them; None when it is off."""
    options = step.expression
    if options is None:
        return None
    return {"animation_region": options.region, "expression_scale": options.scale,
            "eye_offset": options.eyes, "mouth_offset": options.mouth,
            "smile_offset": options.smile}


def change_expression(step: LiveAnimator, options: AnimateOptions, fields: dict) -> str | None:
    """Apply an ``{"type": "expression", ...}`` message's fields to ``step``, over its current
    settings; what went wrong in a sentence, or None."""
    from fomm.app.fields import EXPRESSION_FIELDS, parse_field
    from fomm.app.uploads import UploadError
    from fomm.inference.pipeline import expression_options

    current = expression_state(step) or {}
    values: dict = {"expression": step.expression is not None, **current}
    try:
        for key, value in fields.items():
            if key != "type":
                if key not in EXPRESSION_FIELDS:
                    return f"unknown expression field '{key}'"
                values[key] = parse_field(key, value)
        changed = dataclasses.replace(options, **values)
    except (UploadError, FommError) as err:
        return str(err)
    if not changed.expression:
        step.set_expression(None)
        return None
    if not step.set_expression(expression_options(changed)):
        return f"the expression layer cannot run on this photo: {step.note}"
    return None


async def _receive(ws: WebSocket, latest: _Latest, step: LiveAnimator, options: AnimateOptions,
                   notices: list[str], clock: _Clock, refused: list[_Refused]) -> None:
    """Read client messages: frames into the slot (newest wins), commands at once; a malformed
    message, or silence past the idle limit, ends the session (put in ``refused``)."""
    limits = clock.limits
    try:
        while True:
            try:
                message = await clock.receive(ws, limits.idle_s, "idle", "the live session was "
                                              f"closed after {limits.idle_s:g} s without a frame")
            except _Refused as err:
                if err.code == "idle" and latest.waiting():  # the client waits for its answer
                    continue
                raise
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes") is not None:
                latest.put(message["bytes"])
                continue
            command = _command(message.get("text") or "")
            if command.get("type") == "reference":
                step.retake()
            elif command.get("type") == "expression":
                problem = await run_in_threadpool(change_expression, step, options, command)
                if problem:
                    notices.append(page_message(problem))
            else:
                raise _Refused("bad_message", "unknown message type; this server takes "
                               "'reference' and 'expression'")
    except _Refused as err:
        refused.append(err)
    finally:
        latest.closed = True
        latest.event.set()


def _command(text: str) -> dict:
    """A text message → its JSON object; ``_Refused`` when too long, not JSON or not an object."""
    if len(text) > MAX_TEXT:
        raise _Refused("bad_message", f"text messages are at most {MAX_TEXT} bytes")
    try:
        command = json.loads(text)
    except (ValueError, RecursionError):
        raise _Refused("bad_message", "a text message must be a JSON object",
                       CLOSE_INVALID) from None
    if not isinstance(command, dict) or not isinstance(command.get("type"), str):
        raise _Refused("bad_message", 'a text message must be a JSON object with a "type"',
                       CLOSE_INVALID)
    return command


async def _fail(ws: WebSocket, code: str, message: str, close: int = CLOSE_POLICY) -> None:
    await ws.send_json({"type": "error", "code": code, "message": message})
    await ws.close(code=close, reason=json.dumps({"code": code}))
