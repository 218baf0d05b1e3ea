"""Videos and frame folders in and out, the only PyAV user: probe, streaming decode, VideoWriter."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from fomm.errors import InputError
from fomm.media.fileio import make_temp_dir, make_temp_file
from fomm.media.image import IMAGE_SUFFIXES, check_frame, pad_to_even, read_image, write_image

FRAME_SUFFIXES = IMAGE_SUFFIXES - {".gif"}  # files a frame folder may hold
DEFAULT_FOLDER_FPS = 25.0
_OUTPUT_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv"}
# Audio codecs that players accept inside MP4; others are re-encoded to AAC (MOV/MKV take more).
_MP4_AUDIO = {"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"}
_FRAME_NAME = re.compile(r"^\d{6}\.png$")


@dataclass(frozen=True)
class VideoInfo:
    """What a video (or frame folder) holds; width and height are after display rotation."""

    width: int
    height: int
    fps: float
    num_frames: int | None  # stream header count, else round(duration * fps); see count_frames
    duration: float | None  # seconds
    has_audio: bool
    codec: str  # e.g. "h264", "gif", or "images" for a frame folder
    rotation: int = 0  # the display matrix's rotation, degrees counter-clockwise


def probe(path: str | os.PathLike, fps: float | None = None) -> VideoInfo:
    """Describe a video file or a folder of frames, decoding only the first frame.

    Args:
        path: a video file (mp4, mov, mkv, webm, avi, animated gif, ...) or a folder of
            png/jpg frames, taken in natural name order (2.png before 10.png).
        fps: frame rate of a frame folder (default 25); ignored for video files.

    Returns:
        VideoInfo. ``num_frames`` comes from the container header when it has one, otherwise it is
        estimated as ``round(duration * fps)``; use count_frames for an exact count.

    Raises:
        InputError: missing, a still image, not a video, corrupt, no video stream or no frames.
    """
    path = Path(path)
    if path.is_dir():
        files = _frame_files(path)
        h, w = read_image(files[0]).shape[:2]
        rate = float(fps or DEFAULT_FOLDER_FPS)
        return VideoInfo(w, h, rate, len(files), len(files) / rate, False, "images")
    with _open(path) as container:
        stream = container.streams.video[0]
        first = next(_decode(container, stream, path), None)
        if first is None:
            raise InputError(f"{path} has no video frames")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        rate = float(rate) if rate else DEFAULT_FOLDER_FPS
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = None
        frames = stream.frames or (round(duration * rate) if duration else None)
        image = _to_rgb(first, _display_transform(first))
        return VideoInfo(
            width=image.shape[1],
            height=image.shape[0],
            fps=rate,
            num_frames=frames,
            duration=duration,
            has_audio=bool(container.streams.audio),
            codec=stream.codec_context.codec.canonical_name,
            rotation=int(first.rotation or 0),
        )


def iter_frames(
    path: str | os.PathLike, start: int = 0, max_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Decode frames one at a time, in display orientation; the video is never held in memory.

    The display matrix (phone videos) is applied as the ffmpeg command line does: rotations by
    multiples of 90 degrees and flips; other angles are ignored. Frames before ``start`` are
    decoded and dropped (use read_frame for one random frame). Frames come as the stream has them
    (no constant-frame-rate resampling).

    Args:
        path: a video file or a folder of frames (see probe).
        start: index of the first frame to yield.
        max_frames: stop after this many frames; None for all.

    Returns:
        an iterator of uint8 arrays (H, W, 3), RGB.

    Raises:
        InputError: unreadable input (see probe), raised by the call itself; a frame folder with
            mixed sizes, or a file with no video frames, raised while iterating.
    """
    path = Path(path)
    if start < 0 or (max_frames is not None and max_frames < 0):
        raise ValueError(
            f"iter_frames: start and max_frames must be >= 0, got {start}, {max_frames}"
        )
    stop = None if max_frames is None else start + max_frames
    # Open (and so validate) now, so a bad path fails at the call and not at the first next().
    if path.is_dir():
        return _iter_folder(path, _frame_files(path), start, stop)
    return _iter_video(_open(path), path, start, stop)


def read_frame(path: str | os.PathLike, index: int) -> np.ndarray:
    """Fetch one frame by index, seeking to the nearest keyframe instead of decoding from the start.

    The frame's timestamp is looked up in the sorted packet timestamps (demuxed once per file and
    cached), so the index is exact for variable frame rates and B-frames. When the file has no
    timestamps or the seek lands after the target, the frame is decoded from the start instead.

    Args:
        path: a video file or a folder of frames.
        index: frame number, 0-based.

    Returns:
        uint8 array (H, W, 3), RGB.

    Raises:
        IndexError: index outside [0, count_frames(path)).
        InputError: unreadable input (see probe).
    """
    path = Path(path)
    if path.is_dir():
        files = _frame_files(path)
        if not 0 <= index < len(files):
            raise IndexError(f"{path}: frame {index} out of range (0..{len(files) - 1})")
        return read_image(files[index])
    pts = _packet_pts(str(path), *_stamp(path))
    if not pts:
        raise InputError(f"{path} has no video frames")
    if not 0 <= index < len(pts):
        raise IndexError(f"{path}: frame {index} out of range (0..{len(pts) - 1})")
    target = pts[index]
    if target is not None:
        with _open(path) as container:
            stream = container.streams.video[0]
            try:
                container.seek(target, backward=True, any_frame=False, stream=stream)
            except av.FFmpegError:
                pass  # not seekable: decode from the start below
            else:
                transform = None
                for frame in _decode(container, stream, path):
                    transform = transform or _display_transform(frame)
                    if frame.pts is None or frame.pts > target:
                        break  # landed after the target: fall back
                    if frame.pts == target:
                        return _to_rgb(frame, transform)
    frame = next(iter_frames(path, start=index, max_frames=1), None)
    if frame is None:
        raise IndexError(f"{path}: frame {index} could not be decoded")
    return frame


def count_frames(path: str | os.PathLike) -> int:
    """Count frames exactly without decoding, by demuxing the video packets (cached per file).

    Packets that the container marks for discard (edit lists) are not counted, so the count
    matches iter_frames for well-formed files.

    Args:
        path: a video file or a folder of frames.

    Returns:
        number of frames, at least 1.

    Raises:
        InputError: unreadable input (see probe) or no video frames.
    """
    path = Path(path)
    if path.is_dir():
        return len(_frame_files(path))
    count = len(_packet_pts(str(path), *_stamp(path)))
    if count == 0:
        raise InputError(f"{path} has no video frames")
    return count


class VideoWriter:
    """Write RGB uint8 frames to an H.264 file (or a folder of PNGs), atomically.

    Frames are encoded with libx264 (yuv420p, BT.709 limited range, tagged) at a constant ``fps``,
    kept as a fraction with a denominator of at most 1001 (29.97 → 2997/100, and the float of
    30000/1001 → 30000/1001). Odd widths or heights are padded by one pixel that
    repeats the last column or row. The output appears only on a clean exit: the file is written
    to a hidden temp file beside it (``.name.xxxx.partial.mp4``) and renamed; on an exception the
    temp file is deleted and the exception propagates. With ``audio_from``, its first audio stream
    is copied without re-encoding (re-encoded to AAC when MP4 cannot hold the codec), shifted so
    that it stays in sync with the source's video, and trimmed to the written video's duration.

    When ``path`` is an existing folder or ends with a path separator, frames are written as
    lossless ``000000.png``, ``000001.png``, ... (fps, audio and crf are then unused); numbered
    frames already in that folder are replaced, other files are left alone.

    Use it as a context manager (or call close() / abort()); a writer dropped without either
    leaves its hidden temp file behind.

    Args:
        path: output .mp4/.m4v/.mov/.mkv file, or a folder.
        fps: frames per second.
        audio_from: a video or audio file whose audio track to copy; None for no audio.
        crf: x264 constant rate factor, 0 (lossless) to 51; 18 is visually near-lossless.
        preset: x264 preset (``medium``; ``veryfast`` takes about half its CPU time a frame
            for a somewhat larger file at the same crf: live recording).
        size: expected (width, height) of every frame; None takes the first frame's size.

    Raises:
        InputError: unsupported output suffix, or an unreadable ``audio_from``.
        ValueError: a frame that is not uint8 (H, W, 3), or whose size differs from the others.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        audio_from: str | os.PathLike | None = None,
        crf: int = 18,
        size: tuple[int, int] | None = None,
        preset: str = "medium",
    ) -> None:
        self.path = Path(path)
        self._folder = str(path).endswith(("/", os.sep)) or self.path.is_dir()
        if not fps or fps <= 0:
            raise ValueError(f"VideoWriter: fps must be positive, got {fps}")
        if not 0 <= crf <= 51:
            raise ValueError(f"VideoWriter: crf must be in 0..51, got {crf}")
        self.fps = fps
        self._rate = Fraction(fps).limit_denominator(1001)
        self._crf = crf
        self._preset = preset
        self._size = tuple(size) if size is not None else None
        self._count = 0
        self._pts = -1  # the last frame's presentation time, in 1/fps units
        self._out: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._audio: _AudioTrack | None = None
        if self._folder:
            if self.path.exists() and not self.path.is_dir():
                raise InputError(f"{self.path} exists and is not a folder")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = make_temp_dir(self.path)
            return
        suffix = self.path.suffix.lower()
        if suffix not in _OUTPUT_SUFFIXES:
            names = ", ".join(sorted(_OUTPUT_SUFFIXES))
            raise InputError(
                f"{self.path}: unsupported video format {suffix!r} (use {names}, "
                "or end the path with / for PNG frames)"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = make_temp_file(self.path, suffix=f".partial{suffix}")
        try:
            self._audio = _AudioTrack.open(Path(audio_from)) if audio_from is not None else None
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    @property
    def frames_written(self) -> int:
        """Number of frames written so far."""
        return self._count

    def write(self, frame: np.ndarray, at: float | None = None) -> None:
        """Append one frame.

        Args:
            frame: uint8 array (H, W, 3), RGB, the same size as every other frame.
            at: its time in seconds from the start (live recording: a frame then stays on screen
                until the next one's time); default: the next slot at ``fps``.
        """
        check_frame(frame, f"VideoWriter: frame {self._count}")
        h, w = frame.shape[:2]
        if self._size is None:
            self._size = (w, h)
        if (w, h) != self._size:
            raise ValueError(
                f"VideoWriter: frame {self._count} is {w}x{h}, "
                f"expected {self._size[0]}x{self._size[1]}"
            )
        if self._folder:
            write_image(self._tmp / f"{self._count:06d}.png", frame)
        else:
            self._encode(frame, at)
        self._count += 1

    def write_many(self, frames: Iterable[np.ndarray]) -> None:
        """Append frames from an iterable or a (B, H, W, 3) uint8 array."""
        for frame in frames:
            self.write(frame)

    def close(self) -> None:
        """Flush, then move the result to ``path``; with no frames written, raise ValueError."""
        try:
            if self._count == 0:
                raise ValueError(f"VideoWriter: no frames were written to {self.path}")
            if self._folder:
                self._publish_folder()
                return
            assert self._out is not None and self._stream is not None
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            if self._audio is not None:
                self._audio.pump(self._out, float(self._count / self._rate), flush=True)
            self._out.close()
            self._out = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        finally:
            if self._audio is not None:
                self._audio.close()

    def abort(self) -> None:
        """Stop and delete everything written so far; ``path`` is left untouched."""
        if self._out is not None:
            with contextlib.suppress(av.FFmpegError):  # the file is deleted anyway
                self._out.close()
            self._out = None
        if self._audio is not None:
            self._audio.close()
        if self._tmp.is_dir():
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _encode(self, frame: np.ndarray, at: float | None = None) -> None:
        if self._out is None:
            self._start()
        assert self._out is not None and self._stream is not None
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(pad_to_even(frame)), format="rgb24")
        yuv = rgb.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
        pts = self._count if at is None else round(at * self._rate)
        pts = max(pts, self._pts + 1)  # strictly increasing
        yuv.pts = self._pts = pts
        yuv.time_base = 1 / self._rate
        for packet in self._stream.encode(yuv):
            self._out.mux(packet)
        if self._audio is not None:
            self._audio.pump(self._out, float((self._count + 1) / self._rate))

    def _start(self) -> None:
        assert self._size is not None
        suffix = self.path.suffix.lower()
        options = {"movflags": "+faststart"} if suffix in {".mp4", ".m4v", ".mov"} else {}
        self._out = av.open(str(self._tmp), "w", options=options)
        stream = self._out.add_stream("libx264", rate=self._rate)
        stream.width, stream.height = (
            self._size[0] + self._size[0] % 2,
            self._size[1] + self._size[1] % 2,
        )
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self._crf), "preset": self._preset}
        ctx = stream.codec_context
        # AVCOL_* value 1 is BT.709 (matrix, primaries, transfer) and limited ("tv") range.
        ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = 1, 1, 1, 1
        self._stream = stream
        if self._audio is not None:
            self._audio.add_to(self._out, mp4=suffix in {".mp4", ".m4v"})

    def _publish_folder(self) -> None:
        if not self.path.exists():
            os.replace(self._tmp, self.path)
            return
        for name in sorted(os.listdir(self._tmp)):
            os.replace(self._tmp / name, self.path / name)
        for name in os.listdir(self.path):
            if _FRAME_NAME.match(name) and int(name[:6]) >= self._count:
                (self.path / name).unlink()  # a stale frame from an earlier, longer run
        self._tmp.rmdir()


class _AudioTrack:
    """The audio of an input file, copied (or re-encoded) into an output in step with its video."""

    def __init__(
        self, path: Path, container: av.container.InputContainer, stream: av.AudioStream
    ) -> None:
        self.path = path
        self.container = container
        self.stream = stream
        video = container.streams.video
        start = video[0].start_time if video and video[0].start_time is not None else None
        if start is not None:
            # Keep A/V sync with the source: its first video frame is our t = 0.
            shift = float(start * video[0].time_base)
        else:
            shift = float((stream.start_time or 0) * stream.time_base)
        self.shift = round(shift / stream.time_base)  # in stream.time_base units
        self.packets = container.demux(stream)
        self.pending: av.Packet | None = None
        self.out_stream: av.AudioStream | None = None
        self.copy = True

    @classmethod
    def open(cls, path: Path) -> _AudioTrack | None:
        if path.is_dir():
            return None
        container = _open(path, need_video=False)
        if not container.streams.audio:
            container.close()
            return None
        return cls(path, container, container.streams.audio[0])

    def add_to(self, out: av.container.OutputContainer, mp4: bool) -> None:
        codec = self.stream.codec_context.codec.canonical_name
        allowed = _MP4_AUDIO if mp4 else out.supported_codecs
        if codec in allowed and codec in out.supported_codecs:
            self.out_stream = out.add_stream_from_template(self.stream)
        else:
            self.copy = False
            ctx = self.stream.codec_context
            self.out_stream = out.add_stream("aac", rate=ctx.sample_rate or 48000)
            self.out_stream.layout = "mono" if ctx.layout.nb_channels == 1 else "stereo"

    def pump(self, out: av.container.OutputContainer, until: float, flush: bool = False) -> None:
        """Mux the packets that start before ``until`` seconds of output time."""
        tb = self.stream.time_base
        while True:
            try:
                packet = self.pending or next(self.packets, None)
            except av.FFmpegError as err:
                raise InputError(f"{self.path} has corrupt audio ({_one_line(err)})") from err
            self.pending = None
            if packet is None:
                break
            if packet.pts is None or packet.size == 0:
                continue
            start = packet.pts - self.shift
            if start * tb >= until:
                self.pending = packet
                break
            if start + (packet.duration or 0) <= 0 and not packet.is_discard:
                continue  # ends before the source's first video frame (codec priming is kept)
            if self.copy:
                dts = packet.dts if packet.dts is not None else packet.pts
                packet.pts, packet.dts = start, dts - self.shift
                packet.stream = self.out_stream
                out.mux(packet)
            else:
                self._transcode(out, packet, start)
        if flush and not self.copy:
            for encoded in self.out_stream.encode(None):
                out.mux(encoded)

    def _transcode(self, out: av.container.OutputContainer, packet: av.Packet, start: int) -> None:
        try:
            frames = packet.decode()
        except av.FFmpegError as err:
            raise InputError(f"{self.path} has corrupt audio ({_one_line(err)})") from err
        for frame in frames:
            frame.pts = round(start * self.stream.time_base * frame.sample_rate)
            frame.time_base = Fraction(1, frame.sample_rate)
            for encoded in self.out_stream.encode(frame):
                out.mux(encoded)

    def close(self) -> None:
        self.container.close()


def _open(path: Path, need_video: bool = True) -> av.container.InputContainer:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a video file")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is an empty file")
    if need_video and path.suffix.lower() in FRAME_SUFFIXES:
        raise InputError(f"{path} is a still image, not a video")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.EOFError as err:
        raise InputError(f"{path} has no video frames (it ends before the first one)") from err
    except (av.FFmpegError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not a readable video ({_one_line(err)})") from err
    fmt = container.format.name
    if need_video and (fmt == "image2" or fmt.endswith("_pipe")):
        container.close()
        raise InputError(f"{path} is a still image, not a video")
    if need_video and not container.streams.video:
        container.close()
        raise InputError(f"{path} has no video stream")
    return container


def _decode(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path
) -> Iterator[av.VideoFrame]:
    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.FFmpegError as err:
            raise InputError(f"{path} is corrupt ({_one_line(err)})") from err
        yield frame


def _to_rgb(
    frame: av.VideoFrame, transform: Callable[[np.ndarray], np.ndarray] | None
) -> np.ndarray:
    # The frame's own colorspace tag picks the matrix; its range tag (full/limited) must be passed.
    rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range)
    return rgb if transform is None else np.ascontiguousarray(transform(rgb))


def _display_transform(frame: av.VideoFrame) -> Callable[[np.ndarray], np.ndarray] | None:
    """The ffmpeg CLI's autorotate (fftools) for a frame's display matrix, on (H, W, 3) arrays."""
    side = frame.side_data.get("DISPLAYMATRIX")
    if side is None:
        return None
    m = np.frombuffer(bytes(side), dtype="=i4")  # 3x3, row-major, 16.16 fixed point
    theta = (-round(frame.rotation or 0)) % 360  # clockwise degrees, as ffmpeg's get_rotation()
    if theta == 90:
        return (lambda a: a.swapaxes(0, 1)) if m[3] > 0 else (lambda a: np.rot90(a, -1))
    if theta == 270:
        return (lambda a: a[::-1, ::-1].swapaxes(0, 1)) if m[3] < 0 else (lambda a: np.rot90(a))
    if theta == 180:
        cols = slice(None, None, -1 if m[0] < 0 else 1)
        rows = slice(None, None, -1 if m[4] < 0 else 1)
        return lambda a: a[rows, cols]
    if theta == 0 and m[4] < 0:
        return lambda a: a[::-1]
    return None  # identity, or an angle that is not a multiple of 90 degrees


def _iter_folder(
    path: Path, files: list[Path], start: int, stop: int | None
) -> Iterator[np.ndarray]:
    size = read_image(files[0]).shape if start > 0 else None
    for file in files[start:stop]:
        frame = read_image(file)
        size = size or frame.shape
        if frame.shape != size:
            raise InputError(
                f"{file} is {frame.shape[1]}x{frame.shape[0]}, but the other frames "
                f"in {path} are {size[1]}x{size[0]}"
            )
        yield frame


def _iter_video(
    container: av.container.InputContainer, path: Path, start: int, stop: int | None
) -> Iterator[np.ndarray]:
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        transform: Callable[[np.ndarray], np.ndarray] | None = None
        index = -1
        for index, frame in enumerate(_decode(container, stream, path)):
            if stop is not None and index >= stop:
                return
            if index == 0:
                transform = _display_transform(frame)
            if index >= start:
                yield _to_rgb(frame, transform)
        if index < 0:
            raise InputError(f"{path} has no video frames")


def _frame_files(path: Path) -> list[Path]:
    files = [p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()]
    if not files:
        raise InputError(f"{path} holds no image frames (png, jpg, ...)")
    return sorted(files, key=lambda p: _natural_key(p.name))


def _natural_key(name: str) -> list[int | str]:
    # re.split with a group alternates text, digits, text, ... so positions compare like with like.
    return [int(t) if i % 2 else t.lower() for i, t in enumerate(re.split(r"(\d+)", name))]


def _stamp(path: Path) -> tuple[int, int]:
    _open(path).close()  # same checks and errors as every other reader
    st = path.stat()
    return st.st_mtime_ns, st.st_size  # a rewritten file gets a fresh cache entry


@functools.lru_cache(maxsize=1024)
def _packet_pts(path: str, mtime_ns: int, size: int) -> tuple[int | None, ...]:
    """Presentation timestamps of the video packets in display order (None entries: unknown)."""
    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        try:
            packets = [(p.pts, p.is_discard) for p in container.demux(stream) if p.size]
        except av.FFmpegError as err:
            raise InputError(f"{path} is corrupt ({_one_line(err)})") from err
        if stream.frames and len(packets) < stream.frames:
            raise InputError(
                f"{path} is truncated ({len(packets)} of {stream.frames} frames are present)"
            )
    pts = [t for t, discard in packets if not discard]
    if any(p is None for p in pts) or len(set(pts)) != len(pts):
        return tuple([None] * len(pts))  # no usable timestamps: read_frame decodes from the start
    return tuple(sorted(pts))


def _one_line(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err)  # FFmpeg's strerror omits the path
    return " ".join(text.split()) or type(err).__name__
