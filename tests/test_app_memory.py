"""The server's peak memory over hostile uploads (issue 15 §4): within 500 MB of its idle peak.

``fomm serve`` runs as a subprocess so that its own peak resident set (``VmHWM``) is measured: after
start-up and one ordinary job (the idle peak), then after the hostile inputs of
test_app_hostile.py, sent three at a time, and a job on a 16-bit 4096² photo.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

import test_app as base  # noqa: E402
from test_app import NO_CROP, wait  # noqa: E402
from test_app_hostile import encode  # noqa: E402
from tiny import tiny_models  # noqa: E402

from fomm.checkpoints import save_checkpoint  # noqa: E402

media = base.media  # the fixture of test_app
MB = 2**20
BUDGET = 500 * MB


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def black_png(side: int) -> bytes:
    """A black RGB PNG of side² pixels, built without holding its pixels (deflate blocks repeat
    after a full flush, so one block of rows is compressed once and its bytes repeated)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = 1000
    assert side % rows == 0
    block = (b"\0" * (1 + 3 * side)) * rows
    deflate = zlib.compressobj(1, zlib.DEFLATED, -15)
    piece = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(side // rows):
        adler = zlib.adler32(block, adler)
    stream = b"\x78\x01" + piece * (side // rows) + b"\x03\x00" + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream)
            + chunk(b"IEND", b""))


def png_in_mov(path: Path, side: int) -> Path:
    """A MOV whose one frame is a side² PNG (the probe's 798 KB, 16000² upload)."""
    from fractions import Fraction

    with av.open(str(path), "w") as out:
        stream = out.add_stream("png", rate=1)
        stream.width = stream.height = side
        stream.pix_fmt = "rgb24"
        packet = av.Packet(black_png(side))
        packet.stream, packet.pts, packet.dts = stream, 0, 0
        packet.time_base, packet.duration = Fraction(1, 1), 1
        out.mux(packet)
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    deep = folder / "deep.png"  # 16-bit RGBA 4096², compresses to a few hundred KB
    rgba = np.full((4096, 4096, 4), 40000, np.uint16)
    rgba[:, :, 3] = 65535
    rgba[1000:1200, 1000:3000, 0] = np.linspace(0, 65535, 2000, dtype=np.uint16)
    cv2.imwrite(str(deep), rgba)
    concat = folder / "driving.upload"
    concat.write_text("ffconcat version 1.0\nfile driving.upload\n")
    small = encode(folder / "small.h264", frames=3, fps=25, size=64, fmt="h264")
    return {"deep": deep, "concat": concat, "png_mov": png_in_mov(folder / "png.mov", 16000),
            "fast": encode(folder / "fast.mp4", frames=400, fps=2000),
            "raw": encode(folder / "five-seconds.h264", frames=125, fps=25, fmt="h264"),
            "small": small}


def post(url: str, source: Path, driving: Path, **fields) -> httpx.Response:
    files = {"source": (source.name, source.read_bytes(), "image/png"),
             "driving": (driving.name, driving.read_bytes(), "video/mp4")}
    return httpx.post(f"{url}/v1/animations", files=files, data={**NO_CROP, **fields},
                      timeout=120)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc (Linux)")
def test_peak_memory_over_hostile_uploads_stays_within_500_mb_of_idle(tmp_path, media, hostile):
    models, cfg = tiny_models(image_size=64)
    save_checkpoint(tmp_path / "tiny.safetensors", models, cfg)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fomm", "serve", "--checkpoint", str(tmp_path / "tiny.safetensors"),
         "--device", "cpu", "--port", str(port), "--data-dir", str(tmp_path / "data"),
         "--max-duration-s", "2", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "fomm serve did not start"
            time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=60) as http:  # one ordinary job: warm
            r = post(url, media["source"], media["clip"])
            assert wait(http, r.json()["status_url"])["status"] == "succeeded"
        idle = peak_rss(proc.pid)

        source = media["source"]
        cases = [  # (source, driving, fields, expected status)
            (hostile["deep"], hostile["concat"], {}, 415),
            (hostile["deep"], hostile["concat"], {}, 415),
            (hostile["deep"], hostile["concat"], {}, 415),
            (source, hostile["png_mov"], {}, 415),
            (source, hostile["png_mov"], {}, 415),
            (source, hostile["fast"], {}, 422),
            (source, hostile["raw"], {}, 422),
            (source, media["clip"], {"face_index": "²"}, 400),
        ]
        with ThreadPoolExecutor(3) as pool:  # three at a time, as the probe sent them
            answers = list(pool.map(lambda c: post(url, c[0], c[1], **c[2]), cases))
        for (_, driving, _, status), answer in zip(cases, answers, strict=True):
            assert answer.status_code == status, (driving.name, answer.text)
        checked = peak_rss(proc.pid)
        # a 16-bit photo that passes: its job decodes it (converted in stripes, no float64 copy)
        r = post(url, hostile["deep"], hostile["small"])
        assert r.status_code == 202, r.text
        with httpx.Client(base_url=url, timeout=60) as http:
            assert wait(http, r.json()["status_url"], timeout=120)["status"] == "succeeded"
        peak = peak_rss(proc.pid)
        print(f"\nfomm serve peak RSS: idle {idle / MB:.0f} MB, after the refused uploads "
              f"{checked / MB:.0f} MB, after the 16-bit job {peak / MB:.0f} MB "
              f"(+{(peak - idle) / MB:.0f} MB)")
        assert peak - idle <= BUDGET, (idle / MB, peak / MB)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
