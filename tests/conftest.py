"""Shared test fixtures: synthetic media written with PyAV in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

# Distinct solid colours; frame i of a synthetic clip is CLIP_COLOURS[i % len(CLIP_COLOURS)].
CLIP_COLOURS = [
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255),
    (128, 128, 128), (255, 255, 255), (0, 0, 0), (64, 128, 192), (192, 64, 32), (32, 192, 64),
]  # fmt: skip


def clip_frame(index: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """Frame ``index`` of a synthetic clip of (w, h) ``size``: solid colour, uint8 (H, W, 3)."""
    w, h = size
    return np.full((h, w, 3), CLIP_COLOURS[index % len(CLIP_COLOURS)], np.uint8)


def write_clip(
    path: Path,
    n_frames: int = 12,
    size: tuple[int, int] = (64, 48),
    fps: float = 25,
    audio: bool = False,
    audio_codec: str = "aac",
    audio_seconds: float | None = None,
    gop: int | None = None,
    rotation: int | None = None,
    hflip: bool = False,
    vflip: bool = False,
    frames: list[np.ndarray] | None = None,
) -> Path:
    """Encode solid-colour frames (see clip_frame) to H.264, optionally with a 440 Hz sine track.

    ``frames`` replaces the solid colours (``n_frames`` and ``size`` then follow it). The audio
    lasts ``audio_seconds`` (default: the video's duration plus one second, so that trimming can
    be tested). ``rotation`` (degrees counter-clockwise) and the flips set a display matrix.
    """
    if frames is not None:
        n_frames, size = len(frames), (frames[0].shape[1], frames[0].shape[0])
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "10", **({"g": str(gop), "keyint_min": str(gop)} if gop else {})}
        if rotation is not None:
            video.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
        sound = None
        if audio:
            sound = out.add_stream(audio_codec, rate=44100)
            sound.layout = "mono"
        for i in range(n_frames):
            image = clip_frame(i, size) if frames is None else frames[i]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            seconds = n_frames / float(rate) + 1.0 if audio_seconds is None else audio_seconds
            t = np.arange(round(seconds * 44100)) / 44100
            samples = (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)[None]  # (1, N)
            for start in range(0, samples.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(samples[:, start : start + 1024]), format="flt",
                    layout="mono"
                )  # fmt: skip
                chunk.sample_rate = 44100
                chunk.pts = start
                chunk.time_base = Fraction(1, 44100)
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


@pytest.fixture
def make_clip(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a synthetic clip into tmp_path; returns its path.

    ``make_clip(name="clip.mp4", n_frames=12, size=(64, 48), fps=25, audio=False, ...)``; see
    write_clip for the other keyword arguments.
    """

    def make(name: str = "clip.mp4", **kwargs) -> Path:
        return write_clip(tmp_path / name, **kwargs)

    return make


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny random-weight model (64×64, see tests/tiny.py) saved as a fomm safetensors file."""
    from tiny import tiny_models

    from fomm.checkpoints import save_checkpoint

    models, cfg = tiny_models(image_size=64)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, models, cfg)
    return path


@pytest.fixture(scope="session")
def original_fixture(tmp_path_factory):
    """A seeded random-weight model in first-order-model's own files, made by its code: the
    official training checkpoint (``.checkpoint``: generator, kp_detector, discriminator, Adam
    states, epoch 99) and ``config.yaml`` (``.config``); see tests/parity/generated.py."""
    from parity.generated import write_original

    return write_original(tmp_path_factory.mktemp("fomm-parity"))


@pytest.fixture(scope="session")
def paddle_fixture(tmp_path_factory):
    """A seeded random-weight model in PaddleGAN's files, made by its code: ``weights.pdparams``
    as its save helper writes it (``.checkpoint``) and ``config.yaml`` in its layout
    (``.config``); see tests/parity/generated.py."""
    from parity.generated import write_paddle

    return write_paddle(tmp_path_factory.mktemp("paddlegan-parity"))
