"""fomm live with the expression layer: the driving landmarks found beside the networks, the
frames drawn and finished on their own threads, and the same frames as one step after the other."""

from __future__ import annotations

import numpy as np
import pytest
from test_live import moving_face_clip

from fomm.config import AnimateOptions
from fomm.live import LiveOptions, run_live
from fomm.media.image import write_image


def _mesh_available() -> bool:
    from fomm.faces import mesh

    return mesh.available()


needs_mesh = pytest.mark.skipif(not _mesh_available(), reason="no face-mesh model installed")


def _astronaut_crops(count: int) -> list[np.ndarray]:
    """The astronaut's framed face (256 px), moved a little from crop to crop."""
    import cv2
    from skimage import data

    photo = data.astronaut()
    crops = []
    for i in range(count):
        x, y = 130 + 3 * i, 20 + 2 * (i % 3)
        crops.append(cv2.resize(photo[y : y + 190, x : x + 190], (256, 256)))
    return crops


@needs_mesh
@pytest.mark.parametrize("region", ["all", "expression"])
def test_observed_driving_landmarks_render_as_found_in_apply(region):
    from fomm.expression import ExpressionLayer, ExpressionOptions

    crops = _astronaut_crops(6)
    photo, reference, driving = crops[0], crops[1], crops[2:]
    options = ExpressionOptions(region=region, scale=1.5, mouth=0.3)
    inline, split = ExpressionLayer(photo, options), ExpressionLayer(photo, options)
    assert inline.set_reference(reference)
    observed_reference = split.observe(reference)
    assert observed_reference.points is not None and observed_reference.points.shape == (468, 2)
    assert split.set_reference(reference, observed_reference)
    changed = 0
    for frame in driving:
        result = photo if region == "expression" else frame  # the FOMM result stands in
        expected = inline.apply(result, frame)
        observed = split.observe(frame)  # e.g. on another thread, beside the networks
        np.testing.assert_array_equal(split.apply(result, frame, observed=observed), expected)
        changed += not np.array_equal(expected, result)
    assert changed  # the layer draws something


@pytest.fixture(scope="module")
def clip_and_photo(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("live-expression")
    photo = root / "photo.png"
    write_image(photo, data.astronaut()[:384, 64:448])
    return photo, moving_face_clip(root / "camera.mp4", 8)


def _sent_frames(monkeypatch, photo, clip, animator, tmp_path, **options) -> list[np.ndarray]:
    from fomm.live import loop

    sent: list[np.ndarray] = []
    send = loop._Sinks.send
    monkeypatch.setattr(
        loop._Sinks, "send", lambda self, f, lines: (sent.append(f), send(self, f, lines))[1]
    )
    opts = LiveOptions(
        camera=str(clip),
        window=False,
        record=tmp_path / "out.mp4",
        realtime=False,
        smoothing=False,  # One-Euro follows the arrival times, which differ
        **options,
    )
    stats = run_live(photo, opts, animator=animator, log=False)
    assert (stats.frames_out, stats.dropped) == (8, 0)  # every frame, in order
    monkeypatch.undo()
    return sent


@needs_mesh
@pytest.mark.parametrize("region", ["all", "expression"])
def test_drawn_and_finished_on_threads_are_the_sequential_frames(
    clip_and_photo, tiny_ckpt, monkeypatch, tmp_path, region
):
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator
    from fomm.live import loop

    photo, clip = clip_and_photo
    animator = Animator(*load_model(tiny_ckpt), device="cpu", backend="onnx")
    animate = AnimateOptions(detail=False, progress=False, animation_region=region)
    results = []
    for overlap, in_flight in ((False, 1), (True, 1), (True, 2)):
        monkeypatch.setattr(loop, "DRAWS_IN_FLIGHT", in_flight)
        results.append(
            _sent_frames(
                monkeypatch, photo, clip, animator, tmp_path, overlap=overlap, animate=animate
            )
        )
    for frames in results[1:]:
        for a, b in zip(results[0], frames, strict=True):
            np.testing.assert_array_equal(a, b)
    if region == "expression":  # the photo itself with the driver's expression: it moves
        assert any(not np.array_equal(results[1][0], f) for f in results[1][1:])


def test_expression_off_frames_are_the_networks_pasted(
    clip_and_photo, tiny_ckpt, monkeypatch, tmp_path
):
    """``--expression off`` live: exactly the motion model's frames, pasted (the parity path),
    with the frame drawn on one thread and finished on another."""
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator
    from fomm.live.capture import Capture
    from fomm.live.loop import LiveAnimator
    from fomm.media.image import read_image

    photo, clip = clip_and_photo
    animator = Animator(*load_model(tiny_ckpt), device="cpu", backend="onnx")
    opts = LiveOptions(
        camera=str(clip),
        window=False,
        realtime=False,
        smoothing=False,
        animate=AnimateOptions(detail=False, progress=False, expression=False),
    )
    sent = _sent_frames(monkeypatch, photo, clip, animator, tmp_path, animate=opts.animate)
    step = LiveAnimator(animator, read_image(photo), opts)
    expected = []
    with Capture(str(clip), realtime=False) as capture:
        while (frame := capture.read(timeout=5)) is not None:
            pose = step.pose(frame.image, frame.time)
            if pose is None:
                expected.append(step.still)
                continue
            assert pose.observed is None  # the layer is off: no driving landmarks
            crops = animator.render(
                step._sources, pose.kp, pose.reference, step.relative, step.adapt_scale
            )[0]
            expected.append(step._paste(crops))
    assert len(expected) == len(sent)
    for a, b in zip(expected, sent, strict=True):
        np.testing.assert_array_equal(a, b)
