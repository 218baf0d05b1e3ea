"""Dense facial landmarks: MediaPipe's 468-point face mesh, run by PyTorch.

The model is MediaPipe's ``face_landmark.tflite`` (Apache-2.0, Copyright Google LLC, shipped in
the ``mediapipe`` 0.10.x wheels on PyPI): its float16 weights and op list are stored in
``fomm/weights/face-mesh-468.safetensors`` (1.2 MB, made by :mod:`fomm.faces.mesh_tflite`) and
executed by :class:`fomm.faces.mesh_net.GraphNet`, so nothing beyond torch is needed and nothing
is downloaded. Its outputs match TensorFlow Lite's to 1e-4 px.

The network sees a 192x192 region of interest (ROI) around the face, rotated so the eyes are
level, and returns 468 points and a face-presence score. Like MediaPipe, the ROI is the
landmarks' bounding box enlarged 1.5x (square) and rotated by the eye line; without landmarks
it comes from the given face box or, for ``box=None``, from the whole image (fomm's framed crops
have the face centred with that margin), followed by one refining pass when that first ROI was
far from the landmarks' own.

Cost: see ``benchmarks/results/face-mesh-cpu.json`` (``benchmarks/face_mesh.py``): on a 256x256
framed crop, one network pass is about 2.5 ms on this project's 2-core x86 CPU (torch eager,
inference mode); ``detect`` with ``track=True`` runs one pass a frame, a first call two.

Thread safety: one :class:`FaceMesh` serialises its calls with a lock (its tracking state is
per instance); the network is shared and stateless, so separate instances run in parallel.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np
import torch

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "face-mesh-468.safetensors"
INPUT = 192  # the network's input side
ROI_SCALE = 1.5  # ROI side = this x the landmarks' bounding box's longer side (MediaPipe's)
MIN_SCORE = 0.5  # face-presence threshold (MediaPipe's default)

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
}
_GROUPS = MappingProxyType({name: np.asarray(_INDICES[name], dtype=np.int64) for name in GROUPS})
_EYES = (  # the points whose mean is an eye centre
    np.unique(np.r_[_GROUPS["left_eye_upper"], _GROUPS["left_eye_lower"]]),
    np.unique(np.r_[_GROUPS["right_eye_upper"], _GROUPS["right_eye_lower"]]),
)
_EYE_LINE = (33, 263)  # outer eye corners: the ROI's rotation (MediaPipe's choice)


@dataclass(frozen=True)
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

    def to_image(self, half_pixel: float) -> np.ndarray:
        """2x3 affine from ROI pixels (input side INPUT) to image coordinates."""
        k = self.side / INPUT
        c, s = math.cos(self.angle) * k, math.sin(self.angle) * k
        u0 = half_pixel - INPUT / 2
        return np.array(
            [[c, -s, self.cx + c * u0 - s * u0], [s, c, self.cy + s * u0 + c * u0]],
            dtype=np.float64,
        )

    def close_to(self, other: _Roi) -> bool:
        """Near enough that another pass would hardly change the landmarks."""
        shift = math.hypot(self.cx - other.cx, self.cy - other.cy) / self.side
        ratio = other.side / self.side
        turn = abs((other.angle - self.angle + math.pi) % (2 * math.pi) - math.pi)
        return shift < 0.08 and 0.85 < ratio < 1.18 and turn < math.radians(8)


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


@lru_cache(maxsize=1)
def _network() -> torch.nn.Module:
    """The PyTorch graph (channels-last: its depthwise convolutions run faster so)."""
    from fomm.faces.mesh_net import GraphNet

    return GraphNet.load(WEIGHTS).eval().to(memory_format=torch.channels_last)


class _OpenVino:
    """The graph compiled by OpenVINO on one CPU thread, an inference request per thread."""

    def __init__(self) -> None:
        import openvino as ov

        from fomm.faces.mesh_net import load_graph, openvino_model

        spec, weights = load_graph(WEIGHTS)
        config = {
            "INFERENCE_NUM_THREADS": "1",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self._compiled = ov.Core().compile_model(openvino_model(spec, weights), "CPU", config)
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        out = request.infer([x])
        return out[0], out[1]


_backend_lock = threading.Lock()
_backend: list[Any] = []  # the chosen runner, once


def _runner() -> Any:
    """OpenVINO where it is installed (one thread, about 3 ms a pass), else PyTorch eager."""
    with _backend_lock:
        if not _backend:
            runner: Any = None
            if os.environ.get("FOMM_MESH_BACKEND", "auto") != "torch":
                try:
                    runner = _OpenVino()
                except Exception:  # no OpenVINO, or no CPU plugin for it: PyTorch runs the graph
                    runner = None
            _backend.append(runner or _torch_run)
        return _backend[0]


def _torch_run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tensor = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        coords, flag = _network()(tensor)
    return coords.numpy(), flag.numpy()


def available() -> bool:
    """Whether the face-mesh model can be loaded."""
    try:
        _network()
    except (OSError, ValueError, KeyError, RuntimeError):
        return False
    return True


def _run(image: np.ndarray, roi: _Roi) -> tuple[np.ndarray, float]:
    """One network pass: (468, 2) image points and the face-presence score."""
    patch = cv2.warpAffine(
        image,
        roi.to_image(0.5),
        (INPUT, INPUT),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    x = np.ascontiguousarray(patch.transpose(2, 0, 1)[None], dtype=np.float32)
    x *= 1.0 / 255.0
    coords, flag = _runner()(x)
    uv = coords.reshape(-1, 3)[:, :2].astype(np.float64)
    affine = roi.to_image(0.0)
    points = uv @ affine[:, :2].T + affine[:, 2]
    score = 1.0 / (1.0 + math.exp(-float(np.asarray(flag).reshape(()))))
    return points.astype(np.float32), score


class FaceMesh:
    """468-point face landmarks on uint8 RGB images.

    Args:
        track: reuse the previous call's landmarks as the next ROI (one network pass a frame
            for video); a frame where that finds no face retries from the whole image.

    Thread-safe: calls on one instance are serialised by a lock.
    """

    def __init__(self, *, track: bool = False) -> None:
        self.track = track
        self._lock = threading.Lock()
        self._roi: _Roi | None = None

    def reset(self) -> None:
        """Forget the tracked face."""
        with self._lock:
            self._roi = None

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
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        image = np.ascontiguousarray(image, dtype=np.uint8)
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
            if not tracked and not roi.close_to(refined):
                points2, score2 = _run(image, refined)
                if score2 >= MIN_SCORE:
                    points, score = points2, score2
                    refined = _roi_from_points(points)
            self._roi = refined if self.track else None
            return FaceLandmarks(points, _GROUPS, score)
