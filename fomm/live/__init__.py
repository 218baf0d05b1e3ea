"""``fomm live``: a camera's face drives the photo in real time (window, virtual camera, file).

capture.py reads the camera (newest frame wins), framing.py follows the face causally,
smoothing.py holds the One-Euro filters, sinks.py the outputs and loop.py puts them around the
frame-level step shared with file animation.
"""

from __future__ import annotations

from fomm.live.loop import LiveOptions, LiveStats, run_live

__all__ = ["LiveOptions", "LiveStats", "run_live"]
