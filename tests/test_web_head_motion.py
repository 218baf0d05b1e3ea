"""The browser's head-only motion (fomm/web/static/js/model.js: headTransform, normalizeKp with
``headOnly``) against fomm.models.motion under Node. Skipped when no ``node`` is installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from fomm.models import motion
from fomm.models.motion import Keypoints

JS = Path(__file__).resolve().parents[1] / "fomm" / "web" / "static" / "js"

SCRIPT = """
import fs from 'node:fs';
const m = await import('file://' + process.env.FOMM_WEB_JS + '/model.js');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const kp = (k) => ({ value: Float32Array.from(k.value), jacobian: Float32Array.from(k.jacobian) });
const out = input.frames.map((f) => {
  const got = m.normalizeKp(kp(input.source), kp(f), kp(input.initial), f.relative, f.adapt, true);
  return { fit: m.headTransform(Float32Array.from(input.initial.value), Float32Array.from(f.value)),
    value: Array.from(got.value), jacobian: Array.from(got.jacobian) };
});
console.log(JSON.stringify(out));
"""


def _keypoints(seed: int) -> Keypoints:
    generator = torch.Generator().manual_seed(seed)
    value = torch.rand(1, 10, 2, generator=generator) * 1.6 - 0.8
    jacobian = torch.eye(2) + 0.2 * torch.randn(1, 10, 2, 2, generator=generator)
    return Keypoints(value, jacobian)


def _plain(kp: Keypoints) -> dict:
    return {"value": kp.value.flatten().tolist(), "jacobian": kp.jacobian.flatten().tolist()}


def test_the_page_moves_the_head_as_python_does():
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run the browser modules")
    source, initial = _keypoints(1), _keypoints(2)
    generator = torch.Generator().manual_seed(3)
    frames = []
    for i in range(6):  # turned, scaled and moved, with noise and a moving mouth
        angle, scale = 0.05 * i, 1 + 0.03 * i
        linear = scale * torch.tensor([[torch.cos(torch.tensor(angle)), -torch.sin(
            torch.tensor(angle))], [torch.sin(torch.tensor(angle)), torch.cos(torch.tensor(
                angle))]])
        value = initial.value @ linear.T + torch.tensor([0.01 * i, -0.02 * i])
        value = value + 0.004 * torch.randn(value.shape, generator=generator)
        value[0, [4, 5]] += torch.tensor([0.0, 0.02 * i])
        frames.append((Keypoints(value, initial.jacobian + 0.05 * i), i % 3 != 2, i % 2 == 1))
    payload = {"source": _plain(source), "initial": _plain(initial),
               "frames": [{**_plain(k), "relative": rel, "adapt": adapt}
                          for k, rel, adapt in frames]}
    done = subprocess.run([node, "--input-type=module", "-e", SCRIPT], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "FOMM_WEB_JS": str(JS)})
    assert done.returncode == 0, done.stderr
    for got, (driving, relative, adapt) in zip(json.loads(done.stdout), frames, strict=True):
        fit = motion.head_transform(initial.value, driving.value)[0]
        a, b = fit[0, 0].item(), fit[1, 0].item()
        assert got["fit"] == pytest.approx([a, b, fit[0, 2].item(), fit[1, 2].item()], abs=1e-6)
        want, _ = motion.normalize_kp(source, driving, initial, relative=relative,
                                      adapt_scale=adapt, head_only=True)
        assert got["value"] == pytest.approx(want.value.flatten().tolist(), abs=1e-5)
        assert got["jacobian"] == pytest.approx(want.jacobian.flatten().tolist(), abs=1e-5)
