"""``--animation-region pose``: the motion networks get the driver's head motion alone
(fomm.models.motion.head_motion) in fomm animate and fomm live; the other regions and
``--expression off`` do not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_live_expression import clip_and_photo, needs_mesh  # noqa: F401 (a fixture)

from fomm.config import AnimateOptions
from fomm.inference.pipeline import animate_file
from fomm.models import motion


@pytest.fixture
def head_calls(monkeypatch) -> list[int]:
    """Counts the driving frames that went through head_motion."""
    calls: list[int] = []
    real = motion.head_motion

    def spy(kp_source, kp_driving, *args, **kwargs):
        calls.append(kp_driving.value.shape[0])
        return real(kp_source, kp_driving, *args, **kwargs)

    monkeypatch.setattr(motion, "head_motion", spy)
    return calls


@pytest.mark.parametrize(("changes", "frames_through_head_motion"), [
    ({"animation_region": "pose"}, 4),
    ({"animation_region": "pose", "expression": False}, 0),  # off: today's frames
    ({"animation_region": "all"}, 0),
])
def test_animate_moves_the_head_only_for_region_pose(tmp_path, tiny_ckpt, head_calls, changes,
                                                     frames_through_head_motion):
    photo = tmp_path / "square.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(photo)
    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(4):
        Image.fromarray(np.full((64, 64, 3), 40 + 20 * i, np.uint8)).save(clip / f"{i}.png")
    opts = AnimateOptions(crop=False, batch_size=3, progress=False, **changes)
    animate_file(photo, clip, tmp_path / "out/", opts, checkpoint=tiny_ckpt)
    assert sum(head_calls) == frames_through_head_motion


@needs_mesh
@pytest.mark.parametrize("region", ["pose", "all"])
def test_live_moves_the_head_only_for_region_pose(clip_and_photo, tiny_ckpt, head_calls,  # noqa: F811
                                                  region):
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator
    from fomm.live import LiveOptions
    from fomm.live.capture import Capture
    from fomm.live.loop import LiveAnimator
    from fomm.media.image import read_image

    photo, clip = clip_and_photo
    animator = Animator(*load_model(tiny_ckpt), device="cpu")
    opts = LiveOptions(camera=str(clip), window=False, realtime=False, smoothing=False,
                       animate=AnimateOptions(detail=False, progress=False,
                                              animation_region=region))
    step = LiveAnimator(animator, read_image(photo), opts)
    drawn = 0
    with Capture(str(clip), realtime=False) as capture:
        while (frame := capture.read(timeout=5)) is not None:
            pose = step.pose(frame.image, frame.time)
            if pose is not None:
                step.render(pose)
                drawn += 1
    assert drawn > 0
    assert sum(head_calls) == (drawn if region == "pose" else 0)
    assert step.expression_key(ord("e")) == "expression off"  # off: the parity path
    head_calls.clear()
    with Capture(str(clip), realtime=False) as capture:
        frame = capture.read(timeout=5)
        pose = step.pose(frame.image, frame.time)
        if pose is not None:
            step.render(pose)
    assert head_calls == []
