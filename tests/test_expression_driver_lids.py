"""The driver's eyelids as the expression layer reads them: the lower lid rides on the cheek
(geometry.CHEEK_LID), in Python and in the page's port, and the mesh's cheek groups."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_expression_geometry import sim, synthetic_face

from fomm.expression import geometry as g

STATIC = Path(__file__).resolve().parents[1] / "fomm" / "web" / "static" / "expression"


def face_with_cheeks(
    eye_distance: float = 60.0, angle: float = 0.1
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """The synthetic face with a cheek under each eye (its lower lid's inner points a quarter
    eye distance down the face), and the face's down direction in pixels per eye distance."""
    pts, groups = synthetic_face(eye_distance=eye_distance, angle=angle)
    groups = dict(groups)
    down = eye_distance * np.array([-np.sin(angle), np.cos(angle)])
    parts = [pts]
    for side in ("left", "right"):
        lower = groups[f"{side}_eye_lower"][1:-1]
        start = sum(len(p) for p in parts)
        parts.append(pts[lower] + 0.25 * down)
        groups[f"{side}_cheek"] = np.arange(start, start + len(lower))
    return np.vstack(parts), groups, down


def cheeks_moved(drop: float) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A reference face and a driving frame whose cheeks moved ``drop`` eye distances down the
    face (negative: up, a smile), under a head motion; (driving, reference, groups)."""
    reference, groups, down = face_with_cheeks()
    driving = reference.copy()
    for side in ("left", "right"):
        driving[groups[f"{side}_cheek"]] += drop * down
    return sim(driving, 1.1, 0.15, (6.0, -4.0)), reference, groups


def lower_weight(reference: np.ndarray, groups: dict[str, np.ndarray], side: str) -> np.ndarray:
    """sin(pi t) of the lower lid's inner points between their eye's corners."""
    face = g._face_coords(reference, groups)
    lower = groups[f"{side}_eye_lower"]
    t = (face[lower[1:-1], 0] - face[lower[0], 0]) / (face[lower[-1], 0] - face[lower[0], 0])
    return np.sin(np.pi * t)


@pytest.mark.parametrize("drop", [-0.04, 0.03])
def test_the_lower_lid_moves_with_the_cheek_under_it(drop: float) -> None:
    driving, reference, groups = cheeks_moved(drop)
    off = g.expression_offsets(driving, reference, groups)
    for side in ("left", "right"):
        upper, lower = groups[f"{side}_eye_upper"], groups[f"{side}_eye_lower"]
        np.testing.assert_allclose(off[groups[f"{side}_cheek"]] - [0.0, drop], 0.0, atol=1e-9)
        want = g.CHEEK_LID * drop * lower_weight(reference, groups, side)
        np.testing.assert_allclose(off[lower[1:-1], 1], want, atol=1e-9)
        np.testing.assert_allclose(off[lower[1:-1], 0], 0.0, atol=1e-9)
        np.testing.assert_allclose(off[upper], 0.0, atol=1e-9)  # the upper lid and the corners
    # a smile's rising cheek narrows the eye the layer transfers; an opening jaw's widens it
    eye = g.gap(reference + g.to_pixels(off, reference, groups),
                groups["left_eye_upper"], groups["left_eye_lower"], groups)
    before = g.gap(reference, groups["left_eye_upper"], groups["left_eye_lower"], groups)
    assert (eye - before) / drop > 0.2  # the lid follows a good share of its cheek


def test_without_cheek_groups_the_cheek_moves_no_lid() -> None:
    driving, reference, groups = cheeks_moved(-0.04)
    plain = {k: v for k, v in groups.items() if not k.endswith("_cheek")}
    off = g.expression_offsets(driving, reference, plain)
    for side in ("left", "right"):
        np.testing.assert_allclose(off[groups[f"{side}_eye_lower"]], 0.0, atol=1e-9)


def test_head_motion_alone_moves_no_lid_with_cheeks() -> None:
    reference, groups, _ = face_with_cheeks()
    driving = sim(reference, 0.9, -0.2, (-5.0, 8.0))
    assert np.abs(g.expression_offsets(driving, reference, groups)).max() < 1e-9


SCRIPT = """
import fs from 'node:fs';
const g = await import('file://' + process.env.FOMM_EXPRESSION_JS + '/geometry.js');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const groups = Object.fromEntries(
  Object.entries(input.groups).map(([k, v]) => [k, Int32Array.from(v)]));
const offsets = g.expressionOffsets(
  Float64Array.from(input.driving), Float64Array.from(input.reference), groups);
console.log(JSON.stringify({ offsets: Array.from(offsets), cheekLid: g.CHEEK_LID }));
"""


def test_the_page_moves_the_lower_lid_with_the_cheek_as_python_does() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run the browser modules")
    driving, reference, groups = cheeks_moved(-0.04)
    payload = {"driving": driving.ravel().tolist(), "reference": reference.ravel().tolist(),
               "groups": {k: v.tolist() for k, v in groups.items()}}
    done = subprocess.run([node, "--input-type=module", "-e", SCRIPT], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "FOMM_EXPRESSION_JS": str(STATIC)})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["cheekLid"] == g.CHEEK_LID
    want = g.expression_offsets(driving, reference, groups)
    assert np.abs(want[groups["left_eye_lower"][1:-1], 1]).max() > 0.005  # the cheek moved it
    np.testing.assert_allclose(out["offsets"], want.ravel(), atol=1e-9)


def test_the_mesh_cheeks_lie_under_the_eyes() -> None:
    from test_faces_mesh import mesh_of

    lm = mesh_of("astronaut")
    points = np.asarray(lm.points, dtype=np.float64)
    face = g._face_coords(points, lm.groups)
    for side in ("left", "right"):
        cheek = face[lm.groups[f"{side}_cheek"]]
        lower = face[lm.groups[f"{side}_eye_lower"]]
        assert np.all(np.diff(cheek[:, 0]) > 0)  # image-left to image-right
        below = cheek[:, 1].mean() - lower[1:-1, 1].mean()
        assert 0.1 < below < 0.4, (side, below)  # under the lower lid, above the nostrils
        assert cheek[0, 0] < lower[len(lower) // 2, 0] < cheek[-1, 0]  # across the eye
