"""Square crop boxes and sub-pixel crops: framing, fit inside the image, padding, affines."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from media import portraits

from fomm.faces.crop import (
    MARGIN,
    SHIFT_Y,
    crop,
    crop_to_image_affine,
    image_to_crop_affine,
    map_points,
    square_box,
)
from fomm.faces.detect import Face, detect_faces


def _random_image(h: int = 90, w: int = 120, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_square_box_geometry_without_fit() -> None:
    face = Face((100.0, 100.0, 180.0, 210.0), 1.0, np.zeros((5, 2)))  # 80 wide, 110 tall
    x0, y0, x1, y1 = square_box(face, fit=False)
    side = (1 + 2 * MARGIN) * 110
    assert x1 - x0 == pytest.approx(side) and y1 - y0 == pytest.approx(side)
    assert (x0 + x1) / 2 == pytest.approx(140)
    assert (y0 + y1) / 2 == pytest.approx(155 + SHIFT_Y * 110)  # above the face centre
    assert square_box(face.box, fit=False, margin=0.5, shift_y=0.0) == pytest.approx(
        (140 - 110, 155 - 110, 140 + 110, 155 + 110)
    )


def test_square_box_fits_inside_the_image() -> None:
    shape = (400, 600, 3)
    # near the top-left corner: shifted inwards, same side
    box = square_box((10.0, 5.0, 90.0, 105.0), shape)
    assert box[0] == pytest.approx(0) and box[1] == pytest.approx(0)
    assert box[2] - box[0] == pytest.approx(150)
    # a face filling most of the height: shrunk to the short side, still inside
    box = square_box((200.0, 20.0, 440.0, 320.0), shape)
    assert box[3] - box[1] == pytest.approx(400) and box[1] == pytest.approx(0)
    assert box[0] >= 0 and box[2] <= 600
    # too large even at (1 + margin) face sizes: not shrunk below it, centred, padded by crop()
    box = square_box((0.0, 0.0, 350.0, 390.0), shape)
    assert box[3] - box[1] == pytest.approx((1 + MARGIN) * 390)
    assert (box[1] + box[3]) / 2 == pytest.approx(200)


def test_crop_at_scale_one_is_slicing() -> None:
    image = _random_image()
    out = crop(image, (30.0, 20.0, 70.0, 60.0), 40)
    np.testing.assert_array_equal(out, image[20:60, 30:70])


def test_crop_is_sub_pixel_accurate() -> None:
    ramp = np.tile(np.arange(0, 200, dtype=np.uint8)[None, :, None], (50, 1, 3))  # value = x
    out = crop(ramp, (50.5, 10.0, 90.5, 50.0), 40).astype(float)
    np.testing.assert_allclose(out[:, :, 0], np.arange(50.5, 90.5)[None, :].repeat(40, 0), atol=0.6)


def test_crop_downscale_is_anti_aliased() -> None:
    stripes = np.zeros((400, 400, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-px stripes: aliasing would make bands, averaging gives grey
    out = crop(stripes, (0.0, 0.0, 400.0, 400.0), 50)
    assert np.abs(out.astype(float) - 127.5).max() < 12


@pytest.mark.parametrize("border, check", [("black", "zero"), ("replicate", "edge")])
def test_crop_pads_outside_the_image(border: str, check: str) -> None:
    image = _random_image(60, 80)
    out = crop(image, (-20.0, -10.0, 40.0, 50.0), 60, border=border)  # type: ignore[arg-type]
    assert out.shape == (60, 60, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[10:, 20:], image[0:50, 0:40])
    if check == "zero":
        assert not out[:10].any() and not out[:, :20].any()
    else:
        np.testing.assert_array_equal(out[10:, 5], image[0:50, 0])  # left edge repeated
        np.testing.assert_array_equal(out[3, 20:], image[0, 0:40])  # top edge repeated


def test_crop_fully_outside_and_empty_boxes() -> None:
    image = _random_image()
    assert not crop(image, (500.0, 500.0, 600.0, 600.0), 16, border="black").any()
    with pytest.raises(ValueError, match="empty"):
        crop(image, (10.0, 10.0, 10.0, 20.0), 16)


@settings(max_examples=60, deadline=None)
@given(
    x0=st.floats(-300, 300),
    y0=st.floats(-300, 300),
    side=st.floats(1, 900),
    size=st.integers(1, 96),
)
def test_crop_any_box(x0: float, y0: float, side: float, size: int) -> None:
    image = _random_image(120, 160, seed=1)
    out = crop(image, (x0, y0, x0 + side, y0 + side), size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8


@settings(max_examples=40, deadline=None)
@given(x0=st.floats(-500, 500), y0=st.floats(-500, 500), side=st.floats(1, 2000))
def test_affines_are_inverse(x0: float, y0: float, side: float) -> None:
    box = (x0, y0, x0 + side, y0 + side)
    points = np.array([[0.0, 0.0], [255.0, 17.5], [-3.0, 300.0]])
    back = map_points(
        image_to_crop_affine(box, 256), map_points(crop_to_image_affine(box, 256), points)
    )
    np.testing.assert_allclose(back, points, atol=1e-6 * max(1.0, side))


def test_affine_maps_landmarks_into_the_crop() -> None:
    image = np.zeros((300, 300, 3), np.uint8)
    cv2.circle(image, (130, 170), 3, (255, 255, 255), -1)
    box = (80.0, 90.0, 230.0, 240.0)
    out = crop(image, box, 64)
    u, v = map_points(image_to_crop_affine(box, 64), np.array([[130.0, 170.0]]))[0]
    ys, xs = np.nonzero(out[..., 0] > 60)
    assert abs(xs.mean() - u) < 0.7 and abs(ys.mean() - v) < 0.7


@pytest.mark.parametrize("name", list(portraits()))
def test_portrait_crop_is_framed_like_the_training_clips(name: str) -> None:
    """In driving clips framed like VoxCeleb, the crop side is ~1.5 face heights, face centred."""
    image = portraits()[name]
    face = detect_faces(image)[0]
    out = crop(image, square_box(face, image.shape), 256)
    again = detect_faces(out)
    assert len(again) == 1
    f = again[0]
    assert 256 / f.height == pytest.approx(1 + 2 * MARGIN, rel=0.12)
    assert abs(f.center[0] - 128) < 0.06 * 256
    assert f.center[1] - 128 == pytest.approx(-SHIFT_Y * f.height, abs=0.06 * 256)
