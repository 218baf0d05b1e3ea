"""Tests for fomm.media.image: reading any image as RGB uint8, writing, resizing, frames ⇄
tensors."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageOps

from fomm.errors import InputError
from fomm.media.image import (
    apply_orientation,
    center_crop_square,
    even_size,
    pad_to_even,
    read_image,
    resize,
    to_frames,
    to_tensor,
    write_image,
)


def _random(h: int = 20, w: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


# ---------------------------------------------------------------- reading


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".webp", ".tif", ".gif"])
def test_lossless_formats_read_back_exactly(tmp_path, suffix):
    image = _random() if suffix != ".gif" else np.kron(_random(4, 6), np.ones((5, 5, 1), np.uint8))
    path = tmp_path / f"x{suffix}"
    if suffix == ".gif":  # few colours, so the palette is exact
        Image.fromarray(image).save(path)
    else:
        write_image(path, image)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out, image)


def test_jpeg_reads_close(tmp_path):
    image = np.kron(_random(4, 6), np.ones((8, 8, 1), np.uint8))
    write_image(tmp_path / "x.jpg", image)
    assert np.abs(read_image(tmp_path / "x.jpg").astype(int) - image).mean() < 4


def test_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 6), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert (read_image(tmp_path / "a.gif") == (255, 0, 0)).all()


def test_grayscale_and_bilevel_become_three_equal_channels(tmp_path):
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (16, 16, 3) and all(np.array_equal(out[..., c], grey) for c in range(3))
    Image.fromarray(grey > 127).save(tmp_path / "b.png")  # mode "1"
    assert set(np.unique(read_image(tmp_path / "b.png"))) == {0, 255}


def test_alpha_is_composited_onto_black(tmp_path):
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 128], [90, 90, 90, 0]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.tolist() == [[[200, 100, 50], [100, 50, 25], [0, 0, 0]]]
    la = np.array([[[200, 128], [10, 0]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").tolist() == [[[100] * 3, [0] * 3]]


def test_palette_images_with_and_without_transparency(tmp_path):
    image = Image.new("P", (4, 2))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [0, 255, 0]
    image.save(tmp_path / "pt.png", transparency=1)  # index 1 is transparent → black
    assert read_image(tmp_path / "pt.png")[0, 1].tolist() == [0, 0, 0]


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    grey = np.array([[0, 257, 450, 32896, 65535]], np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert read_image(tmp_path / "g16.png")[..., 0].tolist() == [[0, 1, 2, 128, 255]]


def test_16bit_colour_is_rounded_not_truncated(tmp_path):
    rgb = np.array([[[0, 450, 65535], [257, 32896, 65280]]], np.uint16)  # 450 → 2 (Pillow: 1)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])
    assert read_image(tmp_path / "c16.png").tolist() == [[[0, 2, 255], [1, 128, 254]]]
    rgba = np.concatenate([rgb, np.full((1, 2, 1), 65535, np.uint16)], axis=2)
    rgba[0, 1, 3] = 0  # second pixel transparent → black
    cv2.imwrite(str(tmp_path / "c16a.png"), rgba[..., [2, 1, 0, 3]])
    assert read_image(tmp_path / "c16a.png").tolist() == [[[0, 2, 255], [0, 0, 0]]]


def test_exif_rotated_jpeg_is_shown_upright(tmp_path):
    image = np.zeros((40, 80, 3), np.uint8)
    image[:20, :40] = (255, 0, 0)  # red top-left block
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90° clockwise
    Image.fromarray(image).save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (80, 40, 3)
    assert out[5:15, 25:35, 0].min() > 200 and out[5:15, 5:15, 0].max() < 50  # red at top right
    with Image.open(tmp_path / "r.jpg") as img:
        assert np.array_equal(out, np.asarray(ImageOps.exif_transpose(img).convert("RGB")))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_pillow(orientation):
    image = _random(5, 7)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", exif=exif)
    with Image.open(buffer) as img:
        want = np.asarray(ImageOps.exif_transpose(img))
    assert np.array_equal(apply_orientation(image, orientation), want)


def _truncated_png(path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_random(64, 64)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[:300])


def _zero_width_png(path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_random(2, 2)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:20] = (0).to_bytes(4, "big")  # IHDR width = 0
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("not an image at all"), "not a readable image"),
        (_truncated_png, "not a readable image"),
        (_zero_width_png, "not a readable image|no pixels"),
    ],
    ids=["missing", "folder", "empty", "text", "truncated", "zero_pixels"],
)
def test_bad_images_are_one_line_input_errors_naming_the_file(tmp_path, make, message):
    path = tmp_path / "face.png"
    make(path)
    with pytest.raises(InputError, match=message) as err:
        read_image(path)
    assert "face.png" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- writing


def test_write_image_is_atomic_and_creates_folders(tmp_path):
    image = _random()
    write_image(tmp_path / "a" / "b" / "x.png", image)
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["x.png"]
    with pytest.raises(ValueError):
        write_image(tmp_path / "y.png", image.astype(np.float32))
    with pytest.raises(InputError, match="unsupported image format"):
        write_image(tmp_path / "y.xyz", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


# ---------------------------------------------------------------- geometry


def test_resize_shapes_and_constant_images():
    image = np.full((40, 60, 3), 77, np.uint8)
    assert resize(image, (30, 20)).shape == (20, 30, 3)  # size is (width, height)
    assert resize(image, 100).shape == (100, 100, 3)
    assert (resize(image, (90, 70)) == 77).all() and (resize(image, (7, 5)) == 77).all()
    same = resize(image, (60, 40))
    assert np.array_equal(same, image) and same is not image


def test_resize_shrinks_without_aliasing():
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-pixel stripes average to mid-grey, not to a moiré
    small = resize(stripes, 16)
    assert np.abs(small.astype(int) - 128).max() <= 1


def test_center_crop_pad_and_even_size():
    image = _random(30, 50)
    assert np.array_equal(center_crop_square(image), image[:, 10:40])
    assert center_crop_square(_random(51, 30)).shape == (30, 30, 3)
    assert even_size(65, 47) == (66, 48) and even_size(64, 48) == (64, 48)
    odd = _random(5, 7)
    padded = pad_to_even(odd)
    assert padded.shape == (6, 8, 3) and np.array_equal(padded[:5, :7], odd)
    assert np.array_equal(padded[5, :7], odd[4]) and np.array_equal(padded[:5, 7], odd[:, 6])
    even = _random(4, 6)
    assert pad_to_even(even) is even


# ---------------------------------------------------------------- tensors


def test_to_tensor_layout_range_and_exact_values():
    frame = np.arange(256, dtype=np.uint8).reshape(8, 32)[..., None].repeat(3, axis=2)
    frame[..., 1] = 255 - frame[..., 0]
    t = to_tensor(frame)
    assert t.shape == (1, 3, 8, 32) and t.dtype == torch.float32 and t.is_contiguous()
    want = torch.from_numpy(frame.astype(np.float32) / np.float32(255)).permute(2, 0, 1)
    assert torch.equal(t[0], want)
    assert to_tensor(np.stack([frame, frame])).shape == (2, 3, 8, 32)
    assert torch.equal(to_tensor([frame, frame]), to_tensor(np.stack([frame, frame])))
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(frame.astype(np.float32))
    with pytest.raises(ValueError):
        to_tensor(frame[..., :2])


def test_to_frames_round_trip_is_exact_for_every_value():
    values = np.arange(256, dtype=np.uint8)
    frame = np.stack([values, values[::-1], values], axis=-1).reshape(16, 16, 3)
    out = to_frames(to_tensor(frame))
    assert out.dtype == np.uint8 and out.shape == (1, 16, 16, 3)
    assert np.array_equal(out[0], frame)


def test_to_frames_clamps_rounds_and_zeroes_nan():
    t = torch.tensor([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 7.0, float("nan"), 128.5 / 255])
    t = t.view(1, 1, 1, 8).expand(1, 3, 1, 8)
    assert to_frames(t)[0, 0, :, 0].tolist() == [0, 0, 0, 1, 255, 255, 0, 128]  # half to even
    assert to_frames(t[0].to(torch.float16)).shape == (1, 1, 8, 3)  # (3, H, W) and half floats
    with pytest.raises(ValueError):
        to_frames(torch.zeros(1, 4, 2, 2))


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9),
                                  st.just(3))))  # fmt: skip
def test_round_trip_property(batch):
    assert np.array_equal(to_frames(to_tensor(batch)), batch)
