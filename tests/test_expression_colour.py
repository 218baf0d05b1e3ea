"""The colour of drawn-in mouth interiors (fomm/expression/colour.py, mouth.fill_mouth): the
driver's teeth and tongue take the photo's chroma, in Python and in the page's port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_expression_geometry import synthetic_face

from fomm.expression import colour, mouth

STATIC = Path(__file__).resolve().parents[1] / "fomm" / "web" / "static" / "expression"


def _lips(image: np.ndarray, pts: np.ndarray, groups, lips, inside) -> np.ndarray:
    """``image`` with the lips of ``pts`` in ``lips`` and their inside in ``inside``."""
    outer = np.concatenate([groups["lips_outer_upper"], groups["lips_outer_lower"][::-1]])
    cv2.fillPoly(image, [np.round(pts[outer]).astype(np.int32)], lips)
    cv2.fillPoly(image, [np.round(mouth.inner_contour(pts, groups)).astype(np.int32)], inside)
    return image


@pytest.fixture(scope="module")
def scene():
    """A closed-mouthed photo's landmarks, the target opening it, and a warm driver whose open
    mouth shows white teeth over a red tongue."""
    pts, groups = synthetic_face(eye_distance=60.0, mouth_gap=0.02)
    target = pts.copy()
    for name in ("lips_inner_lower", "lips_outer_lower"):
        target[groups[name][1:-1], 1] += 12.0
    driver = np.empty((256, 256, 3), np.uint8)
    driver[:] = (205, 160, 135)  # skin
    _lips(driver, target, groups, (200, 110, 120), (235, 228, 215))  # pink lips, teeth
    poly = mouth.inner_contour(target, groups)
    low = poly[:, 1] > poly[:, 1].mean()
    tongue = poly.copy()
    tongue[~low, 1] = poly[:, 1].mean() + 2.0
    cv2.fillPoly(driver, [np.round(tongue).astype(np.int32)], (190, 60, 70))  # a red tongue
    inside = np.zeros((256, 256), np.uint8)
    cv2.fillPoly(inside, [np.round(poly).astype(np.int32)], 1)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0  # well inside the fill
    return pts, groups, target, driver, inside


def _chroma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ colour.CHROMA.T


def test_a_grey_photos_mouth_is_filled_grey(scene):
    pts, groups, target, driver, inside = scene
    rng = np.random.default_rng(2)
    grey = np.repeat(rng.integers(100, 190, (256, 256, 1), dtype=np.uint8), 3, axis=2)
    photo = _lips(grey.copy(), pts, groups, (120, 120, 120), (120, 120, 120))
    frame = _lips(grey.copy(), target, groups, (120, 120, 120), (120, 120, 120))
    out = mouth.fill_mouth(frame, target, groups, driver, target, 1.0, 60.0)
    assert np.abs(out[inside].astype(int) - frame[inside]).mean() > 20  # filled: teeth, tongue
    assert np.abs(_chroma(out[inside])).max() <= 1.0  # grey, as the photo (rounding only)
    # a result whose networks tinted the grey photo's lips pink: the photo's own chroma counts
    pink = frame.copy()
    pink[..., 0] = np.clip(pink[..., 0].astype(int) + 25, 0, 255)
    out = mouth.fill_mouth(pink, target, groups, driver, target, 1.0, 60.0, tint=(photo, pts))
    core = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # past the feather
    assert np.abs(_chroma(out[core])).max() <= 2.0
    # the eye's helpers are the same ones (moved, not changed): a grey image's stats are zero
    assert np.abs(colour.chroma_stats(grey)).max() < 1e-9


def test_a_colour_photos_mouth_takes_the_photos_tint_not_the_drivers(scene):
    pts, groups, target, driver, inside = scene
    frame = _lips(np.full((256, 256, 3), (200, 165, 150), np.uint8), target, groups,
                  (190, 120, 125), (190, 120, 125))
    filled = {}
    for name, skin, lips in (("warm", (215, 160, 130), (215, 90, 100)),
                             ("cool", (150, 165, 200), (140, 120, 190))):
        photo = _lips(np.full((256, 256, 3), skin, np.uint8), pts, groups, lips, lips)
        out = mouth.fill_mouth(frame, target, groups, driver, target, 1.0, 60.0,
                               tint=(photo, pts))
        filled[name] = _chroma(out[inside]).mean(0)
        # the fill's chroma lies nearer the photo's mouth than the driver's
        here = mouth._mouth_chroma(photo, pts, groups)[0]
        there = mouth._mouth_chroma(driver, target, groups)[0]
        assert np.linalg.norm(filled[name] - here) < np.linalg.norm(filled[name] - there)
    cb, cr = filled["cool"] - filled["warm"]
    assert cb > 10 and cr < -10  # bluer and less red on the cool photo; its luma the same
    # without a photo the frame's own lips give the tint; the driver's teeth stay lighter
    out = mouth.fill_mouth(frame, target, groups, driver, target, 1.0, 60.0)
    teeth = inside & (np.arange(256)[:, None] < mouth.inner_contour(target, groups)[:, 1].mean())
    assert out[teeth].astype(int).sum(1).mean() > out[inside & ~teeth].astype(int).sum(1).mean()


SCRIPT = """
import fs from 'node:fs';
const dir = 'file://' + process.env.FOMM_EXPRESSION_JS;
const mouth = await import(dir + '/mouth.js');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const groups = Object.fromEntries(
  Object.entries(input.groups).map(([k, v]) => [k, Int32Array.from(v)]));
const image = (a) => ({ width: 256, height: 256, data: Uint8ClampedArray.from(a) });
const F = (a) => Float64Array.from(a);
const out = {};
for (const name of ['own', 'photo']) {
  const tint = name === 'photo' ? [image(input.photo), F(input.pts)] : null;
  const got = mouth.fillMouth(image(input.frame), F(input.target), groups, image(input.driver),
    F(input.target), 0.9, 60, input.share, tint);
  out[name] = Array.from(got.data);
}
console.log(JSON.stringify(out));
"""


def test_the_page_fills_the_mouth_as_python_does(scene):
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run the browser modules")
    pts, groups, target, driver, inside = scene
    driver = cv2.GaussianBlur(driver, (0, 0), 3.0)  # no hard edges for a sub-pixel to flip
    core = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # past the feather
    rng = np.random.default_rng(5)
    skin = np.clip(np.array([190, 150, 125]) + rng.normal(0, 20, (256, 256, 3)), 0, 255)
    photo = _lips(skin.astype(np.uint8), pts, groups, (180, 90, 100), (180, 90, 100))
    frame = _lips(np.roll(photo, 1, axis=1), target, groups, (170, 100, 105), (170, 100, 105))
    photo = np.ascontiguousarray(photo[..., ::-1])  # a photo bluer than the frame
    rgba = lambda im: np.dstack([im, np.full(im.shape[:2], 255, np.uint8)]).reshape(-1).tolist()  # noqa: E731
    payload = {"groups": {k: v.tolist() for k, v in groups.items()}, "share": 0.8,
               "photo": rgba(photo), "frame": rgba(frame), "driver": rgba(driver),
               "pts": pts.reshape(-1).tolist(), "target": target.reshape(-1).tolist()}
    done = subprocess.run([node, "--input-type=module", "-e", SCRIPT],
                          input=json.dumps(payload), capture_output=True, text=True, timeout=60,
                          check=False, env={**os.environ, "FOMM_EXPRESSION_JS": str(STATIC)})
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    wants = {}
    for name, tint in (("own", None), ("photo", (photo, pts))):
        want = mouth.fill_mouth(frame, target, groups, driver, target, 0.9, 60.0, 0.8, tint=tint)
        page = np.reshape(got[name], (256, 256, 4))[..., :3].astype(int)
        assert np.abs(page[core] - want[core]).max() <= 2, name
        wants[name] = want[core].astype(int)
    assert np.abs(wants["own"] - wants["photo"]).max() > 10  # the two tints differ
