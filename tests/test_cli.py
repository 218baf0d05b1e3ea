"""Command-line rough edges: lazy imports, errors before torch, spellings, `demo -o`, names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from media import astronaut, save, talking_clip

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "onnx", "onnxruntime", "fastapi", "cv2", "fomm.cli.train", "fomm.runtime.export"]


def _python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_build_parser_imports_no_heavy_module() -> None:
    out = _python(
        "import json, sys\nfrom fomm.cli.main import build_parser\nbuild_parser()\n"
        f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))")
    assert not any(out.values()), out


def _error_before_torch(argv: list[str]) -> dict:
    return _python(
        "import contextlib, io, json, sys\nfrom fomm.cli.main import main\nerr = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit as exc:\n"
        "        code = exc.code\n"
        "print(json.dumps({'code': code, 'err': err.getvalue(), "
        "'torch': 'torch' in sys.modules}))")


def test_missing_file_fails_before_torch_is_imported(tmp_path: Path) -> None:
    out = _error_before_torch(["animate", str(tmp_path / "nope.jpg"), str(talking_clip())])
    assert out["code"] == 2 and not out["torch"]
    assert out["err"].startswith("error: ") and "nope.jpg: source image not found" in out["err"]


def test_swapped_photo_and_video_fail_before_torch(tmp_path: Path) -> None:
    photo = save(tmp_path / "photo.png", astronaut())
    out = _error_before_torch(["animate", str(talking_clip()), str(photo)])
    assert out["code"] == 2 and not out["torch"] and "swapped" in out["err"]
    out = _error_before_torch(["animate", str(photo), str(photo)])
    assert "still image, not a video" in out["err"] and not out["torch"]


def test_unknown_checkpoint_says_where_to_get_it_before_torch(tmp_path: Path) -> None:
    photo = save(tmp_path / "photo.png", astronaut())
    out = _error_before_torch(["animate", str(photo), str(talking_clip()),
                               "-c", "vox-cpk.pth.tar"])
    assert out["code"] == 2 and not out["torch"]
    assert "drive.google.com" in out["err"] and "yadi.sk" in out["err"]
    out = _error_before_torch(["animate", str(photo), str(talking_clip()),
                               "-c", "vox-cpk.pdparams"])
    assert "fomm weights download vox-cpk.pdparams" in out["err"] and not out["torch"]


def _animate_flags() -> list[str]:
    from fomm.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted({s for a in sub.choices["animate"]._actions for s in a.option_strings
                   if s.startswith("--") and "-" in s[2:]})


@pytest.mark.parametrize("flag", _animate_flags())
def test_underscore_spelling_suggests_our_flag(flag: str, capsys) -> None:
    from fomm.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["animate", "photo.jpg", "clip.mp4", "--" + flag[2:].replace("-", "_")])
    assert exc.value.code == 2
    assert f"did you mean {flag}?" in capsys.readouterr().err


def test_every_subcommand_is_listed_and_loads_on_demand(capsys) -> None:
    from fomm.cli.main import LAZY_COMMANDS, build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    listing = capsys.readouterr().out
    assert all(name in listing for name in LAZY_COMMANDS)
    for name in LAZY_COMMANDS:  # each real parser replaces its placeholder
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([name, "--help"])
        assert exc.value.code == 0
        assert f"usage: fomm {name}" in capsys.readouterr().out


def test_demo_accepts_dash_o() -> None:
    from fomm.cli.main import build_parser

    assert build_parser().parse_args(["demo", "-o", "out/x"]).output_dir == "out/x"
    assert build_parser().parse_args(["demo", "--output-dir", "y"]).output_dir == "y"


def test_info_accepts_the_bundled_model_name(capsys) -> None:
    from fomm.checkpoints.loading import bundled_model_path
    from fomm.cli.main import main

    if bundled_model_path() is None:
        pytest.skip("no bundled model in this install")
    main(["info", "fomm-face-256"])
    assert "fomm-face-256.safetensors" in capsys.readouterr().out


def _seed(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "tools" / "first-order-demo.py"),
           "--driving_video", str(tmp_path / "missing.mp4"),
           "--source_image", str(tmp_path / "missing.png"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)


def test_seed_command_notes_only_options_that_were_given(tmp_path: Path) -> None:
    quiet = _seed(tmp_path)
    assert "--face_detector" not in quiet.stderr
    assert "fomm weights download vox-cpk.pdparams" in quiet.stderr  # how to get PaddleGAN's
    told = _seed(tmp_path, "--face_detector", "sfd")
    assert "note: --face_detector sfd" in told.stderr


def test_seed_command_removes_the_demos_stale_side_by_side(tmp_path: Path, tiny_ckpt) -> None:
    out = tmp_path / "output"
    out.mkdir()
    (out / "result_side_by_side.mp4").write_bytes(b"an earlier demo's video")
    photo = save(tmp_path / "photo.png", astronaut())
    cmd = [sys.executable, str(ROOT / "tools" / "first-order-demo.py"),
           "--driving_video", str(talking_clip()), "--source_image", str(photo),
           "--relative", "--weight_path", str(tiny_ckpt), "--max_frames", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "result.mp4").is_file() and not (out / "result_side_by_side.mp4").exists()
