"""Where live frames go: a preview window, a virtual camera, a recording.

Each sink takes uint8 (H, W, 3) RGB frames of one fixed size. The window is OpenCV's (not
available in opencv-python-headless: then it says so), the virtual camera is ``pyvirtualcam``
(optional extra ``fomm[live]``), the recording is fomm.media.video's H.264 writer, filled by wall
clock
so that it plays at the speed the frames were shown.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fomm.errors import FommError
from fomm.media.video import VideoWriter

WINDOW = "fomm live"
# x264 preset of --record: a 512 px frame took 3.7 CPU ms at veryfast against 7.1 at medium
# (1145 px: about five times as much), for a file about as large at crf 18
RECORD_PRESET = "veryfast"


def overlay(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """A copy of ``frame`` with lines of text in the top-left corner (for the preview)."""
    out = frame.copy()
    scale = max(0.4, frame.shape[0] / 900)
    for i, text in enumerate(lines):
        origin = (8, int((i + 1) * 28 * scale) + 4)
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(
            out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
    return out


class Window:
    """The preview window; :meth:`show` returns the key pressed (or -1)."""

    def __init__(self) -> None:
        try:
            cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise FommError(
                "this OpenCV build has no window support (opencv-python-headless); run with "
                "--no-window and --record OUT.mp4 or --virtual-camera, or install opencv-python"
            ) from exc
        self.closed = False

    def show(self, frame: np.ndarray, lines: list[str]) -> int:
        """Show ``frame`` with ``lines`` of text; the key code pressed, -1 for none."""
        cv2.imshow(WINDOW, cv2.cvtColor(overlay(frame, lines), cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1)
        if cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
            self.closed = True  # closed with the mouse
        return key & 0xFF if key >= 0 else -1

    def close(self) -> None:
        cv2.destroyWindow(WINDOW)


class VirtualCamera:
    """Send frames to a virtual camera (v4l2loopback on Linux, OBS's on Windows and macOS)."""

    def __init__(self, width: int, height: int, fps: float) -> None:
        try:
            import pyvirtualcam
        except ImportError as exc:
            raise FommError(
                "--virtual-camera needs pyvirtualcam: pip install 'fomm[live]'"
            ) from exc
        try:
            self._cam: Any = pyvirtualcam.Camera(
                width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB
            )
        except (RuntimeError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FommError(
                f"no virtual camera backend ({reason}): on Linux load v4l2loopback "
                "(sudo modprobe v4l2loopback devices=1 exclusive_caps=1), on Windows/macOS "
                "install OBS Studio and start its virtual camera once"
            ) from exc
        self.device = getattr(self._cam, "device", "virtual camera")

    def send(self, frame: np.ndarray) -> None:
        self._cam.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        self._cam.close()


class Recorder:
    """Record shown frames with their times: each stays on screen until the next one came.

    Args:
        path: output video file (.mp4, ...).
        fps: the recording's time base and nominal frame rate (the camera's).
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self._writer = VideoWriter(path, fps=fps, preset=RECORD_PRESET)
        self._start: float | None = None

    def write(self, frame: np.ndarray, now: float | None = None) -> None:
        """Add ``frame``, shown at ``now`` (perf_counter seconds)."""
        now = time.perf_counter() if now is None else now
        if self._start is None:
            self._start = now
        self._writer.write(frame, at=now - self._start)

    def close(self) -> None:
        """Finish the file (nothing is written when no frame came)."""
        if self._writer.frames_written:
            self._writer.close()
        else:
            self._writer.abort()

    def abort(self) -> None:
        self._writer.abort()
