"""Stitching: with the head moved, what surrounds it inside the paste box stays where the photo
has it; the head itself is pasted as animated; off, the paste is today's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from media import astronaut

from fomm.config import AnimateOptions
from fomm.faces.crop import crop, square_box
from fomm.faces.detect import detect_faces
from fomm.faces.paste import Paster
from fomm.faces.stitch import FLOW_SIZE, Stitcher, head_outline

SIDE = 256


@pytest.fixture(scope="module")
def portrait() -> tuple[np.ndarray, tuple[float, float, float, float]]:
    image = astronaut()
    return image, square_box(detect_faces(image)[0], image.shape)


def _tilted(photo_crop: np.ndarray, degrees: float = 8.0, shift: tuple[float, float] = (9, -6)
            ) -> np.ndarray:
    """The whole crop turned about its chin and moved, as the motion model moves a tilting head
    together with the background and shoulders around it."""
    side = photo_crop.shape[0]
    turn = cv2.getRotationMatrix2D((side / 2, 0.8 * side), degrees, 1.0)
    turn[:, 2] += shift
    return cv2.warpAffine(photo_crop, turn, (side, side), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)


def _corners(image: np.ndarray) -> np.ndarray:
    """The two lower corner patches of a SIDE-square crop (10–24 % of the side from each
    corner): the shoulders (the astronaut's hair reaches the upper ones)."""
    a, b = round(0.10 * SIDE), round(0.24 * SIDE)
    return np.concatenate([image[-b:-a, c].reshape(-1, 3)
                           for c in (slice(a, b), slice(-b, -a))]).astype(np.float32)


def test_corners_stay_with_the_photo_and_the_head_moves(portrait):
    image, box = portrait
    photo_crop = crop(image, box, SIDE)
    animated = _tilted(photo_crop)
    pasted = {}
    for on in (False, True):
        paster = Paster(image, box, SIDE, colour_match=False, stitch=on)
        pasted[on] = crop(paster.paste(animated), box, SIDE)
    before = np.abs(_corners(pasted[False]) - _corners(photo_crop)).mean()
    after = np.abs(_corners(pasted[True]) - _corners(photo_crop)).mean()
    assert before > 8 and after < before / 4, (before, after)
    # the face (middle of the box) is the animated crop's, as without stitching
    middle = slice(SIDE * 3 // 8, SIDE * 5 // 8)
    face_diff = np.abs(pasted[True][middle, middle].astype(float)
                       - pasted[False][middle, middle]).mean()
    moved = np.abs(pasted[True][middle, middle].astype(float) - photo_crop[middle, middle]).mean()
    assert face_diff < 1.0 and moved > 8, (face_diff, moved)


def test_no_ghost_where_the_head_meets_the_still_part(portrait):
    """Between the head and the box's edge the crop is moved back, not blended with the photo:
    one warp of the photo explains the result there (a blend of the photo and its moved copy
    shows edges twice, which no single warp explains)."""
    image, box = portrait
    photo_crop = crop(image, box, SIDE)
    animated = _tilted(photo_crop, degrees=10.0, shift=(14, -8))
    grid = np.stack(np.meshgrid(np.arange(SIDE), np.arange(SIDE)), -1).astype(np.float32)
    grey = cv2.cvtColor(photo_crop, cv2.COLOR_RGB2GRAY)
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def unexplained(stitch: bool) -> float:
        paster = Paster(image, box, SIDE, colour_match=False, stitch=stitch)
        frame = cv2.cvtColor(crop(paster.paste(animated), box, SIDE), cv2.COLOR_RGB2GRAY)
        where = grid + flow.calc(grey, frame, None)  # grey(x) ≈ frame(x + flow)
        back = cv2.remap(frame, where[..., 0], where[..., 1], cv2.INTER_LINEAR)
        lower = slice(SIDE * 2 // 3, SIDE - 4)  # the shoulders
        return float(np.abs(back[lower].astype(float) - grey[lower]).mean())

    plain, stitched = unexplained(False), unexplained(True)
    assert stitched < plain / 2, (plain, stitched)


def test_a_still_crop_pastes_as_without_stitching(portrait):
    image, box = portrait
    photo_crop = crop(image, box, SIDE)
    plain = Paster(image, box, SIDE).paste(photo_crop).astype(float)
    stitched = Paster(image, box, SIDE, stitch=True).paste(photo_crop).astype(float)
    assert np.abs(stitched - plain).mean() < 0.5
    assert np.abs(stitched - plain).max() <= 24


def test_stitch_switch_per_frame_and_off_is_unchanged(portrait):
    image, box = portrait
    animated = _tilted(crop(image, box, SIDE))
    paster = Paster(image, box, SIDE, stitch=True)
    on = paster.paste(animated)
    paster.stitch = False
    np.testing.assert_array_equal(paster.paste(animated), Paster(image, box, SIDE).paste(animated))
    paster.stitch = True
    np.testing.assert_array_equal(paster.paste(animated), on)


def test_stitcher_fields_follow_the_motion_and_spare_the_head(portrait):
    image, box = portrait
    photo_crop = crop(image, box, 512)
    stitcher = Stitcher(photo_crop)
    moved = cv2.warpAffine(photo_crop, np.float32([[1, 0, 16], [0, 1, -8]]), (512, 512),
                           borderMode=cv2.BORDER_REPLICATE)
    shift, distance = stitcher.fields(moved)
    scale = FLOW_SIZE / 512
    corner = shift[: FLOW_SIZE // 8, : FLOW_SIZE // 8].reshape(-1, 2)
    np.testing.assert_allclose(np.median(corner, 0), [16 * scale, -8 * scale], atol=0.5)
    assert not shift[stitcher.head.astype(bool)].any()  # on the head: not moved back
    assert (distance[stitcher.head.astype(bool)] == 0).all()


def test_head_outline_without_a_face_is_the_framing():
    blank = np.full((SIDE, SIDE, 3), 128, np.uint8)
    outline = head_outline(blank)
    centre = (outline.min(0) + outline.max(0)) / 2
    assert abs(centre[0] - SIDE / 2) < 2 and SIDE * 0.4 < centre[1] < SIDE * 0.6
    assert outline.min() >= -0.2 * SIDE and outline.max() <= 1.2 * SIDE


@pytest.mark.parametrize(("options", "expected"), [
    ({}, True),
    ({"animation_region": "pose"}, True),
    ({"animation_region": "expression"}, False),
    ({"animation_region": "lips"}, False),
    ({"expression": False}, False),
])
def test_stitching_with_the_layer_on_regions_that_move_the_head(options, expected):
    from fomm.inference.pipeline import source_target, stitches

    opts = AnimateOptions(progress=False, **options)
    assert stitches(opts) is expected
    target = source_target(astronaut(), 64, opts)
    assert target.paste.__self__.pasters[0].stitch is expected  # type: ignore[attr-defined]
