"""Multi-person: all faces of a frame in one generator call give the frames of one call each."""

from __future__ import annotations

import numpy as np
import pytest
from tiny import tiny_models

from fomm.inference.animator import Animator


def _images(n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("flavour", ["original", "paddle"])
def test_batched_faces_match_one_call_per_face(flavour: str) -> None:
    models, config = tiny_models(flavour=flavour)
    animator = Animator(models, config, device="cpu", precision="fp32")
    sources = [animator.prepare_source(image) for image in _images(3, seed=1)]
    driving = _images(5, seed=2)
    animator.batch_faces = False
    one_by_one = list(animator.animate_many(sources, driving, adapt_scale=True, batch_size=2))
    animator.batch_faces = True
    batched = list(animator.animate_many(sources, driving, adapt_scale=True, batch_size=2))
    assert len(batched) == 5 and all(len(frame) == 3 for frame in batched)
    for a, b in zip(one_by_one, batched, strict=True):
        for x, y in zip(a, b, strict=True):  # uint8: equal up to one rounding step
            assert x.shape == y.shape == (64, 64, 3)
            assert np.abs(x.astype(int) - y.astype(int)).max() <= 1
    # the faces differ from each other, so a mix-up would show
    assert np.abs(batched[0][0].astype(int) - batched[0][1].astype(int)).mean() > 5


def test_one_face_takes_the_single_source_path() -> None:
    models, config = tiny_models()
    animator = Animator(models, config, device="cpu", precision="fp32")
    source = animator.prepare_source(_images(1)[0])
    frames = list(animator.animate(source, _images(3, seed=3), batch_size=3))
    assert len(frames) == 3 and frames[0].shape == (64, 64, 3)


def test_faces_note_says_which_faces() -> None:
    from fomm.config import AnimateOptions
    from fomm.inference.pipeline import faces_note

    assert faces_note(5, AnimateOptions(multi_person=True)) == \
        "animating all 5 faces found (--multi-person)"
    assert faces_note(1, AnimateOptions()) == "animating the one face found"
    assert faces_note(3, AnimateOptions()).startswith("animating the largest of 3 faces")
    assert faces_note(3, AnimateOptions(face_index=2)).startswith(
        "animating face 2 (0 = the largest) of 3 faces")


def test_group_photo_run_says_how_many_faces(tmp_path, tiny_ckpt, caplog) -> None:
    from media import group_photo, save, talking_clip

    from fomm.config import AnimateOptions
    from fomm.inference.pipeline import animate_file

    photo = save(tmp_path / "group.png", group_photo())
    with caplog.at_level("INFO", logger="fomm"):  # logged (fomm animate shows it on stderr)
        result = animate_file(photo, talking_clip(), tmp_path / "out/",
                              AnimateOptions(multi_person=True, max_frames=2, crop_driving="off"),
                              checkpoint=tiny_ckpt)
    assert result.faces == 5
    assert "faces: animating all 5 faces found" in caplog.text
