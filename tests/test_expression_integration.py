"""The expression layer wired into fomm animate, the seed command and fomm live: options, flags,
the parity of ``--expression off`` with the motion model's own frames, and the layer's effect."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from media import astronaut, save, talking_clip
from PIL import Image

from fomm.config import ANIMATION_REGIONS, AnimateOptions
from fomm.errors import ConfigError
from fomm.inference.pipeline import animate_file

ROOT = Path(__file__).resolve().parents[1]
FLAGS = [
    "--expression",
    "off",
    "--animation-region",
    "eyes",
    "--expression-scale",
    "1.5",
    "--eye-openness",
    "0.5",
    "--mouth-openness",
    "-0.25",
    "--smile",
    "1",
]


def _frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def _mesh_available() -> bool:
    from fomm.faces import mesh

    return mesh.available()


needs_mesh = pytest.mark.skipif(not _mesh_available(), reason="no face-mesh model installed")

# options ------------------------------------------------------------------------------------


def test_expression_options_defaults_and_their_one_mapping():
    opts = AnimateOptions()
    assert (opts.expression, opts.animation_region, opts.expression_scale) == (True, "all", 1.0)
    assert (opts.eye_offset, opts.mouth_offset, opts.smile_offset) == (0.0, 0.0, 0.0)
    from fomm.expression import REGIONS, ExpressionOptions
    from fomm.inference.pipeline import expression_options

    assert tuple(REGIONS) == ANIMATION_REGIONS
    mapped = expression_options(
        AnimateOptions(
            animation_region="lips",
            expression_scale=0.5,
            eye_offset=0.25,
            mouth_offset=-1,
            smile_offset=1,
        )
    )
    assert mapped == ExpressionOptions(region="lips", scale=0.5, eyes=0.25, mouth=-1, smile=1)


@pytest.mark.parametrize(("changes", "message"), [
    ({"animation_region": "face"}, "--animation-region must be one of all, pose, expression"),
    ({"expression_scale": 2.5}, "--expression-scale must be between 0 and 2, got 2.5"),
    ({"expression_scale": -0.1}, "--expression-scale must be between 0 and 2"),
    ({"eye_offset": 1.5}, "--eye-openness must be between -1 and 1, got 1.5"),
    ({"mouth_offset": float("nan")}, "--mouth-openness must be between -1 and 1, got nan"),
    ({"smile_offset": -2}, "--smile must be between -1 and 1, got -2"),
    ({"smile_offset": True}, "--smile must be between -1 and 1"),
])  # fmt: skip
def test_expression_options_are_validated(changes, message):
    with pytest.raises(ConfigError) as err:
        AnimateOptions(**changes)
    assert message in str(err.value) and "\n" not in str(err.value)


# command lines ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["animate", "a.png", "b.mp4"], ["live", "a.png"]])
def test_cli_flags_reach_the_options(command):
    from fomm.cli.main import build_parser, options_from_args

    default = options_from_args(build_parser().parse_args(command))
    assert (default.expression, default.animation_region, default.expression_scale) == (
        True,
        "all",
        1.0,
    )
    opts = options_from_args(build_parser().parse_args([*command, *FLAGS]))
    assert (opts.expression, opts.animation_region, opts.expression_scale) == (False, "eyes", 1.5)
    assert (opts.eye_offset, opts.mouth_offset, opts.smile_offset) == (0.5, -0.25, 1.0)


@pytest.mark.parametrize(("flags", "message"), [
    (["--expression", "maybe"], "argument --expression: invalid choice: 'maybe'"),
    (["--animation-region", "face"], "argument --animation-region: invalid choice: 'face'"),
    (["--expression-scale", "3"], "argument --expression-scale: must be between 0 and 2, got 3"),
    (["--eye-openness", "-1.5"], "argument --eye-openness: must be between -1 and 1, got -1.5"),
    (["--mouth-openness", "wide"], "argument --mouth-openness: expected a float, got 'wide'"),
    (["--smile", "2"], "argument --smile: must be between -1 and 1, got 2"),
])  # fmt: skip
def test_cli_bad_values_are_one_line_errors(flags, message, capsys):
    from fomm.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["animate", "a.png", "b.mp4", *flags])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def _seed_module():
    spec = importlib.util.spec_from_file_location(
        "first_order_demo", ROOT / "tools" / "first-order-demo.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seed_argv(monkeypatch, *flags: str) -> list[str]:
    """The ``fomm`` command line the seed command runs for ``flags``."""
    import fomm.cli.main

    seen: list[list[str]] = []
    monkeypatch.setattr(fomm.cli.main, "main", lambda argv: seen.append(list(argv)))
    _seed_module().main(
        [
            "--driving_video",
            "d.mp4",
            "--source_image",
            "s.png",
            "--relative",
            "--adapt_scale",
            *flags,
        ]
    )
    return seen[0]


def _after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_seed_command_expression_flags(monkeypatch, capsys):
    argv = _seed_argv(monkeypatch)  # the seed's own command: expression on, region all
    assert _after(argv, "--expression") == "on" and _after(argv, "--animation-region") == "all"
    assert "--relative" in argv and "--adapt-scale" in argv
    argv = _seed_argv(
        monkeypatch,
        "--expression",
        "off",
        "--animation_region",
        "lips",
        "--expression_scale",
        "0.5",
        "--eye_openness",
        "-1",
        "--mouth_openness",
        "0.75",
        "--smile",
        "0.25",
    )
    from fomm.cli.main import build_parser, options_from_args

    opts = options_from_args(build_parser().parse_args(argv))  # fomm's parser takes them
    assert (opts.expression, opts.animation_region, opts.expression_scale) == (False, "lips", 0.5)
    assert (opts.eye_offset, opts.mouth_offset, opts.smile_offset) == (-1.0, 0.75, 0.25)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        _seed_argv(monkeypatch, "--expression_scale", "5")
    assert exc.value.code == 2
    assert "argument --expression_scale: must be between 0 and 2, got 5" in capsys.readouterr().err


# files --------------------------------------------------------------------------------------


def _todays_frames(photo: Path, clip: Path, animator, opts: AnimateOptions) -> list[np.ndarray]:
    """The frames of fomm animate as the motion model alone makes them: source crops, framed
    driving frames, the Animator, the paste-back; no expression layer anywhere."""
    from fomm.faces.track import frame_driving
    from fomm.inference.pipeline import source_target
    from fomm.media.image import read_image
    from fomm.media.video import iter_frames

    target = source_target(read_image(photo), animator.size, opts)
    details = target.details or [None] * len(target.crops)
    sources = [animator.prepare_source(c, detail=d) for c, d in zip(target.crops, details)]
    frames = frame_driving(iter_frames(clip, max_frames=opts.max_frames), animator.size)
    return [
        target.paste(animated)
        for animated in animator.animate_many(
            sources, frames, opts.relative, opts.adapt_scale, None, opts.batch_size
        )
    ]


@pytest.mark.parametrize("detail", [True, False])
def test_expression_off_gives_the_motion_models_frames_exactly(
    tmp_path, tiny_ckpt, monkeypatch, detail
):
    import fomm.inference.pipeline as pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("the expression layer was built with expression off")

    monkeypatch.setattr(pipeline, "expression_options", refuse)
    photo = save(tmp_path / "photo.png", astronaut())
    opts = AnimateOptions(
        expression=False, detail=detail, max_frames=5, batch_size=2, progress=False
    )
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator

    animator = Animator(*load_model(tiny_ckpt), device="cpu")
    animate_file(photo, talking_clip(), tmp_path / "off/", opts, animator=animator)
    expected = np.stack(_todays_frames(photo, talking_clip(), animator, opts))
    np.testing.assert_array_equal(_frames(tmp_path / "off"), expected)


def test_no_crop_leaves_the_layer_off_and_says_so_once(tmp_path, tiny_ckpt, caplog):
    photo = save(tmp_path / "square.png", np.full((64, 64, 3), 90, np.uint8))
    frames = [np.full((64, 64, 3), 40 + 20 * i, np.uint8) for i in range(4)]
    clip = tmp_path / "clip"
    clip.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(clip / f"{i}.png")
    runs = {}
    for expression in (True, False):
        out = tmp_path / f"out-{expression}/"
        animate_file(
            photo,
            clip,
            out,
            AnimateOptions(crop=False, expression=expression),
            checkpoint=tiny_ckpt,
        )
        runs[expression] = _frames(out)
    err = caplog.text  # a logged note (fomm animate shows it on stderr)
    assert err.count("the expression layer needs a face crop: off with --no-crop") == 1
    np.testing.assert_array_equal(runs[True], runs[False])


def _two_frame_clip(folder: Path, indices: tuple[int, int]) -> Path:
    """A driving "clip" of two frames of the packaged talking clip (a PNG folder)."""
    from media import talking_frame

    folder.mkdir()
    for i, index in enumerate(indices):
        Image.fromarray(talking_frame(index)).save(folder / f"{i}.png")
    return folder


def _mouth_and_crop(photo: np.ndarray) -> tuple[tuple[int, int, int, int], tuple[int, ...]]:
    """The photo's mouth box (lips' landmarks, padded) and the face crop's box, in pixels."""
    from fomm.faces.crop import square_box
    from fomm.faces.detect import detect_faces
    from fomm.faces.mesh import FaceMesh

    face = detect_faces(photo)[0]
    marks = FaceMesh().detect(photo, tuple(face.box))
    lips = np.concatenate([marks.group(g) for g in ("lips_outer_upper", "lips_outer_lower")])
    (x0, y0), (x1, y1) = lips.min(0) - 6, lips.max(0) + 6
    box = tuple(int(round(v)) for v in square_box(face, photo.shape))
    return (int(x0), int(y0), int(x1), int(y1)), box


@pytest.fixture(scope="module")
def bundled_animator():
    from fomm.checkpoints.loading import bundled_model_path, load_model
    from fomm.inference.animator import Animator

    if bundled_model_path() is None:
        pytest.skip("no bundled model in this install")
    return Animator(*load_model(None), device="cpu")


@needs_mesh
def test_expression_on_opens_the_mouth_when_the_driver_does(tmp_path, bundled_animator):
    photo = save(tmp_path / "photo.png", astronaut())
    clip = _two_frame_clip(tmp_path / "clip", (0, 59))  # mouth closed, then wide open
    runs = {}
    for expression in (False, True):
        out = tmp_path / f"out-{expression}/"
        animate_file(
            photo,
            clip,
            out,
            AnimateOptions(expression=expression, progress=False),
            animator=bundled_animator,
        )
        runs[expression] = _frames(out).astype(float)
    (mx0, my0, mx1, my1), (cx0, cy0, cx1, cy1) = _mouth_and_crop(astronaut())
    change = np.abs(runs[True] - runs[False]).mean(axis=3)  # (2, H, W)
    mouth = change[:, my0:my1, mx0:mx1].mean(axis=(1, 2))
    assert mouth[1] > 15 and mouth[1] > 3 * mouth[0]  # opened with the driver, not before
    outside = np.ones(change.shape[1:], bool)
    outside[max(cy0, 0) : cy1, max(cx0, 0) : cx1] = False
    assert change[:, outside].max() == 0  # the layer works inside the face crop only


@needs_mesh
def test_each_result_gets_its_own_driving_frame_whatever_the_batch(tmp_path, tiny_ckpt):
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator

    animator = Animator(*load_model(tiny_ckpt), device="cpu")
    photo = save(tmp_path / "photo.png", astronaut())
    clip = _two_frame_clip(tmp_path / "clip", (0, 59))
    runs = []
    for batch in (1, 2):  # results one by one, or both after one network call
        out = tmp_path / f"out-{batch}/"
        animate_file(photo, clip, out, AnimateOptions(batch_size=batch, detail=False,
                                                      progress=False), animator=animator)
        runs.append(_frames(out))
    np.testing.assert_array_equal(runs[0], runs[1])


@needs_mesh
def test_region_expression_keeps_the_photos_head(tmp_path, bundled_animator):
    image = astronaut()
    photo = save(tmp_path / "photo.png", image)
    clip = _two_frame_clip(tmp_path / "clip", (0, 59))
    out = tmp_path / "out/"
    animate_file(
        photo,
        clip,
        out,
        AnimateOptions(animation_region="expression", progress=False),
        animator=bundled_animator,
    )
    frames = _frames(out).astype(float)
    (mx0, my0, mx1, my1), (cx0, cy0, cx1, cy1) = _mouth_and_crop(image)
    change = np.abs(frames - image).mean(axis=3)
    assert change[1, my0:my1, mx0:mx1].mean() > 15  # the driver's open mouth
    outside = np.ones(change.shape[1:], bool)
    outside[max(cy0, 0) : cy1, max(cx0, 0) : cx1] = False
    assert change[:, outside].max() == 0  # the photo itself outside the face
    # the head does not move: the hair above the brows and the cheeks' outline stay
    assert change[:, cy0 + 10 : my0 - 70, mx0 - 30 : mx1 + 30].mean() < 1.5


def test_one_layer_per_face_with_multi_person():
    from media import group_photo

    from fomm.inference.pipeline import expression_layers, source_target

    if not _mesh_available():
        pytest.skip("no face-mesh model installed")
    opts = AnimateOptions(multi_person=True, detail=False)
    target = source_target(group_photo(), 256, opts)
    layers = expression_layers(target, opts)
    assert layers is not None and len(layers) == len(target.crops) >= 2
    assert expression_layers(target, AnimateOptions(multi_person=True, expression=False)) is None
    notes: list[str] = []  # whole driving frames (--crop-driving off): the layer cannot follow
    assert expression_layers(target, opts, notes.append, framed=False) is None
    assert notes == ["the expression layer needs the driving face framed: off with "
                     "--crop-driving off"]


# live ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_photo(tmp_path_factory) -> Path:
    return save(tmp_path_factory.mktemp("live") / "photo.png", astronaut())


@needs_mesh
def test_live_keys_change_the_expression(live_photo, tiny_ckpt):
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator
    from fomm.live.loop import LiveAnimator, LiveOptions
    from fomm.media.image import read_image

    animator = Animator(*load_model(tiny_ckpt), device="cpu")
    step = LiveAnimator(animator, read_image(live_photo), LiveOptions(window=False))
    assert step.expression.region == "all" and step.expression.scale == 1.0
    assert step.expression_key(ord("3")) == "expression: expression x1 (e, 1-5, +/-)"
    assert step.expression_key(ord("+")) and step.expression.scale == 1.25
    for _ in range(10):
        step.expression_key(ord("+"))
    assert step.expression.scale == 2.0  # at most 2
    step.expression_key(ord("-"))
    assert step.expression.scale == 1.75 and step.expression.region == "expression"
    assert step.expression_key(ord("5")) and step.expression.region == "lips"
    assert step.expression_key(ord("e")) == "expression off" and step.expression is None
    assert step.expression_key(ord("2")) == "expression off: press e to turn it on"
    assert step.expression_key(ord("e")).startswith("expression: lips x1.75")
    assert step.expression_key(ord("x")) is None
    off = LiveAnimator(
        animator,
        read_image(live_photo),
        LiveOptions(window=False, animate=AnimateOptions(expression=False)),
    )
    assert off.expression is None and off.expression_line() == "expression off (e)"
    assert off.expression_key(ord("e")).startswith("expression: all x1")


@needs_mesh
def test_live_window_keys_reach_the_layer_and_the_overlay(
    live_photo, tiny_ckpt, monkeypatch, tmp_path
):
    from test_live import ScriptedWindow, moving_face_clip

    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator
    from fomm.live import loop
    from fomm.live.loop import LiveOptions, run_live

    clip = moving_face_clip(tmp_path / "face.mp4", 6)
    ScriptedWindow.keys = ["", "4", "+", "", "e", ""]
    windows: list[ScriptedWindow] = []
    monkeypatch.setattr(loop, "Window", lambda: windows.append(ScriptedWindow()) or windows[-1])
    animator = Animator(*load_model(tiny_ckpt), device="cpu")
    stats = run_live(
        live_photo,
        LiveOptions(camera=str(clip), realtime=False, overlap=False),
        animator=animator,
        log=False,
    )
    assert stats.frames_out == 6
    states = [lines[1] for lines in windows[0].shown]
    assert states[0] == "expression: all x1 (e, 1-5, +/-)"
    assert states[2] == "expression: eyes x1 (e, 1-5, +/-)"
    assert states[3] == "expression: eyes x1.25 (e, 1-5, +/-)"
    assert states[5] == "expression off (e)"
