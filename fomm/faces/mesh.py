"""Dense facial landmarks: MediaPipe's 468-point face mesh with refined eyelids.

Models: MediaPipe's ``face_landmark.tflite`` (468 points) and ``iris_landmark.tflite`` (eyelid
contours from a 64x64 eye crop), both Apache-2.0 (Copyright Google LLC) and shipped in the
``mediapipe`` 0.10.x wheels on PyPI. Their weights and op lists are stored in
``fomm/weights/face-mesh-468.safetensors`` (1.2 MB, float16 as in the .tflite) and
``fomm/weights/iris-landmark.safetensors`` (2.6 MB, float32), made by
:mod:`fomm.faces.mesh_tflite`, and run by OpenVINO on one CPU thread where it is installed (the
default install), else by PyTorch (:mod:`fomm.faces.mesh_net`): nothing is downloaded and no
MediaPipe is needed. Both runtimes match TensorFlow Lite's outputs to 1e-4 px.

The face network sees a 192x192 region of interest (ROI) around the face, rotated so the eyes are
level, and returns 468 points and a face-presence score. Like MediaPipe, the ROI is the
landmarks' bounding box enlarged 1.5x (square) and rotated by the eye line; without landmarks
it comes from the given face box or, for ``box=None``, from the whole image (fomm's framed crops
have the face centred with that margin), followed by up to two passes from the landmarks' own
ROI until it settles. Then, as MediaPipe's iris pipeline does, each eye is cropped
(2.3x the corner distance, level, the second eye mirrored) and the iris network's lid contours
replace the mesh's 2 x 16 eyelid points: the face network alone leaves a closed eye about half
open.

Cost (``benchmarks/face_mesh.py``, ``benchmarks/results/face-mesh-cpu.json``; 256x256 framed
crop, steady state, OpenVINO on one thread, AMD EPYC with AVX2, 2 cores shared with other jobs,
load average 12): the face network 2.4 ms CPU a pass, the two-eye pass 4.5 ms; ``detect`` with
``track=True`` 8.3 ms CPU (one face pass and the eyes; 22 ms wall under that load), an untracked
call 12.3 ms (two face passes, three at most); ``refine_eyes=False`` saves the eye pass. The
PyTorch fallback (a worker thread of its own, one intra-op thread) takes 19 ms CPU a tracked
call. :func:`available` loads and compiles the networks (about a second): call it at start-up
to keep that out of the first frame.

Thread safety: one :class:`FaceMesh` serialises its calls with a lock (its tracking state is
per instance); the networks are shared and stateless (OpenVINO: one inference request per
thread), so separate instances run in parallel.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import cv2
import numpy as np

from fomm.faces.mesh_net import Runner, runner

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "face-mesh-468.safetensors"
IRIS_WEIGHTS = WEIGHTS.with_name("iris-landmark.safetensors")
INPUT = 192  # the face network's input side
EYE_INPUT = 64  # the iris network's input side
EYE_ROI_SCALE = 2.3  # eye ROI side = this x the eye corners' distance (MediaPipe's)
ROI_SCALE = 1.5  # ROI side = this x the landmarks' bounding box's longer side (MediaPipe's)
MIN_SCORE = 0.5  # face-presence threshold (MediaPipe's default)
MAX_REFINE_PASSES = 2  # face passes after the first one from a guessed ROI, at most
MAX_BILINEAR_SCALE = 1.5  # ROI pixels per network pixel beyond which the ROI is area-averaged

GROUPS = (
    "face_oval",
    "left_brow",
    "right_brow",
    "left_eye_upper",
    "left_eye_lower",
    "right_eye_upper",
    "right_eye_lower",
    "nose",
    "lips_outer_upper",
    "lips_outer_lower",
    "lips_inner_upper",
    "lips_inner_lower",
    "stable",
    "left_cheek",
    "right_cheek",
)

# Index sets into the 468-point canonical face mesh (the connection lists of MediaPipe's
# face_mesh_connections.py: FACEMESH_FACE_OVAL, _LIPS, _LEFT/RIGHT_EYE, _LEFT/RIGHT_EYEBROW,
# chained into polylines). "left"/"right" are the image's: the person's right eye (mesh 33/133)
# is on the image's left. Eyelids and lips run from the image-left corner to the image-right
# corner, both corners included.
_INDICES: dict[str, tuple[int, ...]] = {
    # closed loop from the top of the forehead (10), clockwise in the image (down the image's
    # right side, chin 152, up the left side); the first point is not repeated
    "face_oval": (
        10,
        338,
        297,
        332,
        284,
        251,
        389,
        356,
        454,
        323,
        361,
        288,
        397,
        365,
        379,
        378,
        400,
        377,
        152,
        148,
        176,
        149,
        150,
        136,
        172,
        58,
        132,
        93,
        234,
        127,
        162,
        21,
        54,
        103,
        67,
        109,
    ),
    # brows: upper edge left to right, then lower edge left to right (5 + 5 points)
    "left_brow": (70, 63, 105, 66, 107, 46, 53, 52, 65, 55),
    "right_brow": (336, 296, 334, 293, 300, 285, 295, 282, 283, 276),
    "left_eye_upper": (33, 246, 161, 160, 159, 158, 157, 173, 133),
    "left_eye_lower": (33, 7, 163, 144, 145, 153, 154, 155, 133),
    "right_eye_upper": (362, 398, 384, 385, 386, 387, 388, 466, 263),
    "right_eye_lower": (362, 382, 381, 380, 374, 373, 390, 249, 263),
    # bridge to tip to the base of the columella (midline, top down), then the nostril wings
    # left to right
    "nose": (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327),
    "lips_outer_upper": (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291),
    "lips_outer_lower": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291),
    "lips_inner_upper": (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
    "lips_inner_lower": (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308),
    # nose bridge and tip, inner eye corners, forehead and temples
    "stable": (168, 6, 197, 195, 5, 4, 1, 133, 362, 10, 109, 338, 67, 297, 127, 356),
    # the upper cheek under each eye, image-left to image-right (the face network's points a
    # quarter of an eye distance below the lower lid, a little wider than the eye): the lower lid
    # rides on it
    "left_cheek": (111, 117, 118, 119, 120, 121),
    "right_cheek": (350, 349, 348, 347, 346, 340),
}
_GROUPS = MappingProxyType({name: np.asarray(_INDICES[name], dtype=np.int64) for name in GROUPS})
_EYES = (  # the points whose mean is an eye centre
    np.unique(np.r_[_GROUPS["left_eye_upper"], _GROUPS["left_eye_lower"]]),
    np.unique(np.r_[_GROUPS["right_eye_upper"], _GROUPS["right_eye_lower"]]),
)
_EYE_LINE = (33, 263)  # outer eye corners: the ROI's rotation (MediaPipe's choice)
_EYE_CORNERS = ((33, 133), (362, 263))  # each eye's ROI: image-left corner to image-right one
# Where the iris model's 71 points per eye go in the mesh (MediaPipe's
# update_face_landmarks_calculator.cc): lower lid (corners included), upper lid, three halos
# around the eye, then the brow's lower and upper contours. The second eye is seen mirrored, so
# its list starts at the outer corner (263) as well. Only the lids (the first 16) are used: the
# model's halos and brows stay close to the eye (raised brows came out 0.15 eye distances
# below dlib's on the tuning clips, against 0.07 from the face network).
_LIDS = 16
_EYE_REFINED = (
    np.array(
        [
            33,
            7,
            163,
            144,
            145,
            153,
            154,
            155,
            133,
            246,
            161,
            160,
            159,
            158,
            157,
            173,
            130,
            25,
            110,
            24,
            23,
            22,
            26,
            112,
            243,
            247,
            30,
            29,
            27,
            28,
            56,
            190,
            226,
            31,
            228,
            229,
            230,
            231,
            232,
            233,
            244,
            113,
            225,
            224,
            223,
            222,
            221,
            189,
            35,
            124,
            46,
            53,
            52,
            65,
            143,
            111,
            117,
            118,
            119,
            120,
            121,
            128,
            245,
            156,
            70,
            63,
            105,
            66,
            107,
            55,
            193,
        ]
    ),
    np.array(
        [
            263,
            249,
            390,
            373,
            374,
            380,
            381,
            382,
            362,
            466,
            388,
            387,
            386,
            385,
            384,
            398,
            359,
            255,
            339,
            254,
            253,
            252,
            256,
            341,
            463,
            467,
            260,
            259,
            257,
            258,
            286,
            414,
            446,
            261,
            448,
            449,
            450,
            451,
            452,
            453,
            464,
            342,
            445,
            444,
            443,
            442,
            441,
            413,
            265,
            353,
            276,
            283,
            282,
            295,
            372,
            340,
            346,
            347,
            348,
            349,
            350,
            357,
            465,
            383,
            300,
            293,
            334,
            296,
            336,
            285,
            417,
        ]
    ),
)


@dataclass(frozen=True, eq=False)  # arrays inside: equal only to itself
class FaceLandmarks:
    """468 landmarks of one face.

    Attributes:
        points: (468, 2) float32 x, y in pixels of the image given (pixel centres at integers).
        groups: name -> int index array into ``points`` (keys: :data:`GROUPS`).
        score: face-presence confidence in [0, 1].
    """

    points: np.ndarray = field(repr=False)
    groups: Mapping[str, np.ndarray] = field(repr=False)
    score: float

    def group(self, name: str) -> np.ndarray:
        """(k, 2) points of a group."""
        return self.points[self.groups[name]]

    def eye_distance(self) -> float:
        """Distance between the two eye centres (mean of each eye's contour), in pixels."""
        left = self.points[_EYES[0]].mean(axis=0)
        right = self.points[_EYES[1]].mean(axis=0)
        return float(np.linalg.norm(right - left))

    def scaled(self, factor: float) -> FaceLandmarks:
        """The same landmarks in an image resized by ``factor``."""
        return FaceLandmarks((self.points * factor).astype(np.float32), self.groups, self.score)


@dataclass(frozen=True)
class _Roi:
    cx: float  # centre, pixel-centre coordinates
    cy: float
    side: float
    angle: float  # radians; the ROI's x axis is (cos, sin) in the image

    def to_image(self, half_pixel: float, size: int = INPUT, flip: bool = False) -> np.ndarray:
        """2x3 affine from the pixels of the ROI sampled at ``size`` (mirrored left to right
        where ``flip``) to image coordinates; ``half_pixel`` 0.5 for pixel centres (sampling),
        0 for the networks' continuous coordinates."""
        k = self.side / size
        c, s = math.cos(self.angle) * k, math.sin(self.angle) * k
        f = -1.0 if flip else 1.0
        u0 = half_pixel - size / 2
        return np.array(
            [[f * c, -s, self.cx + f * c * u0 - s * u0], [f * s, c, self.cy + f * s * u0 + c * u0]],
            dtype=np.float64,
        )

    def close_to(self, other: _Roi) -> bool:
        """Near enough that another pass would hardly change the landmarks."""
        shift = math.hypot(self.cx - other.cx, self.cy - other.cy) / self.side
        ratio = other.side / self.side
        turn = abs((other.angle - self.angle + math.pi) % (2 * math.pi) - math.pi)
        return shift < 0.03 and 0.93 < ratio < 1.07 and turn < math.radians(4)


def _roi_from_points(points: np.ndarray) -> _Roi:
    lo, hi = points.min(axis=0), points.max(axis=0)
    a, b = points[_EYE_LINE[0]], points[_EYE_LINE[1]]
    angle = math.atan2(float(b[1] - a[1]), float(b[0] - a[0]))
    side = ROI_SCALE * float(max(hi - lo))
    return _Roi(float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2, side, angle)


def _roi_from_box(box: tuple[float, float, float, float]) -> _Roi:
    x0, y0, x1, y1 = (float(v) for v in box)
    side = ROI_SCALE * max(x1 - x0, y1 - y0)
    return _Roi((x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5, side, 0.0)


def _roi_full(shape: tuple[int, ...]) -> _Roi:
    height, width = shape[:2]
    return _Roi((width - 1) / 2, (height - 1) / 2, float(max(height, width)), 0.0)


def _network() -> Runner:
    return runner(WEIGHTS)


def available() -> bool:
    """Whether the face-mesh models can be loaded."""
    try:
        _network()
        runner(IRIS_WEIGHTS)
    except (OSError, ValueError, KeyError, RuntimeError):
        return False
    return True


def _patch(image: np.ndarray, roi: _Roi, size: int, flip: bool) -> np.ndarray:
    """The ROI resampled to size x size: area-averaged first where it is much larger (a
    1024-pixel photo crop), so that bilinear sampling does not alias."""
    scale = roi.side / size
    if scale > MAX_BILINEAR_SCALE:
        half = roi.side * 0.7072  # half the diagonal: the rotated square's reach
        height, width = image.shape[:2]
        x0, y0 = max(int(roi.cx - half), 0), max(int(roi.cy - half), 0)
        x1, y1 = min(int(roi.cx + half) + 2, width), min(int(roi.cy + half) + 2, height)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            new_w = max(round((x1 - x0) / scale), 1)
            new_h = max(round((y1 - y0) / scale), 1)
            small = cv2.resize(image[y0:y1, x0:x1], (new_w, new_h), interpolation=cv2.INTER_AREA)
            fx, fy = (x1 - x0) / new_w, (y1 - y0) / new_h
            roi = _Roi(
                (roi.cx - x0 + 0.5) / fx - 0.5,
                (roi.cy - y0 + 0.5) / fy - 0.5,
                roi.side / math.sqrt(fx * fy),
                roi.angle,
            )
            image = small
    return cv2.warpAffine(
        image,
        roi.to_image(0.5, size, flip),
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _sample(image: np.ndarray, rois: list[_Roi], size: int, flips: list[bool]) -> np.ndarray:
    """(n, 3, size, size) float32 [0, 1] patches of the ROIs (mirrored where ``flips``)."""
    patches = [_patch(image, roi, size, flip) for roi, flip in zip(rois, flips)]
    x = np.ascontiguousarray(np.stack(patches).transpose(0, 3, 1, 2), dtype=np.float32)
    x *= 1.0 / 255.0
    return x


def _project(uv: np.ndarray, roi: _Roi, size: int, flip: bool = False) -> np.ndarray:
    affine = roi.to_image(0.0, size, flip)
    return uv[:, :2].astype(np.float64) @ affine[:, :2].T + affine[:, 2]


def _run(image: np.ndarray, roi: _Roi) -> tuple[np.ndarray, float]:
    """One pass of the face network: (468, 2) float64 image points and the presence score."""
    coords, flag = _network()(_sample(image, [roi], INPUT, [False]))[:2]
    points = _project(coords.reshape(-1, 3), roi, INPUT)
    score = 1.0 / (1.0 + math.exp(-float(np.asarray(flag).reshape(()))))
    return points, score


def _eye_roi(points: np.ndarray, start: int, end: int) -> _Roi:
    a, b = points[start], points[end]
    angle = math.atan2(float(b[1] - a[1]), float(b[0] - a[0]))
    side = EYE_ROI_SCALE * float(max(abs(b - a)))
    return _Roi(float(a[0] + b[0]) / 2, float(a[1] + b[1]) / 2, side, angle)


def _refine_eyes(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 468 points with the eyelids (2 x 16 points) replaced by the iris model's, which
    follows closing lids much more closely than the face network."""
    rois = [_eye_roi(points, *_EYE_CORNERS[0]), _eye_roi(points, *_EYE_CORNERS[1])]
    flips = [False, True]  # the model sees the person's left eye; the other one is mirrored
    contours = runner(IRIS_WEIGHTS)(_sample(image, rois, EYE_INPUT, flips))[0]
    refined = points.copy()
    for k in range(2):
        uv = contours[k].reshape(-1, 3)[:_LIDS]
        refined[_EYE_REFINED[k][:_LIDS]] = _project(uv, rois[k], EYE_INPUT, flips[k])
    return refined


class FaceMesh:
    """468-point face landmarks on uint8 RGB images.

    Args:
        track: reuse the previous call's landmarks as the next ROI (one network pass a frame
            for video); a frame where that finds no face retries from the whole image.
        refine_eyes: replace the eyelids by the iris network's (closed eyes close; the
            costlier half of a call).

    Thread-safe: calls on one instance are serialised by a lock.
    """

    def __init__(self, *, track: bool = False, refine_eyes: bool = True) -> None:
        self.track = track
        self.refine_eyes = refine_eyes
        self._lock = threading.Lock()
        self._roi: _Roi | None = None

    def reset(self) -> None:
        """Forget the tracked face."""
        with self._lock:
            self._roi = None

    def refined(self, image: np.ndarray, found: FaceLandmarks) -> FaceLandmarks:
        """``found`` (landmarks of ``image``, e.g. from a ``refine_eyes=False`` call) with the
        eyelids of the iris network: the eye pass of :meth:`detect` alone, for a caller that
        needs it on some frames only."""
        image = np.ascontiguousarray(image)
        points = _refine_eyes(image, np.asarray(found.points, dtype=np.float64))
        return FaceLandmarks(points.astype(np.float32), found.groups, found.score)

    def detect(
        self, image: np.ndarray, box: tuple[float, float, float, float] | None = None
    ) -> FaceLandmarks | None:
        """The landmarks of the face in ``image``, or None when there is none.

        Args:
            image: uint8 RGB (H, W, 3), any size.
            box: the face's box (x0, y0, x1, y1) in pixels (MTCNN-like: brows or forehead to
                chin). None: the face is centred, filling about the middle 60 % of the image
                (fomm's framed crops), or, with ``track=True``, where the last call found it.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected a uint8 RGB image (H, W, 3), got {image.dtype} of shape {image.shape}"
            )
        image = np.ascontiguousarray(image)
        with self._lock:
            tracked = box is None and self.track and self._roi is not None
            if box is not None:
                roi = _roi_from_box(box)
            elif tracked:
                roi = self._roi  # type: ignore[assignment]
            else:
                roi = _roi_full(image.shape)
            points, score = _run(image, roi)
            if score < MIN_SCORE and tracked:
                roi = _roi_full(image.shape)
                points, score = _run(image, roi)
                tracked = False
            if score < MIN_SCORE:
                self._roi = None
                return None
            refined = _roi_from_points(points)
            # a guessed ROI: pass again from the landmarks' own ROI until it settles (a face
            # framed higher than the guess can come out squashed, with a confident score)
            for _ in range(0 if tracked else MAX_REFINE_PASSES):
                if roi.close_to(refined):
                    break
                points2, score2 = _run(image, refined)
                if score2 < MIN_SCORE:
                    break
                roi, points, score = refined, points2, score2
                refined = _roi_from_points(points)
            self._roi = refined if self.track else None
            if self.refine_eyes:
                points = _refine_eyes(image, points)
            return FaceLandmarks(points.astype(np.float32), _GROUPS, score)
