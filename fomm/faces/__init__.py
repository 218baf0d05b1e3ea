"""Faces: detection, crop framing, paste-back, driving-video tracking, best frame, dataset crops.

Landmarks, embeddings and the AKD/AED metrics (``landmarks``, ``metrics``) need the optional
``fomm[metrics]`` extra and are imported only from their own modules.
"""

from __future__ import annotations

from fomm.faces.crop import crop, square_box
from fomm.faces.detect import Box, Face, detect_faces, get_detector
from fomm.faces.paste import MultiPaster, Paster
from fomm.faces.track import frame_driving, track_boxes

__all__ = [
    "Box",
    "Face",
    "MultiPaster",
    "Paster",
    "crop",
    "detect_faces",
    "frame_driving",
    "get_detector",
    "square_box",
    "track_boxes",
]
