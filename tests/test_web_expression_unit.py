"""The browser's expression layer (fomm/web/static/expression/*.js) against the Python layer, piece
by piece, under Node: the geometry on synthetic landmarks, the eyelid and spline steps, and the
image operations against the OpenCV calls they mirror. Skipped when no ``node`` is installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_expression_geometry import sim, synthetic_face

from fomm.expression import eyes, geometry, warp

STATIC = Path(__file__).resolve().parents[1] / "fomm" / "web" / "static" / "expression"

# Runs each named call on the inputs and prints the results as JSON.
SCRIPT = """
import fs from 'node:fs';
const dir = 'file://' + process.env.FOMM_EXPRESSION_JS;
const g = await import(dir + '/geometry.js');
const eyes = await import(dir + '/eyes.js');
const warp = await import(dir + '/warp.js');
const im = await import(dir + '/imaging.js');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const groups = Object.fromEntries(
  Object.entries(input.groups).map(([k, v]) => [k, Int32Array.from(v)]));
const F = (a) => Float64Array.from(a);
const L = (a) => Array.from(a);
const { photo, driving, reference, result } = Object.fromEntries(
  ['photo', 'driving', 'reference', 'result'].map((k) => [k, F(input[k])]));
const out = {};
out.similarity = g.similarity(reference, driving);
out.offsets = L(g.expressionOffsets(driving, reference, groups));
out.sliders = L(g.sliderOffsets(photo, groups, 0.7, -0.4, 0.8));
out.slidersShut = L(g.sliderOffsets(photo, groups, -1, 1, -1));
out.toPixels = L(g.toPixels(out.offsets, photo, groups));
out.clamp = L(g.clamp(F(input.crossed), groups, photo));
out.gap = g.gap(driving, groups.lips_inner_upper, groups.lips_inner_lower, groups);
out.lips = L(g.regionMask(groups, photo.length / 2, 'lips'));
out.keptOpen = L(eyes.keptOpen(result, F(input.closing), groups));
out.shut = L(eyes.shut(F(input.closing), groups));
out.withoutPose = L(g.withoutPose(F(out.offsets), photo, groups));
out.opening = L(eyes.opening(F(input.squint), groups, driving, reference));
out.thinPlate = L(warp.thinPlate(F(input.centres), F(input.values), F(input.at), 1e-5));
out.outline = L(warp.expandedOutline(F(input.outline)));
const image = { width: 40, height: 30, data: Uint8ClampedArray.from(input.image) };
out.area = L(im.resizeArea(image, 17, 11).data);
out.blur = L(im.gaussianBlur(Float32Array.from(input.plane), 40, 30, 1.7));
out.distance = L(im.distanceTransform(Uint8Array.from(input.mask), 40, 30));
const map = Float32Array.from(input.map);
const cubic = { width: 40, height: 30, data: new Uint8ClampedArray(40 * 30 * 4) };
im.remapCubic(image, [0, 0, 40, 30], map, cubic);
out.cubic = L(cubic.data);
out.linear = L(im.resizeLinear(Float32Array.from(input.field), 7, 5, 2, 40, 30));
console.log(JSON.stringify(out));
"""


def run_node(payload: dict) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run the browser modules")
    done = subprocess.run([node, "--input-type=module", "-e", SCRIPT],
                          input=json.dumps(payload), capture_output=True, text=True, timeout=60,
                          check=False, env={**os.environ, "FOMM_EXPRESSION_JS": str(STATIC)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def faces():
    photo, groups = synthetic_face(eye_distance=70.0, angle=0.1, centre=(130.0, 120.0))
    reference, _ = synthetic_face(eye_distance=50.0, angle=-0.05, centre=(100.0, 90.0))
    driving = sim(reference, 1.1, 0.15, (6.0, -4.0))
    driving[groups["lips_inner_lower"][1:-1], 1] += 6.0  # the driver opens the mouth
    driving[groups["left_eye_upper"][1:-1], 1] += 2.0  # and half closes an eye
    result = sim(photo, 0.95, -0.1, (3.0, 2.0))
    crossed = photo.copy()
    crossed[groups["left_eye_upper"][1:-1], 1] += 30.0  # lids crossing, lips crossing
    crossed[groups["lips_inner_lower"][1:-1], 1] -= 25.0
    squint = photo.copy()
    squint[groups["left_eye_upper"][1:-1], 1] += 3.0  # a photo with narrowed eyes
    closing = result.copy()
    closing[groups["right_eye_upper"][1:-1], 1] += 4.0
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    image[..., 3] = 255
    mask = np.zeros((30, 40), np.uint8)
    cv2.fillPoly(mask, [np.array([[5, 3], [34, 6], [30, 27], [8, 22]], np.int32)], 1)
    yy, xx = np.mgrid[0:30, 0:40].astype(np.float32)
    map_ = np.stack([xx + 2.3 * np.sin(yy / 5), yy + 1.7 * np.cos(xx / 7) - 0.4], -1)
    return {
        "groups": {k: v.tolist() for k, v in groups.items()},
        "photo": photo, "driving": driving, "reference": reference, "result": result,
        "crossed": crossed, "closing": closing, "squint": squint, "g": groups,
        "centres": rng.random((30, 2)), "values": rng.normal(size=(30, 2)),
        "at": rng.random((50, 2)) * 1.2 - 0.1, "outline": rng.random((25, 2)) * 100,
        "image": image, "plane": rng.random((30, 40)).astype(np.float32), "mask": mask,
        "map": map_.astype(np.float32), "field": rng.normal(size=(5, 7, 2)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def js(faces):
    payload = {k: (v.reshape(-1).tolist() if isinstance(v, np.ndarray) else v)
               for k, v in faces.items() if k != "g"}
    return run_node(payload)


def flat(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64).reshape(-1)


def close(got: list, want: np.ndarray, atol: float = 1e-9) -> None:
    np.testing.assert_allclose(got, flat(want), atol=atol)


def test_geometry_matches_python(faces, js):
    g = faces["g"]
    photo, driving, reference = faces["photo"], faces["driving"], faces["reference"]
    close(js["similarity"], geometry.similarity(reference, driving))
    offsets = geometry.expression_offsets(driving, reference, g)
    close(js["offsets"], offsets)
    close(js["sliders"], geometry.slider_offsets(photo, g, 0.7, -0.4, 0.8))
    close(js["slidersShut"], geometry.slider_offsets(photo, g, -1, 1, -1))
    close(js["toPixels"], geometry.to_pixels(offsets, photo, g))
    close(js["clamp"], geometry.clamp(faces["crossed"], g, like=photo))
    close(js["withoutPose"], geometry.without_pose(offsets, photo, g))
    assert js["gap"] == pytest.approx(geometry.gap(driving, g["lips_inner_upper"],
                                                   g["lips_inner_lower"], g), abs=1e-12)
    np.testing.assert_array_equal(js["lips"], geometry.region_mask(g, len(photo), "lips"))


def test_the_driver_expression_is_what_is_left_after_the_head_motion(faces, js):
    g = faces["g"]
    offsets = np.reshape(js["offsets"], (-1, 2))
    moved = np.ones(len(offsets), bool)
    moved[g["lips_inner_lower"][1:-1]] = moved[g["left_eye_upper"][1:-1]] = False
    assert np.abs(offsets[moved]).max() < 1e-9  # the head's motion is taken out
    # 6 px on a 50 px eye distance, in the reference's axes: about 0.12 down the face
    lower = offsets[g["lips_inner_lower"][1:-1]]
    assert np.all(lower[:, 1] > 0.1) and np.all(lower[:, 1] < 0.13)


def test_eyelids_match_python(faces, js):
    g = faces["g"]
    result, closing = faces["result"], faces["closing"]
    close(js["keptOpen"], eyes.kept_open(result, closing, g))
    close(js["shut"], eyes.shut(closing, g))
    opened = eyes.opening(faces["squint"], g, faces["driving"], faces["reference"])
    assert np.abs(opened).max() > 1e-3  # the narrowed eye opens
    close(js["opening"], opened)


def test_spline_and_outline_match_python(faces, js):
    from scipy.interpolate import RBFInterpolator

    got = np.reshape(js["thinPlate"], (-1, 2))
    # the same spline as scipy's, in float64 (Python evaluates it in float32)
    exact = RBFInterpolator(faces["centres"], faces["values"], kernel="thin_plate_spline",
                            smoothing=1e-5)(faces["at"])
    np.testing.assert_allclose(got, exact, atol=1e-6)
    want = warp.thin_plate(faces["centres"], faces["values"], faces["at"], 1e-5)
    np.testing.assert_allclose(got, want, atol=3e-3)
    outline = warp.expanded_outline(faces["outline"])
    np.testing.assert_allclose(np.reshape(js["outline"], (-1, 2)), outline, atol=1e-4)


def test_image_operations_match_opencv(faces, js):
    image = faces["image"]
    area = cv2.resize(image[..., :3], (17, 11), interpolation=cv2.INTER_AREA)
    got = np.reshape(js["area"], (11, 17, 4))[..., :3]
    assert np.abs(got.astype(int) - area).max() <= 1
    blur = cv2.GaussianBlur(faces["plane"], (0, 0), 1.7)
    np.testing.assert_allclose(np.reshape(js["blur"], (30, 40)), blur, atol=1e-5)
    distance = cv2.distanceTransform(faces["mask"], cv2.DIST_L2, 3)
    np.testing.assert_allclose(np.reshape(js["distance"], (30, 40)), distance, atol=1e-3)
    map1, map2 = cv2.convertMaps(faces["map"], None, cv2.CV_16SC2)
    cubic = cv2.remap(image[..., :3], map1, map2, cv2.INTER_CUBIC,
                      borderMode=cv2.BORDER_REFLECT101)
    got = np.reshape(js["cubic"], (30, 40, 4))[..., :3].astype(int)
    assert np.abs(got - cubic).max() <= 1
    linear = cv2.resize(faces["field"], (40, 30), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(np.reshape(js["linear"], (30, 40, 2)), linear, atol=1e-5)
