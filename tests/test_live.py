"""fomm live: capture (newest frame wins), One-Euro smoothing, recording, the headless loop."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fomm.cli.main import main
from fomm.errors import FommError, InputError
from fomm.live import LiveOptions, run_live
from fomm.live.capture import Capture
from fomm.live.sinks import Recorder, VirtualCamera, Window
from fomm.live.smoothing import KeypointSmoother, OneEuroFilter
from fomm.media.image import write_image
from fomm.media.video import iter_frames, probe
from fomm.models.motion import Keypoints


def moving_face_clip(path: Path, frames: int, size=(320, 240), fps: float = 15.0) -> Path:
    """A real face (skimage's astronaut) shifted and turned over time, written with OpenCV."""
    from skimage import data

    face = data.astronaut()[0:300, 100:400]
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        affine = cv2.getRotationMatrix2D((150, 150), 6 * np.sin(i / 3), 0.7)
        affine[:, 2] += (w / 2 - 150 + 25 * np.sin(i / 4), h / 2 - 150)
        frame = cv2.warpAffine(face, affine, (w, h), borderValue=(70, 80, 90))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def live_media(tmp_path_factory) -> tuple[Path, Path]:
    from skimage import data

    root = tmp_path_factory.mktemp("live")
    photo = root / "photo.png"
    write_image(photo, data.astronaut()[:384, 64:448])
    return photo, moving_face_clip(root / "camera.mp4", 12)


# capture ------------------------------------------------------------------------------------


def test_capture_keeps_only_the_newest_frame(live_media):
    capture = Capture(str(live_media[1]))  # not started: frames are published by hand
    for value in (10, 20, 30):
        capture._publish(np.full((4, 4, 3), value, np.uint8))
    frame = capture.read(timeout=0)
    assert frame is not None and frame.index == 2 and frame.image[0, 0, 0] == 30
    assert (capture.frames_in, capture.dropped) == (3, 2)
    assert capture.read(timeout=0) is None  # nothing new: nothing queued
    capture.close()


def test_capture_file_delivers_every_frame_when_not_realtime(live_media):
    seen = []
    with Capture(str(live_media[1]), realtime=False) as capture:
        while (frame := capture.read(timeout=5)) is not None:
            seen.append(frame.index)
            assert frame.image.shape == (240, 320, 3)
    assert seen == list(range(12))
    assert capture.dropped == 0 and capture.ended == "end of stream"


def test_capture_counts_every_frame_in_realtime(live_media):
    taken = 0
    with Capture(str(live_media[1])) as capture:
        while capture.read(timeout=5) is not None:
            taken += 1
    assert capture.frames_in == 12 and taken + capture.dropped == 12


def test_capture_errors(tmp_path):
    with pytest.raises(InputError, match="camera not found"):
        Capture(str(tmp_path / "missing.mp4"))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(FommError, match="cannot open"):
        Capture(str(tmp_path / "bad.mp4"))


# smoothing ----------------------------------------------------------------------------------


def test_one_euro_passes_first_and_constant_samples():
    f = OneEuroFilter()
    x = np.array([0.3, -0.2])
    for i in range(5):
        np.testing.assert_allclose(f(x, i / 30), x)


def test_one_euro_removes_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    noisy = 0.02 * rng.standard_normal(300)
    smooth = np.array([f(np.array(v), i / 30) for i, v in enumerate(noisy)])
    assert smooth[30:].std() < 0.4 * noisy[30:].std()
    f.reset()
    ramp = [f(np.array(i / 30), i / 30) for i in range(60)]  # 1 unit per second
    assert abs(float(ramp[-1]) - 59 / 30) < 0.1  # fast motion: little lag


def test_keypoint_smoother_on_tensors():
    smoother = KeypointSmoother()
    kp = Keypoints(torch.zeros(1, 5, 2), torch.eye(2).expand(1, 5, 2, 2).clone())
    out = smoother(kp, 0.0)
    assert torch.equal(out.value, kp.value)
    moved = smoother(Keypoints(kp.value + 0.1, kp.jacobian), 1 / 30)
    assert isinstance(moved.value, torch.Tensor) and moved.value.shape == (1, 5, 2)
    assert 0 < float(moved.value.mean()) < 0.1  # smoothed towards the new position
    assert torch.allclose(moved.jacobian, kp.jacobian)


# sinks --------------------------------------------------------------------------------------


def test_recorder_keeps_frames_on_screen_until_the_next(tmp_path):
    recorder = Recorder(tmp_path / "rec.mp4", fps=10)
    for t, value in ((0.0, 0), (0.55, 120), (1.0, 250)):
        recorder.write(np.full((32, 32, 3), value, np.uint8), now=100 + t)
    recorder.close()
    info = probe(tmp_path / "rec.mp4")
    frames = list(iter_frames(tmp_path / "rec.mp4"))
    assert len(frames) == 3 and info.duration == pytest.approx(1.1, abs=0.05)


def test_virtual_camera_missing_says_how_to_get_it():
    try:
        import pyvirtualcam  # noqa: F401
    except ImportError:
        with pytest.raises(FommError, match=r"fomm\[live\]"):
            VirtualCamera(64, 64, 30)
    else:  # installed: without a backend the message names v4l2loopback and OBS
        try:
            VirtualCamera(64, 64, 30).close()
        except FommError as exc:
            assert "v4l2loopback" in str(exc) and "OBS" in str(exc)


def test_window_without_gui_says_what_to_use():
    try:
        Window().close()
    except FommError as exc:
        assert "--no-window" in str(exc) and "--record" in str(exc)


# the loop -----------------------------------------------------------------------------------


def test_live_loop_headless_every_frame(live_media, tiny_ckpt, tmp_path):
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator

    photo, clip = live_media
    animator = Animator(*load_model(tiny_ckpt), device="cpu")
    opts = LiveOptions(
        camera=str(clip),
        window=False,
        record=tmp_path / "out.mp4",
        stats=tmp_path / "stats.json",
        realtime=False,
    )
    stats = run_live(photo, opts, animator=animator, log=False)
    assert (stats.frames_in, stats.frames_out, stats.dropped) == (12, 12, 0)
    assert stats.face_frames >= 10  # the face is found in the first frame and followed
    assert stats.ended == "end of stream"
    saved = json.loads((tmp_path / "stats.json").read_text())
    for key in (
        "frames_in",
        "frames_out",
        "dropped",
        "fps_out",
        "latency_ms_p50",
        "latency_ms_p95",
    ):
        assert key in saved
    frames = list(iter_frames(tmp_path / "out.mp4"))
    assert frames[0].shape == (384, 384, 3)
    assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 0.1  # it moves


def test_live_cli_headless(live_media, tiny_ckpt, tmp_path):
    photo, clip = live_media
    main(
        [
            "live",
            str(photo),
            "--camera",
            str(clip),
            "--record",
            str(tmp_path / "out.mp4"),
            "--no-window",
            "--stats",
            str(tmp_path / "stats.json"),
            "-c",
            str(tiny_ckpt),
            "--no-smoothing",
        ]
    )
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames_in"] == 12
    assert stats["frames_out"] + stats["dropped"] == 12 and stats["frames_out"] >= 1
    assert (tmp_path / "out.mp4").exists()


def test_live_errors(live_media, tiny_ckpt, tmp_path, capsys):
    photo, clip = live_media
    with pytest.raises(FommError, match="nothing to show"):
        run_live(photo, LiveOptions(camera=str(clip), window=False))
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "live",
                str(photo),
                "--camera",
                str(tmp_path / "none.mp4"),
                "--no-window",
                "--record",
                str(tmp_path / "o.mp4"),
                "-c",
                str(tiny_ckpt),
            ]
        )
    assert exit_info.value.code == 2 and "camera not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "live",
                str(photo),
                "--camera",
                str(clip),
                "--no-window",
                "--record",
                str(tmp_path / "o.mp4"),
                "--best-frame",
                "3",
                "-c",
                str(tiny_ckpt),
            ]
        )
    assert "reference is the first frame" in capsys.readouterr().err


class ScriptedWindow:
    """Stands in for the preview window: presses the given keys, one per shown frame."""

    keys: list[str] = []

    def __init__(self) -> None:
        self.closed = False
        self.shown: list[list[str]] = []

    def show(self, frame: np.ndarray, lines: list[str]) -> int:
        self.shown.append(lines)
        key = self.keys[len(self.shown) - 1] if len(self.shown) <= len(self.keys) else ""
        return ord(key) if key else -1

    def close(self) -> None:
        pass


@pytest.mark.parametrize("overlap", [False, True])
def test_live_keys_reference_pause_quit(live_media, tiny_ckpt, monkeypatch, caplog, overlap):
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator
    from fomm.live import loop

    photo, clip = live_media
    ScriptedWindow.keys = ["", "r", "", " ", "", " ", "", "q"]
    monkeypatch.setattr(loop, "Window", ScriptedWindow)
    animator = Animator(*load_model(tiny_ckpt), device="cpu", backend="onnx")
    opts = LiveOptions(camera=str(clip), realtime=False, overlap=overlap)
    with caplog.at_level("INFO", logger="fomm"):  # run_live logs its lines (fomm live shows them)
        stats = run_live(photo, opts, animator=animator)
    err = caplog.text
    assert stats.ended == "quit"
    assert err.count("reference pose taken") == 2  # the first face, then again after r
    # 8 frames shown, 2 of them while paused; overlapped, the frame rendering when space is
    # pressed is still shown, so 1 of them (and the one rendering at q is dropped)
    assert stats.frames_out == (7 if overlap else 6)
    assert stats.frames_in == stats.frames_out + stats.dropped


def test_framer_follows_a_face_and_lets_it_go(live_media):
    from fomm.live.framing import LOST_AFTER, LiveFramer

    frames = []
    with Capture(str(live_media[1]), realtime=False) as capture:
        while (frame := capture.read(timeout=5)) is not None:
            frames.append(frame.image)
    blank = np.full_like(frames[0], 80)
    framer = LiveFramer(64)
    assert framer(blank, 0.0) is None  # nothing yet
    crops = [framer(f, (i + 1) / 15) for i, f in enumerate(frames[:6])]
    assert all(c is not None and c.shape == (64, 64, 3) for c in crops)
    gone = [framer(blank, 1 + i / 15) for i in range(framer.detect_every - 1 + LOST_AFTER)]
    assert gone[-1] is None and not framer.has_face


class StoppingCamera:
    """A cv2.VideoCapture stand-in: a camera that delivers three frames, then nothing."""

    def __init__(self, *args) -> None:
        self.count = 0

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return True

    def get(self, prop: int) -> float:
        return 30.0

    def set(self, prop: int, value: float) -> bool:
        return True

    def read(self):
        self.count += 1
        if self.count > 3:
            return False, None
        return True, np.zeros((8, 8, 3), np.uint8)

    def release(self) -> None:
        pass


def test_a_camera_that_stops_ends_cleanly(monkeypatch):
    from fomm.live import capture as capture_module

    monkeypatch.setattr(capture_module.cv2, "VideoCapture", StoppingCamera)
    monkeypatch.setattr(capture_module, "STALL_S", 0.2)
    taken = 0
    with Capture("0") as camera:
        while camera.read(timeout=5) is not None:
            taken += 1
    assert camera.ended == "camera 0 stopped delivering frames"
    assert camera.frames_in == 3 and taken + camera.dropped == 3


def test_live_detail_is_off_by_default():
    from fomm.cli.main import build_parser

    assert LiveOptions().animate.detail is False
    parser = build_parser()
    args = parser.parse_args(["live", "photo.png"])
    assert args.detail == "off"
    assert parser.parse_args(["live", "photo.png", "--detail", "on"]).detail == "on"
    assert parser.parse_args(["animate", "a.png", "b.mp4"]).detail == "on"  # files keep it


def test_glue_threads_only_with_onnx():
    from types import SimpleNamespace

    from fomm.live.loop import glue_threads

    before = torch.get_num_threads()
    with glue_threads(SimpleNamespace(backend="onnx")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with glue_threads(SimpleNamespace(backend="torch")):
        assert torch.get_num_threads() == before


def test_overlapped_frames_are_the_sequential_ones(live_media, tiny_ckpt, monkeypatch, tmp_path):
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator
    from fomm.live import loop

    photo, clip = live_media
    animator = Animator(*load_model(tiny_ckpt), device="cpu", backend="onnx")
    sent: list[np.ndarray] = []
    send = loop._Sinks.send
    monkeypatch.setattr(
        loop._Sinks, "send", lambda self, f, lines: (sent.append(f), send(self, f, lines))[1]
    )
    results = {}
    for overlap in (False, True):
        sent.clear()
        opts = LiveOptions(
            camera=str(clip),
            window=False,
            record=tmp_path / f"out-{overlap}.mp4",
            realtime=False,
            smoothing=False,  # One-Euro follows the arrival times, which differ
            overlap=overlap,
        )
        stats = run_live(photo, opts, animator=animator, log=False)
        assert (stats.frames_out, stats.dropped) == (12, 0)  # every frame, in order
        results[overlap] = list(sent)
    assert len(results[True]) == 12
    for a, b in zip(results[False], results[True], strict=True):
        np.testing.assert_array_equal(a, b)


def test_live_runs_fp32_on_onnx_runtime_at_auto(tiny_ckpt, monkeypatch, tmp_path):
    """Without OpenVINO, auto runs live at fp32 on ONNX Runtime (never bf16 eager)."""
    from fomm.checkpoints.loading import load_model
    from fomm.config import AnimateOptions
    from fomm.inference.animator import Animator
    from fomm.live import loop
    from fomm.live.loop import live_animator, live_precision
    from fomm.runtime import backends

    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loop, "openvino_available", lambda: False)
    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    assert live_precision("auto", "cpu") == "fp32"  # onnxruntime is a test dependency
    assert live_precision("bf16", "cpu") == "bf16"  # asked for: kept
    models, config = load_model(tiny_ckpt)
    fp32 = Animator(models, config, device="cpu", precision="fp32")
    assert live_animator(fp32, AnimateOptions(device="cpu")) is fp32
    bf16 = Animator(models, config, device="cpu", precision="bf16")
    live = live_animator(bf16, AnimateOptions(device="cpu"))  # a server loaded at auto → bf16
    assert (live.precision, live.backend) == ("fp32", "onnx")
    assert live.generator is bf16.generator  # the same networks
    assert live_animator(bf16, AnimateOptions(device="cpu", precision="bf16")) is bf16


def test_live_runs_on_openvino_at_auto(tiny_ckpt, monkeypatch, tmp_path):
    """With OpenVINO, auto live is what auto is for files: OpenVINO, bf16 islands on a CPU with
    native bf16, and a server's model loaded at auto is used as it is."""
    pytest.importorskip("openvino")
    from fomm.checkpoints.loading import load_model
    from fomm.config import AnimateOptions
    from fomm.inference.animator import Animator
    from fomm.live.loop import glue_threads, live_animator, live_precision
    from fomm.runtime import precision

    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    # random weights: auto's check of the model passes here (it has tests of its own)
    monkeypatch.setattr(Animator, "_probe", lambda self: {"mean": 0.0, "p99": 0.0})
    assert live_precision("auto", "cpu") == "auto"
    models, config = load_model(tiny_ckpt)
    auto = Animator(models, config, device="cpu", precision="auto")
    assert (auto.backend, auto.precision) == ("openvino", "bf16")
    assert live_animator(auto, AnimateOptions(device="cpu")) is auto
    with glue_threads(auto):  # torch's own work on one thread beside OpenVINO's
        assert torch.get_num_threads() == 1


def test_live_network_size(live_media, tiny_ckpt, tmp_path):
    from fomm.checkpoints.loading import load_model
    from fomm.cli.main import build_parser
    from fomm.inference.animator import Animator
    from fomm.live.loop import MAX_SIDE

    photo, clip = live_media
    opts = LiveOptions(
        camera=str(clip),
        window=False,
        record=tmp_path / "out.mp4",
        realtime=False,
        network_size=128,
    )
    stats = run_live(
        photo, opts, animator=Animator(*load_model(tiny_ckpt), device="cpu"), log=False
    )
    assert stats.frames_out == 12 and stats.face_frames >= 10  # a 64 px model run at 128
    assert stats.network_size == 128 and stats.cpu_ms_per_frame > 0
    assert next(iter_frames(tmp_path / "out.mp4")).shape == (384, 384, 3)  # what users see
    with pytest.raises(FommError, match="multiple of 64"):
        run_live(
            photo,
            dataclasses.replace(opts, network_size=100),
            animator=Animator(*load_model(tiny_ckpt), device="cpu"),
            log=False,
        )
    args = build_parser().parse_args(["live", "p.png", "--network-size", "128"])
    assert args.network_size == 128 and args.overlap  # overlapped by default
    assert args.max_side == MAX_SIDE and args.network_size == 128
    assert build_parser().parse_args(["live", "p.png", "--max-side", "0"]).max_side == 0
    stats = run_live(  # the photo scaled down: a smaller output
        photo, dataclasses.replace(opts, max_frames=3, max_side=256),
        animator=Animator(*load_model(tiny_ckpt), device="cpu"), log=False,
    )
    assert stats.frames_out >= 1
    assert next(iter_frames(tmp_path / "out.mp4")).shape == (256, 256, 3)
    assert not build_parser().parse_args(["live", "p.png", "--no-overlap"]).overlap


def test_auto_network_size_within_the_budget(tiny_ckpt, monkeypatch, tmp_path):
    """--network-size's automatic choice: the largest candidate size (the model's, 3/4, 1/2)
    whose networks fit the budget, else the smallest; the networks run on the threads asked."""
    from fomm.checkpoints.loading import load_model
    from fomm.config import AnimateOptions
    from fomm.inference.animator import Animator
    from fomm.live.loop import auto_network_size, live_animator, network_ms, network_threads

    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    models, config = load_model(tiny_ckpt)
    big = Animator(models, dataclasses.replace(config, image_size=256), device="cpu",
                   precision="fp32")
    opts = AnimateOptions(device="cpu", precision="fp32")
    image = np.zeros((100, 100, 3), np.uint8)
    assert network_ms(big, image, frames=2) > 0
    kept, measured = auto_network_size(big, opts, image, threads=1, budget_ms=1e9)
    assert kept.size == 256 and [m["size"] for m in measured] == [256]
    smaller, measured = auto_network_size(big, opts, image, threads=1, budget_ms=0.0)
    assert smaller.size == 128 and [m["size"] for m in measured] == [256, 192, 128]
    assert smaller.generator is big.generator  # the same networks, run at 192
    assert max(m["ms"] for m in measured) > 0
    small = Animator(models, config, device="cpu", precision="fp32")  # 64 px: nothing smaller
    assert auto_network_size(small, opts, image, budget_ms=0.0)[0].size == 64
    assert network_threads() >= 1
    if small.backend in ("onnx", "openvino"):  # asked threads: a new animator
        assert live_animator(small, opts, threads=1) is not small
    assert live_animator(small, opts) is small


def test_auto_network_size_leaves_room_for_the_expression_layer(monkeypatch, tiny_ckpt,
                                                                tmp_path):
    """With the layer on the networks get the smaller budget: on timings like the 2-core AMD
    EPYC's (256 px 78 ms, 192 px 45, 128 px 24) live runs at 192 without it, at 128 with it."""
    from fomm.checkpoints.loading import load_model
    from fomm.config import AnimateOptions
    from fomm.inference.animator import Animator
    from fomm.live import loop

    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    models, config = load_model(tiny_ckpt)
    big = Animator(models, dataclasses.replace(config, image_size=256), device="cpu",
                   precision="fp32")
    timings = {256: 78.0, 192: 45.0, 128: 24.0}
    monkeypatch.setattr(loop, "network_ms", lambda animator, image, **_: timings[animator.size])
    image = np.zeros((100, 100, 3), np.uint8)
    chosen = {on: loop.auto_network_size(big, AnimateOptions(device="cpu", precision="fp32",
                                                             expression=on), image)[0].size
              for on in (False, True)}
    assert chosen == {False: 192, True: 128}
    assert loop.network_budget_ms(AnimateOptions(expression=True)) < loop.NETWORK_BUDGET_MS


def test_framer_looks_near_the_followed_face_first(live_media, monkeypatch):
    from fomm.live import framing

    frames = []
    with Capture(str(live_media[1]), realtime=False) as capture:
        while (frame := capture.read(timeout=5)) is not None:
            frames.append(frame.image)
    seen: list[tuple[int, ...]] = []
    detect = framing.detect_faces

    def spy(image, **kwargs):
        seen.append(image.shape[:2])
        return detect(image, **kwargs)

    monkeypatch.setattr(framing, "detect_faces", spy)
    boxes = {}
    for near in (True, False):
        seen.clear()
        framer = framing.LiveFramer(64, near=near)
        boxes[near] = []
        for i, f in enumerate(frames):
            assert framer(f, i / 15) is not None
            boxes[near].append(np.array(framer._face))
        assert seen[0] == frames[0].shape[:2]  # no face yet: the whole frame
        if near:  # then only the square around the followed face
            assert all(shape[0] < 240 and shape[1] < 320 for shape in seen[1:])
        else:
            assert all(shape == (240, 320) for shape in seen)
    size = boxes[False][0][2] - boxes[False][0][0]
    for a, b in zip(boxes[True], boxes[False], strict=True):
        assert np.abs(a - b).max() < 0.1 * size  # the same face box, to detector jitter
