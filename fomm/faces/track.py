"""Driving-video face framing: a stabilised square box that follows the face, streaming.

The face is detected every ``detect_every`` frames (and in the last one) and its box (centre and
size) interpolated linearly in between; the per-frame boxes are then smoothed over a centred window
of radius ``smoothing`` frames (a Gaussian-weighted local quadratic fit, σ = radius / 2, narrowed
symmetrically at the ends of each run of frames with a face): detector noise is averaged out while
the box keeps up with the face, so a clip moving inside a larger frame is framed like the clip
itself (a plain Gaussian blur lagged behind swaying motion: 0.076 against 0.048 eye distances
between the framed faces of a clip and of the same clip swaying in a larger frame).

Frames wait in a bounded buffer until the boxes ``smoothing`` frames ahead are known, so memory
stays at about ``detect_every + smoothing`` frames whatever the length of the video. Frames without
a face (a title card, a turned head) are found frame by frame and never framed:
:func:`frame_driving` repeats the nearest framed face there, so that the pose holds and relative
motion is measured from the first face found.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from fomm.errors import NoFaceError
from fomm.faces.crop import MARGIN, SHIFT_Y, Border, crop, face_size, square_box
from fomm.faces.detect import Box, Face, detect_faces

SEARCH_FRAMES = 250  # no face in this many first frames (10 s at 25 fps): NoFaceError
DETECT_MAX_SIDE = 640  # driving faces are large; detection on a smaller copy is faster
SMOOTHING = 12  # radius in frames of the box smoothing window
BRIDGE = 5  # a face missed in at most this many frames between detections: detector misses


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


TREND_DEGREE = 2  # the smoothing keeps quadratic trends (see _window)


@functools.lru_cache(maxsize=64)
def _window(radius: int, sigma: float) -> np.ndarray:
    """Weights (2·radius + 1,) that smooth a series at the window's centre.

    The value at the centre of a Gaussian-weighted least-squares polynomial fit of degree
    ``TREND_DEGREE``: noise is averaged out like a Gaussian blur, but steady and accelerating
    motion (a head that turns, a clip that slides) passes without being flattened.
    """
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    gauss = np.exp(-0.5 * (offsets / sigma) ** 2)
    degree = min(TREND_DEGREE, 2 * radius)
    design = offsets[:, None] ** np.arange(degree + 1)  # (N, D + 1)
    weighted = gauss[:, None] * design
    # centre value = e0ᵀ (Xᵀ W X)⁻¹ Xᵀ W y
    return np.linalg.solve(design.T @ weighted, weighted.T)[0]


def _face_box(p: np.ndarray) -> Box:
    half = p[2] / 2
    return (p[0] - half, p[1] - half, p[0] + half, p[1] + half)


class _Tracker:
    """The state of :func:`_track`: frames waiting to go out, the face box of each frame known so
    far, the last detection, and where the detector looks next.

    Frame indices count from the first frame of the video; ``pending[0]`` is frame ``out_index``.
    """

    def __init__(self, detect_every: int, smoothing: int, margin: float, shift_y: float,
                 max_side: int, bridge: int) -> None:
        if detect_every < 1 or smoothing < 0:
            raise ValueError(
                f"detect_every must be ≥ 1 and smoothing ≥ 0, got {detect_every}, {smoothing}"
            )
        self.detect_every, self.smoothing, self.bridge = detect_every, smoothing, bridge
        self.margin, self.shift_y, self.max_side = margin, shift_y, max_side
        self.sigma = max(smoothing / 2, 1e-6)
        self.pending: deque[np.ndarray] = deque()  # frames read and not yet yielded
        self.raw: dict[int, np.ndarray | None] = {}  # face params (None: no face), ≤ known_upto
        self.known_upto = -1  # the last frame whose face (or its absence) is known
        self.anchor: tuple[int, np.ndarray] | None = None  # last detection: frame index, params
        self.searching = True  # detect in every frame (no face yet, or lost), not every k-th
        self.failed_at: int | None = None  # a failed detection ahead of the frame-by-frame search
        self.gap_start: int | None = None  # first frame of the trailing run without a face
        self.next_detect = 0  # the next scheduled detection while tracking
        self.out_index = 0  # the next frame to yield
        self.index = -1  # the last frame read

    def push(self, frame: np.ndarray) -> None:
        """Read the next frame and run the detections it allows."""
        self.pending.append(frame)
        self.index += 1
        self.detect()

    def end(self) -> None:
        """The video ended: detect in the last frame too (no extrapolation), then what is left."""
        if not self.searching and self.known_upto < self.index:
            self.next_detect = self.index
        self.detect()

    def detect(self) -> None:
        while self._step():
            pass

    def _step(self) -> bool:
        """Run the next detection the frames read so far allow; False when there is none."""
        j = self.known_upto + 1 if self.searching else self.next_detect
        if j > self.index:
            return False
        face = None
        if j != self.failed_at:
            previous = _face_box(self.anchor[1]) if self.anchor is not None else None
            frame = self.pending[j - self.out_index]
            face = pick_face(detect_faces(frame, max_side=self.max_side), previous)
        if face is None:
            if self.searching:  # this frame has no face
                self.raw[j], self.known_upto = None, j
                self.gap_start = j if self.gap_start is None else self.gap_start
                self.failed_at = None if self.failed_at == j else self.failed_at
            else:  # lost somewhere since the last detection: search there frame by frame
                self.searching, self.failed_at = True, j
            return True
        p = _params(face.box)
        anchor = self.anchor
        if self.gap_start is not None and anchor is not None and j - self.gap_start <= self.bridge:
            self.known_upto = anchor[0]  # a short gap between faces: detector misses, bridged
        self.gap_start = None
        for i in range(self.known_upto + 1, j + 1):  # a stretch only while tracking or bridging
            t = 1.0 if anchor is None else (i - anchor[0]) / (j - anchor[0])
            self.raw[i] = p if anchor is None else (1 - t) * anchor[1] + t * p
        self.anchor, self.known_upto = (j, p), j
        if self.failed_at is None:  # back to the detection schedule, restarted from here
            self.searching, self.next_detect = False, j + self.detect_every
        return True

    def _lost(self, k: int, ended: bool) -> bool:
        """Frame k (≤ known_upto) is known to have no face (not a gap that may yet be bridged)."""
        if self.raw[k] is not None:
            return False
        return (
            ended
            or self.anchor is None
            or self.gap_start is None
            or k < self.gap_start
            or self.known_upto - self.gap_start >= self.bridge
        )

    def _ready(self, j: int, ended: bool) -> bool:
        """Frame j's box is final: its face run is known ``smoothing`` frames ahead (or ends)."""
        if j > self.known_upto:
            return False
        if self.raw[j] is None:
            return self._lost(j, ended)
        if ended or self.known_upto >= j + self.smoothing:
            return True
        return any(self._lost(k, ended) for k in range(j + 1, self.known_upto + 1))

    def _smoothed(self, j: int, shape: tuple[int, ...]) -> Box:
        # a symmetric window, narrowed at the ends of the face run, so that steady motion is not
        # lagged there and frames without a face never enter it
        raw, radius = self.raw, 0
        while (
            radius < self.smoothing
            and raw.get(j - radius - 1) is not None
            and raw.get(j + radius + 1) is not None
        ):
            radius += 1
        weights = _window(radius, self.sigma)
        p = weights @ np.stack([raw[j + k] for k in range(-radius, radius + 1)])
        return square_box(_face_box(p), shape, margin=self.margin, shift_y=self.shift_y)

    def flush(self, ended: bool) -> Iterator[tuple[np.ndarray, Box | None]]:
        """The frames whose boxes are final, in order, with their boxes."""
        while self._ready(self.out_index, ended):
            frame = self.pending.popleft()
            j = self.out_index
            box = None if self.raw[j] is None else self._smoothed(j, frame.shape)
            yield frame, box
            self.raw.pop(j - self.smoothing, None)  # no longer inside any window
            self.out_index += 1


def _no_face(count: int) -> NoFaceError:
    return NoFaceError(
        f"no face found in the first {count} frames of the driving video; "
        "use --crop-driving off to animate with the whole frame"
    )


def _track(
    frames: Iterable[np.ndarray],
    detect_every: int,
    smoothing: int,
    search_frames: int,
    margin: float,
    shift_y: float,
    max_side: int,
    bridge: int = BRIDGE,
) -> Iterator[tuple[np.ndarray, Box | None]]:
    """Yield (frame, square crop box or None where no face is seen), in order, a little late.

    While a face is tracked the detector runs every ``detect_every`` frames and the face box is
    interpolated in between. A failed detection starts a frame-by-frame search back from the
    last detection, so the frames where the face is lost (and where it comes back) are known
    exactly; the search goes on frame by frame until the face is found again, and the schedule
    restarts there. A gap of at most ``bridge`` frames between two faces is taken for detector
    misses and interpolated over. The boxes of each run of frames with a face are smoothed within
    the run, exactly as a video that starts and ends with the run would be.
    """
    tracker = _Tracker(detect_every, smoothing, margin, shift_y, max_side, bridge)
    for frame in frames:
        tracker.push(frame)
        if tracker.anchor is None and tracker.index + 1 >= search_frames:
            raise _no_face(tracker.index + 1)
        yield from tracker.flush(ended=False)
    if tracker.index < 0:
        return
    tracker.end()
    if tracker.anchor is None:
        raise _no_face(tracker.index + 1)
    yield from tracker.flush(ended=True)


def track_boxes(
    frames: Iterable[np.ndarray],
    detect_every: int = 5,
    smoothing: int = SMOOTHING,
    search_frames: int = SEARCH_FRAMES,
    margin: float = MARGIN,
    shift_y: float = SHIFT_Y,
    max_side: int = DETECT_MAX_SIDE,
) -> Iterator[Box | None]:
    """The stabilised square crop box of every frame, None where it has no face (see
    :func:`frame_driving`)."""
    for _, box in _track(frames, detect_every, smoothing, search_frames, margin, shift_y, max_side):
        yield box


def frame_driving(
    frames: Iterable[np.ndarray],
    size: int,
    detect_every: int = 5,
    smoothing: int = SMOOTHING,
    search_frames: int = SEARCH_FRAMES,
    margin: float = MARGIN,
    shift_y: float = SHIFT_Y,
    border: Border = "replicate",
    max_side: int = DETECT_MAX_SIDE,
) -> Iterator[np.ndarray]:
    """Frame the face of a raw driving video the way the training clips are framed.

    A frame without a face is replaced by the last framed face (before the first face: by the
    first one), so the model never sees a faceless frame: the pose holds where the face is lost,
    and relative motion is measured from the first frame with a face.

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
    last: np.ndarray | None = None
    waiting = 0  # faceless frames before the first face: they repeat it
    for frame, box in _track(
        frames, detect_every, smoothing, search_frames, margin, shift_y, max_side
    ):
        if box is not None:
            last = crop(frame, box, size, border)
            for _ in range(waiting):
                yield last
            waiting = 0
        elif last is None:
            waiting += 1
            continue
        yield last
