"""Causal face framing for live input: the driving face's crop, from past frames only.

File animation frames the driving face with a look-ahead track (fomm.faces.track); a live camera
has no future frames, so here the face box is found every few frames (a followed face again from
its last box by MTCNN's last two networks, else near it, else in the whole frame), continued
with the track's own face choice (:func:`fomm.faces.track.pick_face`), smoothed with a One-Euro
filter and framed and cut exactly as for files (:func:`fomm.faces.crop.square_box`, :func:`crop`).
"""

from __future__ import annotations

import numpy as np

from fomm.faces.crop import MARGIN, SHIFT_Y, crop, face_size, square_box
from fomm.faces.detect import Box, Face, detect_faces, refine_face
from fomm.faces.track import pick_face
from fomm.live.smoothing import BOX_BETA, BOX_MIN_CUTOFF, OneEuroFilter

DETECT_MAX_SIDE = 320  # a webcam face is large: detecting on a 320 px copy is enough and fast
LOST_AFTER = 3  # detections in a row without a face: the face is gone
NEAR = 2.0  # a followed face is looked for first in a square this many face sizes wide
NEAR_MAX_SIDE = 160  # ... seen at this side: the face about as large as in the 320 px frame
NEAR_MIN_FACE = 0.5  # ... for faces from this share of the followed one's size
MIN_FACE = 0.08  # smallest face looked for, as a share of the frame's short side: a larger
# minimum means fewer detector pyramid levels, but at 0.15 (72 px of 480) MTCNN missed 45 % of
# the frames of benchmarks/live.py's moving face (a ~70 px box); at 0.08 none, for 26 instead
# of 16 CPU ms per detection (every 3rd frame)


class LiveFramer:
    """Follow the face of a live stream and cut its model-size crop.

    Args:
        size: side of the crops (the model size).
        detect_every: run the detector on every k-th frame; the box is held in between.
        smoothing: One-Euro smoothing of the box (centre and size).
        margin, shift_y: framing, as for :func:`fomm.faces.crop.square_box`.
        max_side: detection runs on a copy of at most this longest side.
        min_face: smallest face found, as a share of the frame's short side.
        near: look for a followed face in the square around it first (``NEAR`` face sizes wide,
            seen at ``NEAR_MAX_SIDE`` px), and in the whole frame only when it is not there:
            on the benchmark clip 11.9 instead of 21.3 CPU ms per detection, the same boxes to
            detector jitter.
        track: find a followed face again from its last box first (MTCNN's RNet and ONet on that
            one candidate, :func:`fomm.faces.detect.refine_face`), before looking around it.
    """

    def __init__(
        self,
        size: int,
        detect_every: int = 3,
        smoothing: bool = True,
        margin: float = MARGIN,
        shift_y: float = SHIFT_Y,
        max_side: int = DETECT_MAX_SIDE,
        min_face: float = MIN_FACE,
        near: bool = True,
        track: bool = True,
    ) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be ≥ 1, got {detect_every}")
        self.size, self.detect_every = size, detect_every
        self.margin, self.shift_y, self.max_side = margin, shift_y, max_side
        self.min_face = min_face
        self.near, self.track = near, track
        self._filter = OneEuroFilter(BOX_MIN_CUTOFF, BOX_BETA) if smoothing else None
        self._face: Box | None = None  # last smoothed face box
        self._misses = 0
        self._count = 0
        self.detections = 0  # detector runs, for the stats

    @property
    def has_face(self) -> bool:
        """Whether a face is being followed."""
        return self._face is not None

    def _detect_near(self, frame: np.ndarray, box: Box) -> list[Face]:
        """Faces in the square around ``box`` (frame coordinates): a small image, few scales."""
        cx, cy, size = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0]
        half = NEAR * size / 2
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(frame.shape[1], int(cx + half)), min(frame.shape[0], int(cy + half))
        if x1 - x0 < 24 or y1 - y0 < 24:
            return []
        faces = detect_faces(
            frame[y0:y1, x0:x1], min_size=max(20.0, NEAR_MIN_FACE * size), max_side=NEAR_MAX_SIDE
        )
        shift = np.array([x0, y0], dtype=np.float64)
        return [
            Face(
                (f.box[0] + x0, f.box[1] + y0, f.box[2] + x0, f.box[3] + y0),
                f.score,
                f.landmarks + shift,
            )
            for f in faces
        ]

    def _detect(self, frame: np.ndarray, t: float) -> None:
        self.detections += 1
        faces: list[Face] = []
        if self._face is not None and not self._misses and self.track:  # cheapest: its last box
            min_size = max(20.0, NEAR_MIN_FACE * face_size(self._face))
            faces = refine_face(frame, self._face, min_size=min_size)
        if not faces and self._face is not None and not self._misses and self.near:
            faces = self._detect_near(frame, self._face)  # the followed face, cheaply
        if not faces:  # none yet, or it left the square: the whole frame
            min_size = max(20.0, self.min_face * min(frame.shape[:2]))
            faces = detect_faces(frame, min_size=min_size, max_side=self.max_side)
        face = pick_face(faces, self._face)
        if face is None:
            self._misses += 1
            if self._misses >= LOST_AFTER:
                self._face = None
                if self._filter is not None:
                    self._filter.reset()
            return
        self._misses = 0
        box = face.box
        p = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, face_size(box)])
        if self._filter is not None:
            p = self._filter(p, t)
        half = p[2] / 2
        self._face = (p[0] - half, p[1] - half, p[0] + half, p[1] + half)

    def __call__(self, frame: np.ndarray, t: float) -> np.ndarray | None:
        """The uint8 (size, size, 3) crop of the face in ``frame`` (taken at ``t`` s), or None.

        Detection runs on this frame when it is due, and on every frame while no face is known
        or the last detection missed it (a face gone for ``LOST_AFTER`` frames is dropped).
        """
        if self._face is None or self._misses or self._count % self.detect_every == 0:
            self._detect(frame, t)
        self._count += 1
        if self._face is None:
            return None
        box = square_box(self._face, frame.shape, margin=self.margin, shift_y=self.shift_y)
        return crop(frame, box, self.size)
