"""Checkpoint formats: detection by content, safe loading, strict shapes, convert, info."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import tiny_models

from fomm.checkpoints import detect_format, load_checkpoint, save_checkpoint
from fomm.checkpoints.original import write_original
from fomm.cli.main import main
from fomm.errors import CheckpointError


def _outputs(models, seed=1):
    torch.manual_seed(seed)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        kp = models.kp_detector(x)
        return kp.value, models.generator(x[:1].expand(2, -1, -1, -1), kp,
                                          models.kp_detector(x[:1]).expand(2)).prediction


def test_native_round_trip_identical(tmp_path):
    models, cfg = tiny_models()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, models, cfg)
    assert detect_format(path) == "native"
    loaded, cfg2, _ = load_checkpoint(path)  # config comes from the file itself
    assert cfg2 == cfg
    for a, b in zip(_outputs(models), _outputs(loaded)):
        assert torch.equal(a, b)


def test_saved_checkpoints_get_normal_permissions(tmp_path):
    """mkstemp and safetensors create 0600 files; a saved model must be readable like any file."""
    models, cfg = tiny_models()
    umask = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "m.safetensors", models, cfg)
        write_original(tmp_path / "m.pth.tar", {"kp_detector": models.kp_detector.state_dict(),
                                                 "generator": models.generator.state_dict()})
    finally:
        os.umask(umask)
    for name in ("m.safetensors", "m.pth.tar"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_original_layout_round_trip_and_suffix_ignored(tmp_path):
    models, cfg = tiny_models()
    path = tmp_path / "weights.safetensors"  # wrong suffix on purpose: content decides
    write_original(path, {"generator": models.generator.state_dict(),
                          "kp_detector": models.kp_detector.state_dict(), "epoch": 3})
    assert detect_format(path) == "original"
    loaded, _, ckpt = load_checkpoint(path, config=cfg)
    assert ckpt.extra["epoch"] == 3
    for a, b in zip(_outputs(models), _outputs(loaded)):
        assert torch.equal(a, b)


def test_shape_mismatch_names_parameter_and_shapes(tmp_path):
    models, cfg = tiny_models()
    path = tmp_path / "m.pth.tar"
    write_original(path, {"generator": models.generator.state_dict(),
                          "kp_detector": models.kp_detector.state_dict()})
    with pytest.raises(CheckpointError, match=r"m\.pth\.tar: kp_detector\..* is \(.*\), config "
                                              r"expects \(.*\)"):
        load_checkpoint(path, config="vox-256")


def test_missing_network_and_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.pth.tar"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="no 'generator' state dict"):
        load_checkpoint(path, config="vox-256")
    text = tmp_path / "notes.pth.tar"
    text.write_text("hello, I am not a checkpoint\n")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_checkpoint(text)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_checkpoint(empty)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth.tar")


def test_truncated_checkpoint(tmp_path):
    models, cfg = tiny_models()
    path = tmp_path / "m.pth.tar"
    write_original(path, {"generator": models.generator.state_dict(),
                          "kp_detector": models.kp_detector.state_dict()})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path, config=cfg)
    native = tmp_path / "m.safetensors"
    save_checkpoint(native, models, cfg)
    native.write_bytes(native.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        load_checkpoint(native)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('FOMM_EVIL_MARKER', '/tmp/evil')}",))


def test_malicious_pickles_are_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("FOMM_EVIL_MARKER", str(marker))
    zipped = tmp_path / "evil.pth.tar"
    torch.save({"generator": _Evil(), "kp_detector": {}}, zipped)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(zipped, config="vox-256")
    raw = tmp_path / "evil.pdparams"
    raw.write_bytes(pickle.dumps({"generator": _Evil()}, protocol=4))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(raw, config="vox-256")
    assert not marker.exists()


def test_config_inferred_for_fixture_shapes_fails_clearly(original_fixture):
    """An official checkpoint of a shrunk model: no preset matches, so the config is asked for."""
    with pytest.raises(CheckpointError, match="--config"):
        load_checkpoint(original_fixture.checkpoint)


def test_convert_and_info_cli(tmp_path, capsys):
    models, cfg = tiny_models()
    src = tmp_path / "m.safetensors"
    save_checkpoint(src, models, cfg)
    half = tmp_path / "half.safetensors"
    main(["convert", str(src), str(half), "--fp16"])
    assert half.stat().st_size < src.stat().st_size * 0.7
    back = tmp_path / "back.pth.tar"
    main(["convert", str(half), str(back)])
    assert detect_format(back) == "original"
    loaded, _, _ = load_checkpoint(back, config=cfg)
    a, b = _outputs(models)[1], _outputs(loaded)[1]
    assert (a - b).abs().max() < 2e-2  # fp16 rounding only
    capsys.readouterr()
    main(["info", str(src)])
    out = capsys.readouterr().out
    assert "parameters" in out and "native" in out and "kp_detector" in out


def test_cli_bad_checkpoint_exits_2(tmp_path):
    bad = tmp_path / "bad.pth.tar"
    bad.write_text("garbage")
    proc = subprocess.run([sys.executable, "-m", "fomm", "info", str(bad)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_resolve_paths_bundled_names_and_presets(tmp_path):
    from fomm.checkpoints import DEFAULT_MODEL, bundled_model_path, resolve

    path = tmp_path / "any.safetensors"
    path.write_bytes(b"x")
    assert resolve(path) == (path, None)  # a path is taken as it is
    bundled = bundled_model_path()
    if bundled is not None:
        assert resolve(None) == (bundled, None) == resolve(DEFAULT_MODEL)
    with pytest.raises(CheckpointError, match="is a config preset, not weights.*--config vox-256"):
        resolve("vox-256")
    with pytest.raises(CheckpointError, match="checkpoint not found; official checkpoints"):
        resolve(str(tmp_path / "missing.pth.tar"))
