"""Live framing: a followed face found again from its last box (MTCNN RNet + ONet alone)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fomm.faces.detect import detect_faces, refine_face
from fomm.faces.track import iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from live import moving_face_clip  # noqa: E402  (benchmarks/live.py)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[np.ndarray]:
    import cv2

    clip = moving_face_clip(tmp_path_factory.mktemp("framing") / "camera.mp4", 2)
    capture = cv2.VideoCapture(str(clip))
    out = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return out


def test_refine_finds_the_face_from_its_last_box(frames):
    first = detect_faces(frames[0], min_size=30)[0]
    later = frames[3]  # the face has moved since (by a detection interval)
    found = refine_face(later, first.box)
    detected = detect_faces(later, min_size=30)[0]
    assert len(found) == 1 and found[0].score >= 0.95
    assert iou(found[0].box, detected.box) > 0.8
    assert found[0].landmarks.shape == (5, 2)
    assert np.abs(found[0].landmarks - detected.landmarks).max() < 0.1 * detected.width


def test_refine_finds_nothing_where_the_face_is_not():
    from skimage import data

    image = data.astronaut()
    assert refine_face(image, (380.0, 380.0, 480.0, 480.0)) == []  # the suit, no face
    assert refine_face(image, (0.0, 0.0, 5.0, 5.0)) == []  # too small a neighbourhood


def test_refine_lets_a_face_that_moved_far_go(frames):
    first = detect_faces(frames[0], min_size=30)[0]
    assert refine_face(frames[40], first.box) == []  # a face width away: left to the detector


def test_framer_tracks_between_detections(frames, monkeypatch):
    from fomm.live import framing

    calls = {"detect": 0, "refine": 0}
    detect, refine = framing.detect_faces, framing.refine_face

    def counted_detect(*args, **kwargs):
        calls["detect"] += 1
        return detect(*args, **kwargs)

    def counted_refine(*args, **kwargs):
        calls["refine"] += 1
        return refine(*args, **kwargs)

    monkeypatch.setattr(framing, "detect_faces", counted_detect)
    monkeypatch.setattr(framing, "refine_face", counted_refine)
    boxes = {}
    for track in (True, False):
        calls.update(detect=0, refine=0)
        framer = framing.LiveFramer(64, track=track)
        boxes[track] = []
        for i, frame in enumerate(frames):
            assert framer(frame, i / 30) is not None
            boxes[track].append(framer._face)
        if track:  # the whole frame once, then the last box every time
            assert calls["detect"] == 1 and calls["refine"] == framer.detections - 1
        else:
            assert calls["refine"] == 0 and calls["detect"] >= framer.detections
    for a, b in zip(boxes[True], boxes[False], strict=True):
        assert iou(a, b) > 0.75  # the same face, to detector jitter


def test_framer_lets_a_tracked_face_go(frames):
    from fomm.live.framing import LOST_AFTER, LiveFramer

    framer = LiveFramer(64)
    for i, frame in enumerate(frames[:4]):
        assert framer(frame, i / 30) is not None
    blank = np.full_like(frames[0], 80)
    gone = [framer(blank, 1 + i / 30) for i in range(framer.detect_every - 1 + LOST_AFTER)]
    assert gone[-1] is None and not framer.has_face
    assert framer(frames[5], 2.0) is not None  # found again in the whole frame
