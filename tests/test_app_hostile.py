"""Hostile uploads (issue 15, section 4), with inputs made here: each is refused cleanly."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

import test_app as base  # noqa: E402
from fuzz_bounds import Bounds  # noqa: E402
from test_app import make_client, nothing_queued, submit  # noqa: E402

from fomm.app.uploads import Pace, UploadError, check_video_header, read_form  # noqa: E402
from fomm.media.image import read_image  # noqa: E402

animator, media = base.animator, base.media  # the fixtures of test_app
BOUNDARY = "XyZ"


def encode(path: Path, frames: int, fps: int, size: int = 64, fmt: str | None = None) -> Path:
    """A small H.264 clip (or raw stream with ``fmt="h264"``) of ``frames`` grey frames."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(
                np.full((size, size, 3), i % 250, np.uint8), format="rgb24"
            )
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture
def client(tmp_path, animator):
    with make_client(tmp_path, animator) as c:
        yield c


@pytest.mark.parametrize(
    "fields",
    [{"face_index": "²"}, {"face_index": "٣"}, {"best_frame": "1e3"}, {"relative": "真"}],
)
def test_malformed_fields_get_a_json_4xx(client, media, fields):
    r = submit(client, media["source"], media["clip"], **fields)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_option"
    nothing_queued(client)


def test_the_concat_demuxer_and_other_formats_are_never_opened(client, media, tmp_path):
    concat = tmp_path / "driving.upload"  # names itself, as the probe's upload did
    concat.write_text("ffconcat version 1.0\nfile driving.upload\n")
    r = submit(client, media["source"], concat)
    assert r.status_code == 415 and r.json()["error"]["code"] == "invalid_video"
    playlist = tmp_path / "list.m3u8"
    playlist.write_text("#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n")
    assert submit(client, media["source"], playlist).status_code == 415
    nothing_queued(client)


def test_a_raw_stream_is_timed_by_its_packets(tmp_path, animator, media):
    raw = encode(tmp_path / "five-seconds.h264", frames=125, fps=25, fmt="h264")
    with make_client(tmp_path, animator, max_duration_s=2) as client:
        r = submit(client, media["source"], raw)
        assert r.status_code == 422 and r.json()["error"]["code"] == "video_too_long"
        nothing_queued(client)


def test_frame_rate_and_frame_count_are_capped(client, media, tmp_path):
    fast = encode(tmp_path / "fast.mp4", frames=400, fps=2000)
    r = submit(client, media["source"], fast)
    assert r.status_code == 422 and r.json()["error"]["code"] == "frame_rate_too_high"
    clip = encode(tmp_path / "long.mp4", frames=60, fps=25)
    with pytest.raises(UploadError) as err:
        check_video_header(clip, "long.mp4", None, max_duration_s=1.0, max_fps=30)
    assert err.value.code == "too_many_frames"  # counted before any frame is decoded
    nothing_queued(client)


def test_an_image_in_a_video_codec_is_refused_before_decoding(client, media, tmp_path):
    png_mov = tmp_path / "png.mov"  # the probe's MOV held one huge PNG frame
    with av.open(str(png_mov), "w") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "rgb24"
        out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8))))
        out.mux(stream.encode())
    r = submit(client, media["source"], png_mov)
    assert r.status_code == 415 and "png codec" in r.json()["error"]["message"]


def test_16_bit_images_are_converted_without_a_full_float64_copy(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 65536, (1024, 1024, 4), dtype=np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), rgba)
    tracemalloc.start()
    try:
        image = read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert image.shape == (1024, 1024, 3) and image.dtype == np.uint8
    # the decoded uint16 image (8 MB) and the result (3 MB); a float64 copy alone is 24 MB
    assert peak < 20 * 2**20, peak


def _scope() -> dict:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/animations",
        "raw_path": b"/v1/animations",
        "query_string": b"",
        "root_path": "",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("localhost", 80),
        "client": ("127.0.0.1", 5555),
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
        ],
    }


async def _call(app, receive) -> int:
    statuses = []

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(_scope(), receive, send)
    return statuses[0]


def test_aborted_uploads_log_one_line_and_uploads_in_flight_are_bounded(tmp_path, animator, caplog):
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="driving"; filename="x.mp4"\r\n\r\n'
    ).encode() + b"\0" * 1000

    async def scenario(app) -> tuple[int, int]:
        started, release = asyncio.Event(), asyncio.Event()
        messages = 0

        async def slow():  # a client that sends a little, waits, then goes away
            nonlocal messages
            messages += 1
            if messages == 1:
                started.set()
                return {"type": "http.request", "body": head, "more_body": True}
            await release.wait()
            return {"type": "http.disconnect"}

        async def unused():
            raise AssertionError("the body of a refused upload is not read")

        first = asyncio.create_task(_call(app, slow))
        await started.wait()
        second = await _call(app, unused)  # room for 1 upload (max_queue 0 + 1 worker)
        release.set()
        return await first, second

    with make_client(tmp_path, animator, max_queue=0, workers=1) as client:
        caplog.set_level(logging.INFO, logger="fomm.serve")
        aborted, refused = asyncio.run(scenario(client.app))
        assert refused == 503
        assert aborted == 400
        lines = [r for r in caplog.records if "aborted" in r.getMessage()]
        assert len(lines) == 1 and lines[0].exc_info is None
        nothing_queued(client)


def test_a_stalled_upload_is_cut(tmp_path, animator):
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="driving"; filename="x.mp4"\r\n\r\n'
    ).encode()
    sent = []

    async def stalls():  # one chunk, then nothing (a slow-loris client)
        if not sent:
            sent.append(1)
            return {"type": "http.request", "body": head, "more_body": True}
        await asyncio.sleep(3600)

    with make_client(tmp_path, animator, upload_idle_s=0.2) as client:
        assert asyncio.run(_call(client.app, stalls)) == 408
        nothing_queued(client)


def test_small_frames_then_huge_ones_are_refused(client, media, tmp_path):
    small = encode(tmp_path / "small.h264", frames=3, fps=25, size=64, fmt="h264")
    large = encode(tmp_path / "large.h264", frames=3, fps=25, size=320, fmt="h264")
    both = tmp_path / "both.h264"  # one raw stream: its second keyframe changes the size
    both.write_bytes(small.read_bytes() + large.read_bytes())
    with pytest.raises(UploadError) as err:
        check_video_header(both, "both.h264", max_resolution=128, max_duration_s=300)
    assert err.value.code == "resolution_too_large"
    check_video_header(both, "both.h264", max_resolution=400, max_duration_s=300)
    check_video_header(small, "small.h264", max_resolution=128, max_duration_s=300)


def _drip(every_s: float, chunk: bytes = b"\0", head: bytes | None = None):
    """A body that sends ``head``, then ``chunk`` every ``every_s`` seconds, forever."""
    head = head if head is not None else (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="driving"; filename="x.mp4"\r\n'
        "\r\n").encode()

    async def body():
        yield head
        while True:
            await asyncio.sleep(every_s)
            yield chunk

    return body()


def _read(tmp_path: Path, body, pace: Pace) -> UploadError:
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    with pytest.raises(UploadError) as err:
        asyncio.run(asyncio.wait_for(
            read_form(content_type, None, body, tmp_path, {"driving": 2**30}, pace=pace), 30))
    return err.value


def test_a_dripping_upload_is_cut_by_the_minimum_rate(tmp_path):
    # one byte every 50 ms never trips the idle bound, but stays under 1 KiB/s
    err = _read(tmp_path, _drip(0.05), Pace(idle_s=5, min_rate=1024, grace_s=0.5))
    assert err.status == 408 and "slower than 1 KiB/s" in err.message


def test_an_upload_past_its_deadline_is_cut(tmp_path):
    # fast enough for the minimum rate, but never ending
    err = _read(tmp_path, _drip(0.01, b"\0" * 4096),
                Pace(idle_s=5, min_rate=1024, grace_s=0.1, deadline_s=0.5))
    assert err.status == 408 and "longer than 0.5 s" in err.message


def test_an_upload_at_a_good_pace_is_read(tmp_path):
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="driving"; '
            'filename="x.mp4"\r\n\r\n').encode()

    async def body():
        yield head
        for _ in range(20):
            await asyncio.sleep(0.01)
            yield b"\1" * 1024
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    form = asyncio.run(read_form(f"multipart/form-data; boundary={BOUNDARY}", None, body(),
                                 tmp_path, {"driving": 2**20},
                                 pace=Pace(idle_s=5, min_rate=1024, grace_s=0.1, deadline_s=30)))
    assert form.files["driving"].read_bytes() == b"\1" * 20 * 1024


# ---------------------------------------------------------------- fuzz: generated and mutated


def _mutate(draw, data: bytes) -> bytes:
    from hypothesis import strategies as st

    data = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        kind = draw(st.sampled_from(["flip", "cut", "insert", "big"]))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 256))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:  # a length or size field set to a huge value
            data[at:at + 4] = draw(st.integers(2**12, 2**32 - 1)).to_bytes(4, "big")
    return bytes(data)


def _fuzz_forms(examples: int) -> None:
    import tempfile

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    names = st.sampled_from(["source", "driving", "relative", "crop", "face_index", "x", "",
                             "source\"; filename=\"../../etc/passwd", "a" * 2000])
    part = st.tuples(names, st.booleans(), st.binary(max_size=300))

    @st.composite
    def bodies(draw) -> tuple[bytes, list[int]]:
        parts = draw(st.lists(part, max_size=6))
        body = b""
        for name, is_file, value in parts:
            filename = b'; filename="a.png"' if is_file else b""
            body += (f"--{BOUNDARY}\r\n".encode() + b'Content-Disposition: form-data; name="'
                     + name.encode() + b'"' + filename + b"\r\n\r\n" + value + b"\r\n")
        body += f"--{BOUNDARY}--\r\n".encode()
        if draw(st.booleans()):
            body = _mutate(draw, body)
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=5)))
        return body, cuts

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(bodies())
    def run(case: tuple[bytes, list[int]]) -> None:
        with bounds.case():
            one(case)

    def one(case: tuple[bytes, list[int]]) -> None:
        body, cuts = case

        async def chunks():
            start = 0
            for cut in [*cuts, len(body)]:
                yield body[start:cut]
                start = cut

        with tempfile.TemporaryDirectory() as folder:
            try:
                form = asyncio.run(read_form(f"multipart/form-data; boundary={BOUNDARY}", None,
                                             chunks(), Path(folder), {"source": 1000,
                                                                      "driving": 1000}))
            except UploadError as err:
                assert err.status in (400, 413), err
            else:
                assert set(form.files) <= {"source", "driving"}
                assert all(p.parent == Path(folder) for p in form.files.values())
                assert len(form.fields) <= 32

    bounds = Bounds("multipart forms")
    run()
    bounds.check()


def _fuzz_media(examples: int, tmp_path: Path) -> None:
    import io

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from PIL import Image

    from fomm.app.uploads import check_image

    clip = encode(tmp_path / "seed.mp4", frames=4, fps=25, size=32).read_bytes()
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8) + 7).save(buf, "PNG")
    image = buf.getvalue()

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.data())
    def run(data) -> None:
        with bounds.case():
            one(data)

    def one(data) -> None:
        path = tmp_path / "case.upload"
        path.write_bytes(_mutate(data.draw, image))
        try:
            width, height = check_image(path, "a.png", 512)
            assert max(width, height) <= 512
        except UploadError as err:
            assert err.status in (415, 422)
        path.write_bytes(_mutate(data.draw, clip))
        try:
            check_video_header(path, "a.mp4", 256, 60)
        except UploadError as err:
            assert err.status in (415, 422)

    bounds = Bounds("uploaded images and videos")
    run()
    bounds.check()


def test_fuzz_forms_images_and_videos(tmp_path):
    pytest.importorskip("hypothesis")
    _fuzz_forms(200)
    _fuzz_media(100, tmp_path)


@pytest.mark.slow
def test_fuzz_forms_images_and_videos_long(tmp_path):
    pytest.importorskip("hypothesis")
    _fuzz_forms(5000)
    _fuzz_media(3000, tmp_path)
