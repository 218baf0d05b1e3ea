"""Driving-video face framing: a stabilised square box that follows the face, streaming.

The face is detected every ``detect_every`` frames (and in the last one) and its box (centre and
size) interpolated linearly in between; the per-frame boxes are then smoothed by a centred Gaussian
window of radius ``smoothing`` frames (σ = radius / 2, narrowed symmetrically at the ends). Frames
wait in a bounded buffer until the boxes ``smoothing`` frames ahead are known, so memory stays at
about ``detect_every + smoothing`` frames whatever the length of the video.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from fomm.errors import NoFaceError
from fomm.faces.crop import MARGIN, SHIFT_Y, Border, crop, face_size, square_box
from fomm.faces.detect import Box, Face, detect_faces

SEARCH_FRAMES = 60  # no face in this many first frames: NoFaceError
DETECT_MAX_SIDE = 640  # driving faces are large; detection on a smaller copy is faster


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def pick_face(faces: list[Face], previous: Box | None, min_iou: float = 0.3) -> Face | None:
    """The face that continues a track: best overlap with ``previous``, else the largest."""
    if not faces:
        return None
    if previous is not None:
        best = max(faces, key=lambda f: iou(f.box, previous))
        if iou(best.box, previous) >= min_iou:
            return best
    return faces[0]


def _params(box: Box) -> np.ndarray:
    """(cx, cy, size) of a face box; what gets interpolated and smoothed."""
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, face_size(box)])


def _face_box(p: np.ndarray) -> Box:
    half = p[2] / 2
    return (p[0] - half, p[1] - half, p[0] + half, p[1] + half)


def _track(
    frames: Iterable[np.ndarray],
    detect_every: int,
    smoothing: int,
    search_frames: int,
    margin: float,
    shift_y: float,
    max_side: int,
) -> Iterator[tuple[np.ndarray, Box]]:
    """Yield (frame, square crop box) pairs, about ``detect_every + smoothing`` frames late."""
    if detect_every < 1 or smoothing < 0:
        raise ValueError(
            f"detect_every must be ≥ 1 and smoothing ≥ 0, got {detect_every}, {smoothing}"
        )
    sigma = max(smoothing / 2, 1e-6)
    max_gap = max(2 * detect_every, 10)  # a face lost this long: hold its last box
    pending: deque[np.ndarray] = deque()  # frames not yet yielded, the first one is `out_index`
    raw: dict[int, np.ndarray] = {}  # per-frame face params, known for indices ≤ known_upto
    known_upto = -1
    last: tuple[int, np.ndarray] | None = None  # last detection: frame index, params
    out_index = 0

    def detect(index: int, frame: np.ndarray) -> bool:
        """Detect in frame ``index``; on success fill the raw boxes up to it."""
        nonlocal known_upto, last
        previous = _face_box(last[1]) if last is not None else None
        face = pick_face(detect_faces(frame, max_side=max_side), previous)
        if face is None:
            return False
        p = _params(face.box)
        for j in range(known_upto + 1, index + 1):
            if last is None:  # before the first detection: hold it
                raw[j] = p
            else:  # between detections: linear interpolation
                t = (j - last[0]) / (index - last[0])
                raw[j] = (1 - t) * last[1] + t * p
        last, known_upto = (index, p), index
        return True

    def hold(upto: int) -> None:
        nonlocal known_upto
        assert last is not None
        for j in range(known_upto + 1, upto + 1):
            raw[j] = last[1]
        known_upto = upto

    def smoothed(j: int, end: int, shape: tuple[int, ...]) -> Box:
        # a symmetric window, narrowed at the ends, so that steady motion is not lagged there
        radius = min(smoothing, j, end - j)
        offsets = np.arange(-radius, radius + 1)
        weights = np.exp(-0.5 * (offsets / sigma) ** 2)
        p = (weights[:, None] * np.stack([raw[j + int(k)] for k in offsets])).sum(0)
        return square_box(_face_box(p / weights.sum()), shape, margin=margin, shift_y=shift_y)

    def no_face(count: int) -> NoFaceError:
        return NoFaceError(
            f"no face found in the first {count} frames of the driving video; "
            "use --crop-driving off to animate with the whole frame"
        )

    index = -1
    for index, frame in enumerate(frames):
        pending.append(frame)
        found = index % detect_every == 0 and detect(index, frame)
        if not found and last is None and index + 1 >= search_frames:
            raise no_face(index + 1)
        if last is not None and index - known_upto >= max_gap:
            hold(index)
        while out_index + smoothing <= known_upto:
            frame_out = pending.popleft()
            yield frame_out, smoothed(out_index, known_upto, frame_out.shape)
            raw.pop(out_index - smoothing, None)  # no longer inside any window
            out_index += 1
    if index < 0:
        return
    # the last frame is still here: detect in it too, so that the end is not extrapolated
    if known_upto < index and not detect(index, pending[-1]) and last is None:
        raise no_face(index + 1)
    hold(index)
    while pending:
        frame_out = pending.popleft()
        yield frame_out, smoothed(out_index, index, frame_out.shape)
        out_index += 1


def track_boxes(
    frames: Iterable[np.ndarray],
    detect_every: int = 5,
    smoothing: int = 8,
    search_frames: int = SEARCH_FRAMES,
    margin: float = MARGIN,
    shift_y: float = SHIFT_Y,
    max_side: int = DETECT_MAX_SIDE,
) -> Iterator[Box]:
    """The stabilised square crop box of every frame (see :func:`frame_driving`)."""
    for _, box in _track(frames, detect_every, smoothing, search_frames, margin, shift_y, max_side):
        yield box


def frame_driving(
    frames: Iterable[np.ndarray],
    size: int,
    detect_every: int = 5,
    smoothing: int = 8,
    search_frames: int = SEARCH_FRAMES,
    margin: float = MARGIN,
    shift_y: float = SHIFT_Y,
    border: Border = "replicate",
    max_side: int = DETECT_MAX_SIDE,
) -> Iterator[np.ndarray]:
    """Frame the face of a raw driving video the way the training clips are framed.

    Args:
        frames: uint8 (H, W, 3) RGB frames, consumed lazily.
        size: side of the yielded crops (the model size).
        detect_every: run the face detector on every k-th frame, interpolate in between.
        smoothing: radius in frames of the centred Gaussian smoothing of the box (0: none).
        search_frames: give up when no face was found in this many first frames.
        margin, shift_y: framing, as for :func:`fomm.faces.crop.square_box`.
        border: fill for the parts of the box outside the frame.
        max_side: detection runs on a copy of at most this longest side.

    Yields:
        uint8 (size, size, 3) RGB crops, one per input frame.

    Raises:
        NoFaceError: no face in the first ``search_frames`` frames (or in the whole, shorter video).
    """
    for frame, box in _track(
        frames, detect_every, smoothing, search_frames, margin, shift_y, max_side
    ):
        yield crop(frame, box, size, border)
