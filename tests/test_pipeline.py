"""End to end: `fomm animate`, the Python API and the seed's command on generated and real media."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_clip
from media import astronaut, save, talking_clip, talking_clip_with_audio
from PIL import Image

from fomm.cli.main import main
from fomm.config import AnimateOptions
from fomm.errors import FommError, NoFaceError
from fomm.inference.animator import Animator
from fomm.inference.pipeline import animate_file
from fomm.media.video import iter_frames, probe

ROOT = Path(__file__).resolve().parents[1]


def moving_square_frames(n: int, size: int = 64) -> list[np.ndarray]:
    frames = []
    for t in range(n):
        f = np.full((size, size, 3), 40, np.uint8)
        x = 8 + 3 * t
        f[20:40, x:x + 16] = (220, 180, 60)
        frames.append(f)
    return frames


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    source = folder / "source.png"
    Image.fromarray(moving_square_frames(1, 96)[0]).save(source)
    clip = write_clip(folder / "drive.mp4", frames=moving_square_frames(12), fps=30, audio=True)
    silent = write_clip(folder / "silent.mp4", frames=moving_square_frames(7), fps=25)
    return {"source": source, "clip": clip, "silent": silent}


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fomm", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_animate_cli_video_with_audio(tmp_path, tiny_ckpt, media):
    out = tmp_path / "res" / "result.mp4"
    main(["animate", str(media["source"]), str(media["clip"]), "-o", str(out), "--no-crop",
          "--checkpoint", str(tiny_ckpt), "--batch-size", "5", "-q"])
    info = probe(out)
    assert info.num_frames == 12 and info.fps == pytest.approx(30)
    assert (info.width, info.height) == (64, 64)
    assert info.has_audio and info.codec == "h264"
    frames = list(iter_frames(out))
    assert len(frames) == 12 and np.std(np.stack(frames)) > 1  # not a blank video
    assert not list(out.parent.glob("*.partial*"))


def test_no_audio_result_size_and_absolute(tmp_path, tiny_ckpt, media):
    out = tmp_path / "r.mp4"
    main(["animate", str(media["source"]), str(media["clip"]), "-o", str(out), "--no-crop",
          "--checkpoint", str(tiny_ckpt), "--no-audio", "--result-size", "90", "--absolute",
          "--adapt-scale", "-q"])
    info = probe(out)
    assert not info.has_audio and (info.width, info.height) == (90, 90)


def test_frame_folders_in_and_out(tmp_path, tiny_ckpt, media):
    frames_in = tmp_path / "in"
    frames_in.mkdir()
    for i, f in enumerate(moving_square_frames(5)):
        Image.fromarray(f).save(frames_in / f"f{i}.png")
    out = tmp_path / "frames_out/"
    main(["animate", str(media["source"]), str(frames_in), "-o", str(out) + "/", "--no-crop",
          "--checkpoint", str(tiny_ckpt), "-q"])
    written = sorted(out.glob("*.png"))
    assert len(written) == 5
    assert np.asarray(Image.open(written[0])).shape == (64, 64, 3)


def test_batch_size_does_not_change_results(tiny_ckpt, media):
    from fomm.checkpoints.loading import load_model

    models, cfg = load_model(tiny_ckpt)
    animator = Animator(models, cfg, device="cpu")
    src = animator.prepare_source(moving_square_frames(1)[0])
    driving = moving_square_frames(9)
    one = np.stack(list(animator.animate(src, driving, batch_size=1)))
    many = np.stack(list(animator.animate(src, driving, batch_size=4)))
    assert one.shape == (9, 64, 64, 3)
    assert np.abs(one.astype(int) - many.astype(int)).max() <= 1


def test_best_frame_is_the_reference(tiny_ckpt):
    """--best-frame N: forward and backward from N joined in order == N as reference."""
    from fomm.checkpoints.loading import load_model

    models, cfg = load_model(tiny_ckpt)
    animator = Animator(models, cfg, device="cpu")
    src = animator.prepare_source(moving_square_frames(1)[0])
    driving = moving_square_frames(8)
    n = 3
    joined = np.stack(list(animator.animate(src, driving, reference=driving[n])))
    forward = list(animator.animate(src, driving[n:]))
    backward = list(animator.animate(src, driving[: n + 1][::-1]))
    original = np.stack(backward[::-1] + forward[1:])
    assert joined.shape == original.shape == (8, 64, 64, 3)
    assert np.abs(joined.astype(int) - original.astype(int)).max() <= 1
    default = np.stack(list(animator.animate(src, driving)))
    assert np.abs(default.astype(int) - joined.astype(int)).mean() > 0.1


def test_best_frame_cli_out_of_range(tmp_path, tiny_ckpt, media):
    proc = run_cli("animate", str(media["source"]), str(media["clip"]), "-o",
                   str(tmp_path / "o.mp4"), "--no-crop", "--checkpoint", str(tiny_ckpt),
                   "--best-frame", "50")
    assert proc.returncode == 2 and "out of range" in proc.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_no_face_is_an_error_not_a_still_video(tmp_path, tiny_ckpt, media):
    out = tmp_path / "o.mp4"
    with pytest.raises(NoFaceError, match="--no-crop"):
        animate_file(media["source"], media["clip"], out,
                     AnimateOptions(progress=False), checkpoint=tiny_ckpt)
    assert not out.exists()


BAD_CASES = {
    "missing source": lambda d: (d / "nope.png", None),
    "missing video": lambda d: (None, d / "nope.mp4"),
    "text named mp4": lambda d: (None, _write(d / "t.mp4", b"just some text\n")),
    "corrupt video": lambda d: (None, _write(d / "c.mp4",
                                             b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 500)),
    "empty video": lambda d: (None, _write(d / "e.mp4", b"")),
    "empty image": lambda d: (_write(d / "e.png", b""), None),
    "corrupt image": lambda d: (_write(d / "c.png", b"\x89PNG\r\n\x1a\nbroken"), None),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_inputs_exit_2_and_leave_nothing(tmp_path, tiny_ckpt, media, case):
    source, driving = BAD_CASES[case](tmp_path)
    out = tmp_path / "out" / "result.mp4"
    proc = run_cli("animate", str(source or media["source"]), str(driving or media["clip"]),
                   "-o", str(out), "--no-crop", "--checkpoint", str(tiny_ckpt))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_zero_frame_video(tmp_path, tiny_ckpt, media):
    import av

    path = tmp_path / "zero.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height = 64, 64
    proc = run_cli("animate", str(media["source"]), str(path), "-o", str(tmp_path / "o.mp4"),
                   "--no-crop", "--checkpoint", str(tiny_ckpt))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert not (tmp_path / "o.mp4").exists()


def test_wrong_checkpoint_kind_and_malicious(tmp_path, media):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = _write(tmp_path / "evil.pth.tar", pickle.dumps({"generator": Evil()}))
    config = _write(tmp_path / "config.pth.tar", b"model_params: {}\n")
    for ckpt in (evil, config):
        proc = run_cli("animate", str(media["source"]), str(media["clip"]), "-o",
                       str(tmp_path / "o.mp4"), "--no-crop", "--checkpoint", str(ckpt))
        assert proc.returncode == 2 and proc.stderr.startswith("error: ")
        assert "pwned" not in proc.stdout
    assert not (tmp_path / "o.mp4").exists()


def test_no_checkpoint_without_bundled_model_says_how(monkeypatch):
    import fomm.checkpoints.loading
    import fomm.checkpoints.names

    # the one place a checkpoint name becomes a file: an install without the bundled weights
    monkeypatch.setattr(fomm.checkpoints.names, "bundled_model_path", lambda name=None: None)
    with pytest.raises(FommError, match="--checkpoint"):
        fomm.checkpoints.loading.load_model(None)


def test_seed_command_on_real_media(tmp_path, original_fixture):
    """PaddleGAN's command line, with an official checkpoint, from another working folder."""
    driving = talking_clip()  # a real talking head, 120 frames
    source = save(tmp_path / "photo.png", astronaut())
    cmd = [sys.executable, "-u", str(ROOT / "tools" / "first-order-demo.py"),
           "--driving_video", str(driving), "--source_image", str(source),
           "--relative", "--adapt_scale", "--weight_path", str(original_fixture.checkpoint),
           "--config", str(original_fixture.config), "--batch_size", "4", "--max_frames", "16"]
    # limit the length
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = probe(tmp_path / "output" / "result.mp4")
    assert info.num_frames == 16 and info.fps == pytest.approx(30000 / 1001)
    assert info.width % 2 == 0 and info.height % 2 == 0


def test_real_clip_with_audio_face_crop(tmp_path, original_fixture):
    out = tmp_path / "r.mp4"
    photo = save(tmp_path / "photo.jpg", astronaut()[:, :509])  # an odd width
    driving = talking_clip_with_audio(tmp_path / "talk.mp4", n_frames=12, fps=25)
    proc = run_cli("animate", str(photo), str(driving), "-o",
                   str(out), "--checkpoint", str(original_fixture.checkpoint), "--config",
                   str(original_fixture.config), "--max-frames", "10", "-q")
    assert proc.returncode == 0, proc.stderr
    info, src = probe(out), Image.open(photo)
    assert info.num_frames == 10 and info.fps == pytest.approx(25) and info.has_audio
    assert abs(info.width - src.width) <= 1 and abs(info.height - src.height) <= 1
