"""Region pose's head motion keeps no own motion of the keypoints on the photo's mouth and jaw:
fomm.expression.ExpressionLayer.head_keep (which keypoints), fomm.models.motion.head_motion's
``kept``, fomm.inference.pipeline.keep_head (the prepared sources get them), and the page's
mirrors (layer.js headKeep, model.js normalizeKp with headKeep) under Node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_expression_geometry import synthetic_face
from test_expression_layer import ScriptedMesh, frame

from fomm.expression import ExpressionLayer, geometry
from fomm.expression.layer import HEAD_KEEP_FACE
from fomm.inference.pipeline import keep_head
from fomm.models import motion
from fomm.models.motion import Keypoints

STATIC = Path(__file__).resolve().parents[1] / "fomm" / "web" / "static"
SIZE = 256


def _layer(angle: float = 0.1) -> tuple[ExpressionLayer, np.ndarray, dict]:
    mesh = ScriptedMesh()
    pts, groups = synthetic_face(eye_distance=60.0, angle=angle, centre=(128.0, 100.0))
    photo = mesh.add(frame(0), pts, groups)
    return ExpressionLayer(photo, mesh=mesh), pts, groups


def _normalised(layer: ExpressionLayer, pts: np.ndarray, groups: dict,
                depths: list[float], across: float = 0.2) -> np.ndarray:
    """Keypoints (K, 2) in [-1, 1] at ``depths`` eye distances down the photo's face."""
    dist, axes = geometry.face_axes(pts, groups)
    origin = np.mean(geometry.eye_centres(pts, groups), axis=0)
    pixels = origin + dist * np.array([[across, d] for d in depths]) @ axes.T
    return pixels / (SIZE - 1) * 2 - 1


def test_keypoints_on_the_mouth_and_jaw_keep_none_of_their_motion():
    layer, pts, groups = _layer()
    dist, axes = geometry.face_axes(pts, groups)
    origin = np.mean(geometry.eye_centres(pts, groups), axis=0)
    lip = ((pts[groups["lips_outer_upper"]] - origin) @ axes[:, 1]).min() / dist  # its top
    assert 0.85 < lip < 0.95
    low, high = HEAD_KEEP_FACE
    depths = [-0.6, 0.0, 0.9 * low * lip, (low + high) / 2 * lip, 1.1 * high * lip, 1.0, 1.5]
    kept = layer.head_keep(_normalised(layer, pts, groups, depths))
    assert kept.dtype == np.float32 and kept.shape == (len(depths),)
    np.testing.assert_allclose(kept[:3], 1.0)  # brows, eyes, nose bridge
    assert kept[3] == pytest.approx(0.5, abs=1e-3)  # half way down the ramp
    np.testing.assert_allclose(kept[4:], 0.0)  # upper lip, mouth, chin


def test_head_motion_keeps_the_own_motion_of_kept_keypoints_only():
    generator = torch.Generator().manual_seed(4)
    value = torch.rand(1, 6, 2, generator=generator) * 1.6 - 0.8
    initial = Keypoints(value, torch.eye(2).expand(1, 6, 2, 2).clone())
    driving = Keypoints(value.clone() + torch.tensor([0.05, -0.02]), initial.jacobian.clone())
    driving.value[0, 1] += torch.tensor([0.0, 0.02])  # small own motions, within HEAD_KEEP
    driving.value[0, 4] += torch.tensor([0.0, 0.02])
    driving.jacobian[0, 4] *= 1.05
    kept = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.5])
    rigid = motion.head_motion(initial, driving, initial, keep=0)
    full = motion.head_motion(initial, driving, initial)
    out = motion.head_motion(initial, driving, initial, kept=kept)
    assert not torch.allclose(full.value[0, 1], rigid.value[0, 1])
    torch.testing.assert_close(out.value[0, 1], full.value[0, 1])
    torch.testing.assert_close(out.value[0, 4], rigid.value[0, 4])  # none of its own motion
    torch.testing.assert_close(out.jacobian[0, 4], rigid.jacobian[0, 4])
    torch.testing.assert_close(out.value[0, 5], (full.value[0, 5] + rigid.value[0, 5]) / 2)
    # through normalize_kp, and batched
    batch = Keypoints(driving.value.expand(3, -1, -1), driving.jacobian.expand(3, -1, -1, -1))
    got, _ = motion.normalize_kp(initial, batch, initial, head_only=True, head_keep=kept)
    torch.testing.assert_close(got.value, out.value.expand(3, -1, -1))


def test_keep_head_sets_the_sources_from_their_layers():
    layer, pts, groups = _layer()
    points = _normalised(layer, pts, groups, [0.0, 1.2])
    source = SimpleNamespace(kp=Keypoints(torch.tensor(points[None], dtype=torch.float32)),
                             head_keep=None)
    keep_head([source], None)
    keep_head([], [layer])  # a region that keeps the photo's head: no sources
    assert source.head_keep is None
    keep_head([source], [layer])
    torch.testing.assert_close(source.head_keep, torch.tensor([1.0, 0.0]))


SCRIPT = """
import fs from 'node:fs';
const L = await import('file://' + process.env.FOMM_WEB + '/expression/layer.js');
const m = await import('file://' + process.env.FOMM_WEB + '/js/model.js');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const layer = Object.create(L.ExpressionLayer.prototype);
layer.photo = { width: input.size, height: input.size };
layer.photoPoints = Float64Array.from(input.points);
layer.groups = Object.fromEntries(
  Object.entries(input.groups).map(([k, v]) => [k, Int32Array.from(v)]));
const kp = (k) => ({ value: Float32Array.from(k.value), jacobian: Float32Array.from(k.jacobian) });
const keep = layer.headKeep(Float32Array.from(input.source.value));
const moved = m.normalizeKp(kp(input.source), kp(input.driving), kp(input.initial), true, false,
  true, keep);
console.log(JSON.stringify({ keep: Array.from(keep), value: Array.from(moved.value),
  jacobian: Array.from(moved.jacobian) }));
"""


def test_the_page_keeps_the_same_keypoints_as_python():
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run the browser modules")
    layer, pts, groups = _layer(angle=-0.15)
    depths = list(np.linspace(-0.8, 1.6, 10))
    source_points = _normalised(layer, pts, groups, depths, across=0.1)
    generator = torch.Generator().manual_seed(5)
    source = Keypoints(torch.tensor(source_points[None], dtype=torch.float32),
                       torch.eye(2) + 0.1 * torch.randn(1, 10, 2, 2, generator=generator))
    initial = Keypoints(source.value + 0.02, source.jacobian.clone())
    driving = Keypoints(initial.value + 0.01 * torch.randn(1, 10, 2, generator=generator)
                        + torch.tensor([0.03, 0.01]), initial.jacobian * 1.02)

    def plain(k: Keypoints) -> dict:
        return {"value": k.value.flatten().tolist(), "jacobian": k.jacobian.flatten().tolist()}

    payload = {"size": SIZE, "points": pts.reshape(-1).tolist(),
               "groups": {k: v.tolist() for k, v in groups.items()},
               "source": plain(source), "initial": plain(initial), "driving": plain(driving)}
    done = subprocess.run([node, "--input-type=module", "-e", SCRIPT], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "FOMM_WEB": str(STATIC)})
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    keep = layer.head_keep(source_points)
    assert keep.max() == 1 and keep.min() == 0 and ((keep > 0) & (keep < 1)).any()
    assert got["keep"] == pytest.approx(keep.tolist(), abs=1e-6)
    want, _ = motion.normalize_kp(source, driving, initial, head_only=True,
                                  head_keep=torch.from_numpy(keep))
    assert got["value"] == pytest.approx(want.value.flatten().tolist(), abs=1e-5)
    assert got["jacobian"] == pytest.approx(want.jacobian.flatten().tolist(), abs=1e-5)


DRAW = """
const p = await import('file://' + process.env.FOMM_WEB + '/js/pipeline.js');
const m = await import('file://' + process.env.FOMM_WEB + '/js/model.js');
const kp = (s) => ({
  value: Float32Array.from({ length: 20 }, (_, i) => 0.5 * Math.sin(i + s)),
  jacobian: Float32Array.from({ length: 40 }, (_, i) => (i % 4 === 0 || i % 4 === 3 ? 1 : 0)
    + 0.01 * Math.cos(i + s)),
});
const keep = Float32Array.from({ length: 10 }, (_, k) => (k < 5 ? 1 : 0));
const animator = new p.FaceAnimator({}, {}, { width: 8, height: 8 });
animator.source = { kp: kp(0) };
animator.networks = { generate: async (source, k) => k };
let asked = null;
const pose = { kp: kp(0.01), reference: kp(0.02) };
const out = {};
for (const region of ['pose', 'all']) {
  animator.layer = { options: { region }, headKeep: (v) => { asked = v; return keep; } };
  out[region] = Array.from((await animator.draw(pose)).value);
}
const want = (headOnly, k) => Array.from(m.normalizeKp(animator.source.kp, pose.kp, pose.reference,
  true, false, headOnly, k).value);
console.log(JSON.stringify({ asked: asked === animator.source.kp.value, out,
  pose: want(true, keep), plain: want(true, null), all: want(false, null) }));
"""


def test_the_page_draws_region_pose_with_the_layers_head_keep():
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run the browser modules")
    done = subprocess.run([node, "--input-type=module", "-e", DRAW], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "FOMM_WEB": str(STATIC)})
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["asked"]  # the layer was asked about the source's keypoints
    assert got["out"]["pose"] == got["pose"]
    assert got["pose"] != got["plain"]  # the kept factors matter here
    assert got["out"]["all"] == got["all"]
