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
(:func:`fomm.live.loop.live_animator`) and torch's own work on one thread beside the backend's
(:func:`fomm.live.loop.glue_threads`).
The page keeps two frames in flight (one animating, the next waiting in the slot) and sends a
new camera frame when a result comes back, so the model never waits for the page's round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time

import cv2
import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from fomm.config import AnimateOptions
from fomm.errors import FommError
from fomm.inference.animator import Animator
from fomm.live.loop import LiveAnimator, LiveOptions, glue_threads, live_animator

MAX_MESSAGE = 8 * 2**20  # bytes: a photo or a camera frame
JPEG_QUALITY = 85


def decode_image(data: bytes) -> np.ndarray | None:
    """Image bytes (JPEG, PNG, WebP, ...) → uint8 (H, W, 3) RGB; None when not an image."""
    if not data or len(data) > MAX_MESSAGE:
        return None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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
        return frame


def add_live_routes(app: FastAPI, animator: Animator, options: AnimateOptions) -> None:
    """Add the ``/v1/live`` WebSocket to ``app``; one session at a time per ``animator``.

    ``options`` are the server's; live runs them with ``fomm live``'s defaults: ``detail`` off
    and the live precision (the server's model is used when it already runs that way, else a
    second animator on the same networks is made at the first session).
    """
    busy = threading.Lock()
    options = dataclasses.replace(options, detail=False, progress=False)
    made: list[Animator] = []  # the live animator, made at the first session

    def live_model() -> Animator:
        if not made:
            made.append(live_animator(animator, options))
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
                await _session(ws, model, options)
        except (WebSocketDisconnect, OSError):  # the page went away mid-frame: nothing to tell
            pass
        finally:
            busy.release()


async def _session(ws: WebSocket, animator: Animator, options: AnimateOptions) -> None:
    photo = decode_image(await ws.receive_bytes())
    if photo is None:
        await _fail(ws, "bad_photo", "the first message must be the photo (JPEG, PNG or WebP)")
        return
    try:
        step = await run_in_threadpool(
            LiveAnimator, animator, photo, LiveOptions(window=False, animate=options)
        )
    except FommError as err:
        await _fail(ws, "bad_photo", str(err))
        return
    height, width = step.still.shape[:2]
    await ws.send_json({"type": "ready", "width": width, "height": height})
    await ws.send_bytes(encode_jpeg(step.still))
    latest = _Latest()
    notices: list[str] = [f"expression off: {step.note}"] if step.note else []
    receiver = asyncio.create_task(_receive(ws, latest, step, options, notices))
    frames_out, start = 0, time.perf_counter()
    try:
        while (item := await latest.take()) is not None:
            data, arrived = item
            image = decode_image(data)
            if image is None:
                continue
            animated = await run_in_threadpool(step, image, arrived)
            out = await run_in_threadpool(encode_jpeg, step.still if animated is None else animated)
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
                   notices: list[str]) -> None:
    """Read client messages: frames into the slot (newest wins), commands at once."""
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes") is not None:
                latest.put(message["bytes"])
            elif message.get("text"):
                with contextlib.suppress(ValueError, AttributeError):
                    command = json.loads(message["text"])
                    if command.get("type") == "reference":
                        step.retake()
                    elif command.get("type") == "expression":
                        problem = await run_in_threadpool(change_expression, step, options,
                                                          command)
                        if problem:
                            notices.append(problem)
    finally:
        latest.closed = True
        latest.event.set()


async def _fail(ws: WebSocket, code: str, message: str) -> None:
    await ws.send_json({"type": "error", "code": code, "message": message})
    await ws.close(code=1008)
