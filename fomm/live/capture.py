"""Camera capture for ``fomm live``: a reader thread that keeps only the newest frame.

A camera (index or device path) is read as fast as it delivers; a video file or URL is played as
a live stream at its own frame rate, by wall clock. Either way a frame that arrives before the
previous one was taken replaces it and is counted as dropped: frames are never queued, so
latency cannot grow.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fomm.errors import FommError, InputError

STALL_S = 2.0  # a camera that delivers nothing for this long has stopped
DEFAULT_FPS = 30.0  # when the stream does not say


@dataclass
class Frame:
    """One captured frame."""

    image: np.ndarray  # uint8 (H, W, 3) RGB
    time: float  # time.perf_counter() when the camera delivered it
    index: int  # 0, 1, 2, ... in capture order


def _source(spec: str) -> tuple[int | str, bool]:
    """(what cv2.VideoCapture opens, whether it is a device read in real time)."""
    if spec.isdigit():
        return int(spec), True
    if spec.startswith("/dev/"):
        return spec, True
    if "://" not in spec and not Path(spec).exists():
        raise InputError(
            f"{spec}: camera not found (give an index such as 0, a /dev/videoN "
            "path, a video file or a URL)"
        )
    return spec, False


class Capture:
    """Read a camera on a thread; :meth:`read` returns the newest frame not yet taken.

    Args:
        spec: camera index (``"0"``), device path (``/dev/video0``), video file or URL.
        realtime: play a file/URL at its frame rate (the default); False delivers every frame
            as soon as the previous one was taken (deterministic, for tests and benchmarks).

    Attributes:
        frames_in: frames delivered by the camera so far.
        dropped: frames replaced by a newer one before they were taken.
        fps: the stream's nominal frame rate.
        ended: why the stream ended, or None while it runs.
    """

    def __init__(self, spec: str, realtime: bool = True) -> None:
        self.spec = spec
        target, self.is_device = _source(spec)
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            raise FommError(
                f"camera {spec}: cannot open it (no such camera, or a file/stream "
                "OpenCV cannot decode)"
            )
        if self.is_device:  # no frames waiting in the driver: they would only add latency
            self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else DEFAULT_FPS
        self.realtime = realtime
        self.frames_in = 0
        self.dropped = 0
        self.ended: str | None = None
        self._newest: Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fomm-live-capture", daemon=True)

    def start(self) -> Capture:
        """Start reading; returns self."""
        self._thread.start()
        return self

    def _publish(self, image: np.ndarray) -> None:
        with self._cond:
            if self._newest is not None:
                self.dropped += 1  # newest wins: the one never taken is dropped
            self._newest = Frame(image, time.perf_counter(), self.frames_in)
            self.frames_in += 1
            self._cond.notify_all()

    def _run(self) -> None:
        start = time.perf_counter()
        last_ok = start
        try:
            while not self._stop.is_set():
                ok, bgr = self._cap.read()
                if not ok:
                    if not self.is_device:
                        self._finish("end of stream")
                        return
                    if time.perf_counter() - last_ok > STALL_S:
                        self._finish(f"camera {self.spec} stopped delivering frames")
                        return
                    time.sleep(0.01)
                    continue
                last_ok = time.perf_counter()
                if not self.is_device:
                    if self.realtime:  # as a live camera would deliver it
                        due = start + self.frames_in / self.fps
                        self._stop.wait(max(0.0, due - time.perf_counter()))
                    else:  # wait until the previous frame was taken
                        with self._cond:
                            self._cond.wait_for(lambda: self._newest is None or self._stop.is_set())
                self._publish(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        except cv2.error as exc:
            self._finish(f"camera {self.spec}: {exc}".splitlines()[0])
            return
        self._finish("stopped")

    def _finish(self, why: str) -> None:
        with self._cond:
            if self.ended is None:
                self.ended = why
            self._cond.notify_all()

    def read(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not taken yet, waiting for one; None once the stream has ended.

        Args:
            timeout: give up waiting after this many seconds and return None (stream running).
        """
        with self._cond:
            self._cond.wait_for(lambda: self._newest is not None or self.ended is not None, timeout)
            frame, self._newest = self._newest, None
            self._cond.notify_all()
            return frame

    def drop(self) -> None:
        """Count a frame that was taken but not used (paused) as dropped."""
        with self._cond:
            self.dropped += 1

    def discard(self) -> None:
        """Count a frame still waiting (at shutdown) as dropped."""
        with self._cond:
            if self._newest is not None:
                self._newest = None
                self.dropped += 1

    def close(self) -> None:
        """Stop the reader thread and release the camera."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.discard()
        self._cap.release()

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
