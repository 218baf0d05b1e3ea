"""Paste-back: source resolution, untouched far pixels, no seam, colour match, several faces."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from media import group_photo, portraits

from fomm.faces.crop import crop, square_box
from fomm.faces.detect import detect_faces
from fomm.faces.paste import MultiPaster, Paster


def _image(h: int = 301, w: int = 403, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)  # smooth, like a photo


def _fake_animation(crop_: np.ndarray, tint: tuple[int, int, int] = (18, 12, -10)) -> np.ndarray:
    """A crop that differs like a generated one: moved (mirrored), softer, tinted."""
    moved = cv2.GaussianBlur(crop_, (0, 0), 1.0)[:, ::-1].astype(int) + tint
    return np.ascontiguousarray(np.clip(moved, 0, 255).astype(np.uint8))


def _gradient(image: np.ndarray) -> np.ndarray:
    g = image.astype(np.float32)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    return np.sqrt((gx**2 + gy**2).sum(-1))


def test_far_pixels_unchanged_and_size_kept() -> None:
    image = _image()
    box = (150.5, 80.25, 250.5, 180.25)
    animated = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    paster = Paster(image, box, 64)
    out = paster.paste(animated)
    assert out.shape == image.shape and out.dtype == np.uint8
    outside = np.ones(image.shape[:2], bool)
    outside[80:181, 150:251] = False
    np.testing.assert_array_equal(out[outside], image[outside])
    # inside the box too, wherever the mask is zero (its corners), and changed where it is one
    rx0, ry0, rx1, ry1 = paster.roi
    zero = paster.alpha == 0
    assert zero.any()
    np.testing.assert_array_equal(out[ry0:ry1, rx0:rx1][zero], image[ry0:ry1, rx0:rx1][zero])
    assert (
        out[ry0:ry1, rx0:rx1][paster.alpha == 1] != image[ry0:ry1, rx0:rx1][paster.alpha == 1]
    ).any()
    assert image is not out  # the source is left alone


@pytest.mark.parametrize(
    "box", [(-40.0, -30.0, 60.0, 70.0), (350.0, 250.0, 450.0, 350.0), (-50.0, -50.0, 500.0, 500.0)]
)
def test_boxes_past_the_borders(box: tuple[float, float, float, float]) -> None:
    image = _image()
    size = round(box[2] - box[0])  # about 1:1, so that only the borders matter
    animated = crop(image, box, size)
    out = Paster(image, box, size).paste(animated)
    assert out.shape == image.shape
    # pasting back the crop's own pixels changes little (resampling only)
    assert np.abs(out.astype(int) - image).mean() < 3


def test_identity_paste_is_close_and_bad_inputs_fail() -> None:
    image = _image()
    box = square_box((150.0, 100.0, 230.0, 200.0), image.shape)
    paster = Paster(image, box, 128)
    out = paster.paste(crop(image, box, 128))
    assert np.abs(out.astype(int) - image).max() <= 6
    # a crop at another resolution (--detail) goes into the same box
    assert np.abs(paster.paste(crop(image, box, 96)).astype(int) - image).max() <= 12
    with pytest.raises(ValueError, match="crop"):
        paster.paste(np.zeros((64, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="outside"):
        Paster(image, (1000.0, 1000.0, 1100.0, 1100.0), 64)


def test_colour_is_matched_at_the_border() -> None:
    image = _image()
    box = (100.0, 60.0, 300.0, 260.0)
    tinted = np.clip(crop(image, box, 128).astype(int) + (20, -15, 10), 0, 255).astype(np.uint8)
    matched = Paster(image, box, 128).paste(tinted)
    plain = Paster(image, box, 128, colour_match=False).paste(tinted)
    inner = (slice(110, 210), slice(150, 250))
    shift_matched = (matched[inner].astype(float) - image[inner]).mean((0, 1))
    shift_plain = (plain[inner].astype(float) - image[inner]).mean((0, 1))
    assert np.abs(shift_plain - (20, -15, 10)).max() < 2  # the tint is there without matching
    assert np.abs(shift_matched).max() < 2  # and gone with it


# frontal faces: the fake animation mirrors the crop, which a profile (cameraman) does not survive
@pytest.mark.parametrize("name", ["astronaut-mirrored", "carphone-x2"])
def test_no_seam_on_a_real_portrait(name: str) -> None:
    """Gradient across the mask's ramp is no stronger than the photo's there; a hard edge's is."""
    image = portraits()[name].copy()
    box = square_box(detect_faces(image)[0], image.shape)
    animated = _fake_animation(crop(image, box, 256))

    def seam_ratio(paster: Paster) -> float:
        out = paster.paste(animated)
        rx0, ry0, rx1, ry1 = paster.roi
        mask = (paster.alpha > 0.5).astype(np.uint8)
        # the transition: where the mask ramps, or within 2 px of a hard edge
        edge = cv2.dilate(mask, np.ones((5, 5))) != cv2.erode(mask, np.ones((5, 5)))
        band = ((paster.alpha > 0.02) & (paster.alpha < 0.98)) | edge
        roi = (slice(ry0, ry1), slice(rx0, rx1))
        return float(_gradient(out)[roi][band].mean() / _gradient(image)[roi][band].mean())

    ours = seam_ratio(Paster(image, box, 256))
    hard = seam_ratio(Paster(image, box, 256, feather=0.0, colour_match=False))
    print(f"{name}: seam gradient ratio {ours:.2f} (hard paste {hard:.2f})")
    assert ours < 1.15
    assert hard > 1.2  # the measure does see a seam when there is one


def test_several_faces_masks_never_overlap_and_order_does_not_matter() -> None:
    image = _image(400, 600)
    boxes = [(50.0, 50.0, 250.0, 250.0), (180.0, 90.0, 360.0, 270.0), (330.0, 60.0, 560.0, 290.0)]
    crops = [np.full((64, 64, 3), c, np.uint8) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    multi = MultiPaster(image, boxes, 64)
    canvases = []
    for paster in multi.pasters:
        canvas = np.zeros(image.shape[:2], np.float32)
        rx0, ry0, rx1, ry1 = paster.roi
        canvas[ry0:ry1, rx0:rx1] = paster.alpha
        canvases.append(canvas)
    for a, b in itertools.combinations(canvases, 2):
        assert not (a * b).any(), "two masks overlap"
    assert all(c.max() == 1.0 for c in canvases), "a face lost its mask entirely"
    reference = multi.paste(crops)
    for order in itertools.permutations(range(3)):
        other = MultiPaster(image, [boxes[i] for i in order], 64)
        np.testing.assert_array_equal(other.paste([crops[i] for i in order]), reference)
    with pytest.raises(ValueError, match="crops"):
        multi.paste(crops[:2])


def test_group_photo_every_face_pasted() -> None:
    image = group_photo().copy()
    faces = detect_faces(image)
    boxes = [square_box(face, image.shape) for face in faces]
    out = MultiPaster(image, boxes, 256).paste([np.zeros((256, 256, 3), np.uint8)] * len(boxes))
    assert out.shape == image.shape
    for face in faces:  # each face centre is now dark
        cx, cy = (int(v) for v in face.center)
        assert out[cy, cx].max() < 40
