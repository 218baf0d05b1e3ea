"""ONNX export: both graphs run in onnxruntime and match torch."""

from __future__ import annotations

import pytest
from tiny import tiny_models

from fomm.checkpoints import save_checkpoint
from fomm.cli.main import main

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install fomm[export])")


def test_export_matches_torch(tmp_path, capsys):
    models, cfg = tiny_models(image_size=64)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, models, cfg)
    main(["export", "-c", str(ckpt), "-o", str(tmp_path / "onnx")])
    out = capsys.readouterr().out
    assert (tmp_path / "onnx" / "kp_detector.onnx").stat().st_size > 1000
    assert (tmp_path / "onnx" / "generator.onnx").stat().st_size > 1000
    diff = float(out.rsplit("difference", 1)[1].split()[0])
    assert diff < 1e-4
