"""Uploads: a multipart body streamed to disk under size limits, then checked by decoding it.

Nothing the client names becomes a path: file parts are written as ``<field>.upload`` for a
fixed set of field names, and client file names are used only in messages (sanitised).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from fomm.errors import InputError
from fomm.media.video import VideoInfo, probe

MB = 1024 * 1024
MAX_FIELD_BYTES = 1024  # an option's value
MAX_FIELDS = 32
# what driving videos actually come in; anything else (FFmpeg's concat demuxer, playlists,
# image sequences naming other files, ...) is never opened
VIDEO_FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "h264", "hevc",
                 "gif", "mpeg")
VIDEO_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg", "prores",
                          "mpeg1video", "mpeg2video", "h263", "theora", "gif"})
# codecs whose keyframes may legitimately produce no picture (hidden frames): there only the
# sizes of the pictures that come out are checked
HIDDEN_KEYFRAME_CODECS = frozenset({"vp8", "vp9", "av1", "gif"})
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
PROBE_MAX_SIDE = 16384  # without --max-resolution: the largest frame FFmpeg may decode to probe
MAX_FPS = 120.0  # frames per second a driving video may have


class UploadError(Exception):
    """A request the client must change: HTTP ``status``, a stable ``code`` and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Form:
    files: dict[str, Path] = field(default_factory=dict)  # field → where its bytes are
    filenames: dict[str, str] = field(default_factory=dict)  # field → client name, for messages
    fields: dict[str, str] = field(default_factory=dict)


def display_name(filename: str | None, fallback: str) -> str:
    """A client file name fit for a message: base name, printable, at most 80 characters."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = re.sub(r"[^\w .,()+-]", "_", name).strip()[:80]
    return name or fallback


class _Parser:
    """Callbacks for python-multipart's streaming parser that write file parts to ``folder``."""

    def __init__(self, folder: Path, limits: dict[str, int]) -> None:
        self.folder, self.limits, self.form = folder, limits, Form()
        self._header_field, self._header_value = bytearray(), bytearray()
        self._headers: dict[str, str] = {}
        self._name: str | None = None
        self._file = None
        self._size = 0
        self._value = bytearray()
        self.finished = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers, self._name, self._size, self._value = {}, None, 0, bytearray()

    def _header_end(self) -> None:
        key = self._header_field.decode("latin-1").strip().lower()
        self._headers[key] = self._header_value.decode("latin-1").strip()
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition", ""))
        raw = params.get(b"name")
        if raw is None:
            raise UploadError(400, "bad_form", "a form part has no name")
        name = raw.decode("utf-8", "replace")
        if name in self.form.files or name in self.form.fields:
            raise UploadError(400, "bad_form", f"the form has '{name}' twice")
        self._name = name
        if name in self.limits:
            filename = params.get(b"filename", b"").decode("utf-8", "replace")
            self.form.filenames[name] = display_name(filename, name)
            path = self.folder / f"{name}.upload"  # a name from our fixed set, never the client's
            self.form.files[name] = path
            self._file = path.open("wb")
        elif len(self.form.fields) >= MAX_FIELDS:
            raise UploadError(400, "bad_form", "too many form fields")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._file is not None:
            limit = self.limits[self._name]
            if self._size > limit:
                raise UploadError(413, "file_too_large",
                                  f"{self._name} is larger than the {limit / MB:g} MB limit")
            self._file.write(data[start:end])
        else:
            if self._size > MAX_FIELD_BYTES:
                raise UploadError(400, "bad_form", f"form field '{self._name}' is too long")
            self._value.extend(data[start:end])

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name is not None:
            self.form.fields[self._name] = self._value.decode("utf-8", "replace")

    def _end(self) -> None:
        self.finished = True

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # a full disk: the caller deletes the folder
                self._file.close()
            self._file = None


@dataclass(frozen=True)
class Pace:
    """How fast an upload must come: a slow sender frees its slot (408) instead of holding it.

    Attributes:
        idle_s: the longest wait for the next chunk (None: no limit).
        min_rate: bytes a second, on average since the body began, once ``grace_s`` has passed
            (0: no minimum).
        grace_s: how long a body may take before the minimum rate counts.
        deadline_s: the longest a whole body may take (None: no limit).
    """

    idle_s: float | None = 30
    min_rate: float = 0
    grace_s: float = 10
    deadline_s: float | None = None

    def wait_s(self, started: float, received: int, now: float) -> tuple[float | None, str]:
        """How long the next chunk may take from ``now``, and the reason it would be too late."""
        limits: list[tuple[float, str]] = []
        if self.idle_s is not None:
            limits.append((self.idle_s, f"the upload stalled for more than {self.idle_s:g} s"))
        if self.min_rate > 0:
            due = started + self.grace_s + received / self.min_rate
            limits.append((due - now, f"the upload is slower than {self.min_rate / 1024:g} KiB/s"))
        if self.deadline_s is not None:
            limits.append((started + self.deadline_s - now,
                           f"the upload took longer than {self.deadline_s:g} s"))
        if not limits:
            return None, ""
        wait, reason = min(limits, key=lambda limit: limit[0])
        return max(wait, 0.0), reason


async def read_form(content_type: str, content_length: str | None, body: AsyncIterator[bytes],
                    folder: Path, limits: dict[str, int],
                    idle_timeout_s: float | None = None, pace: Pace | None = None) -> Form:
    """Stream a ``multipart/form-data`` body: file fields (the keys of ``limits``) to disk.

    Args:
        content_type, content_length: the request's headers.
        body: the request body's chunks.
        folder: an existing folder for the files (``<field>.upload``).
        limits: file field name → the most bytes it may have.
        idle_timeout_s: the longest wait for the next chunk (None: no limit); ignored with
            ``pace``.
        pace: idle time, minimum rate and total time allowed (default: ``idle_timeout_s`` only).
    Returns:
        The files written and the other fields' values.
    Raises:
        UploadError: not multipart (415), too large (413), malformed or repeated fields (400),
            the client stalled or sent too slowly (408).
    """
    pace = pace or Pace(idle_s=idle_timeout_s)
    kind, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError(415, "not_multipart", "send the files as multipart/form-data")
    ceiling = sum(limits.values()) + MAX_FIELDS * (MAX_FIELD_BYTES + 1024) + 64 * 1024
    if content_length and content_length.isdigit() and int(content_length) > ceiling:
        raise UploadError(413, "request_too_large",
                          f"the request is larger than the upload limits ({ceiling / MB:.0f} MB)")
    state = _Parser(folder, limits)
    parser = MultipartParser(boundary, state.callbacks())
    chunks = body.__aiter__()
    loop = asyncio.get_running_loop()
    started, received = loop.time(), 0
    try:
        while True:
            wait, reason = pace.wait_s(started, received, loop.time())
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), wait)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError as err:
                raise UploadError(408, "upload_timeout", reason) from err
            if chunk:
                received += len(chunk)
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as err:
        raise UploadError(400, "bad_form", f"malformed multipart body ({err})") from err
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UploadError(507, "insufficient_storage", "the server is out of disk space; "
                              "try again later") from err
        raise
    finally:
        state.close()
    if not state.finished:
        raise UploadError(400, "bad_form", "the multipart body ended early")
    return state.form


def _public(err: InputError, path: Path, name: str) -> str:
    return str(err).replace(str(path), name)


def check_image(path: Path, name: str, max_resolution: int | None) -> tuple[int, int]:
    """Decode the image (not trusting its name); returns (width, height).

    Raises:
        UploadError: not an image, corrupt (415), or a side over ``max_resolution`` (422).
    """
    from PIL import Image

    try:  # the header first, so that a huge image is refused before it is decoded
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            width, height = img.size
            if max_resolution and max(width, height) > max_resolution:
                raise UploadError(422, "resolution_too_large", f"{name} is {width}x{height}; "
                                  f"the largest side may be {max_resolution} px")
            # decoded once to prove it whole, by PIL: at most 4 bytes a pixel (16-bit colour
            # comes as 8-bit), where read_image's full-depth decode of a 16-bit RGBA 4096² PNG
            # peaks at 5x that; the job decodes it again with read_image
            img.load()
    except UploadError:
        raise
    except Exception as err:  # PIL raises many types
        raise UploadError(415, "invalid_image", f"{name} is not a readable PNG, JPEG, WebP, BMP, "
                          "GIF or TIFF image") from err
    return width, height


def decode_image_bytes(data: bytes, name: str, max_resolution: int | None,
                       max_bytes: int | None = None) -> np.ndarray:
    """Image bytes (PNG, JPEG, WebP, BMP, GIF, TIFF) → uint8 (H, W, 3) RGB, with the checks of
    :func:`check_image`: format, then the size from the header, before any pixel is decoded.

    For images that arrive whole (the live page's photo and camera frames). 16-bit images come
    as 8-bit and alpha is dropped.

    Raises:
        UploadError: empty, over ``max_bytes`` (413), not a readable image (415), a side over
            ``max_resolution`` (422).
    """
    import io

    from PIL import Image

    if not data:
        raise UploadError(415, "invalid_image", f"{name} is empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise UploadError(413, "file_too_large",
                          f"{name} is larger than the {max_bytes / MB:g} MB limit")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            width, height = img.size
            if max_resolution and max(width, height) > max_resolution:
                raise UploadError(422, "resolution_too_large", f"{name} is {width}x{height}; "
                                  f"the largest side may be {max_resolution} px")
            if width < 1 or height < 1:
                raise ValueError("no pixels")
            if img.mode.startswith("I;16"):  # 16-bit grey: PIL's convert would clip it
                grey = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            rgb = img.convert("RGB")  # 16-bit colour, palette, grey, CMYK, alpha → 8-bit RGB
            return np.asarray(rgb, dtype=np.uint8)
    except UploadError:
        raise
    except Image.DecompressionBombError as err:  # PIL's own bound (~179 MP) came first
        raise UploadError(422, "resolution_too_large", f"{name} is too large; the largest side "
                          f"may be {max_resolution or 'about 13000'} px") from err
    except Exception as err:  # PIL raises many types
        raise UploadError(415, "invalid_image", f"{name} is not a readable PNG, JPEG, WebP, BMP, "
                          "GIF or TIFF image") from err


def check_video_header(path: Path, name: str, max_resolution: int | None,
                       max_duration_s: float | None, max_fps: float = MAX_FPS) -> None:
    """Check a video before its frames are decoded: container and codec allowed, size from the
    header, every packet counted for the frame count, frame rate and duration, and the size of
    every keyframe (where a stream may change size) checked by a decoder that refuses to
    allocate a frame over ``max_resolution`` squared pixels.

    A raw stream (no container duration) is timed by its packets; a clip of thousands of frames
    at a huge frame rate is refused by its rate and its count; small frames followed by huge
    ones are refused by the keyframe sizes.

    Raises:
        UploadError: a format or codec not allowed, not a video (415), too large, too long,
            too fast or too many frames (422).
    """
    import av

    def refuse(message: str) -> UploadError:
        return UploadError(415, "invalid_video", f"{name} {message}")

    try:
        # opening probes the streams, which decodes a frame when the header lacks details:
        # max_pixels keeps FFmpeg from allocating a huge one there too (a 16000² PNG in a MOV)
        pixels = str((max_resolution or PROBE_MAX_SIDE) ** 2)
        container = av.open(str(path), container_options={
            "format_whitelist": ",".join(VIDEO_FORMATS), "protocol_whitelist": "file"},
            options={"max_pixels": pixels})  # options: the container's and every stream's
    except (av.FFmpegError, OSError, ValueError) as err:
        raise refuse("is not a readable video (this server reads MP4, MOV, MKV, WebM, AVI, "
                     "MPEG-TS, raw H.264/H.265)") from err
    with container:
        if not container.streams.video:
            raise refuse("has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # a stream FFmpeg has no decoder for
            raise refuse("uses a codec this server does not read")
        codec = stream.codec_context.name
        if codec not in VIDEO_CODECS:
            raise refuse(f"uses the {codec} codec; allowed: {', '.join(sorted(VIDEO_CODECS))}")
        width, height = stream.codec_context.width, stream.codec_context.height
        if max_resolution and max(width, height) > max_resolution:
            raise UploadError(422, "resolution_too_large", f"{name} is {width}x{height}; the "
                              f"largest side may be {max_resolution} px")
        rate = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 25)
        max_frames = int((max_duration_s or 3600) * max_fps)
        frames, first, last = 0, None, None
        decoder = stream.codec_context
        decoder.skip_frame = "NONKEY"  # keyframes only: sizes change there
        if max_resolution:  # FFmpeg drops (never allocates) a larger frame
            decoder.options = {"max_pixels": str(max_resolution * max_resolution)}
        keys, sizes = 0, []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at the end
                    if max_resolution:
                        sizes += [(f.width, f.height) for f in decoder.decode(None)]
                    continue
                if max_resolution and packet.is_keyframe:
                    keys += 1
                    sizes += [(f.width, f.height) for f in decoder.decode(packet)]
                frames += 1
                if frames > max_frames:
                    raise UploadError(422, "too_many_frames", f"{name} has more than "
                                      f"{max_frames} frames")
                if packet.pts is not None and packet.time_base is not None:
                    end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    start = float(packet.pts * packet.time_base)
                    first = start if first is None else min(first, start)
                    last = end if last is None else max(last, end)
        except av.FFmpegError as err:
            raise refuse("is corrupt") from err
    dropped = len(sizes) < keys and codec not in HIDDEN_KEYFRAME_CODECS  # too large for FFmpeg
    if max_resolution and (dropped or any(max(w, h) > max_resolution for w, h in sizes)):
        raise UploadError(422, "resolution_too_large", f"{name} has a frame larger than "
                          f"{max_resolution} px on its largest side (or one that cannot be read)")
    duration = (last - first) if first is not None and last and last > first else frames / rate
    if max_duration_s and duration > max_duration_s:
        raise UploadError(422, "video_too_long", f"{name} lasts {duration:.1f} s; the limit is "
                          f"{max_duration_s:g} s")
    if frames > 1 and frames / max(duration, 1e-6) > max_fps * 1.01:
        raise UploadError(422, "frame_rate_too_high", f"{name} has {frames / duration:.0f} "
                          f"frames per second; the limit is {max_fps:g}")


def check_video(path: Path, name: str, max_resolution: int | None,
                max_duration_s: float | None) -> VideoInfo:
    """Check the video's header and packets (:func:`check_video_header`), then decode its
    first frame; check resolution and duration.

    Raises:
        UploadError: not a video, corrupt or without frames (415), too long or too large (422).
    """
    check_video_header(path, name, max_resolution, max_duration_s)
    try:
        info = probe(path)
    except InputError as err:
        raise UploadError(415, "invalid_video", _public(err, path, name)) from err
    if max_resolution and max(info.width, info.height) > max_resolution:
        raise UploadError(422, "resolution_too_large", f"{name} is {info.width}x{info.height}; "
                          f"the largest side may be {max_resolution} px")
    duration = info.duration
    if duration is None and info.num_frames:
        duration = info.num_frames / info.fps
    if max_duration_s and duration and duration > max_duration_s:
        raise UploadError(422, "video_too_long", f"{name} lasts {duration:.1f} s; the limit is "
                          f"{max_duration_s:g} s")
    return info
