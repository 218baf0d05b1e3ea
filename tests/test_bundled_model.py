"""Quality of the bundled face model on a known motion (the built-in astronaut, no shared media)."""

from __future__ import annotations

import pytest

from fomm.checkpoints.loading import bundled_model_path

needs_model = pytest.mark.skipif(bundled_model_path() is None,
                                 reason="no bundled model in fomm/weights/ yet")


@needs_model
def test_bundled_model_follows_a_known_head_motion():
    """The astronaut's face crop moved by a known rotation / zoom / shift: the animated face
    (MTCNN's eye and mouth landmarks) must follow most of it, and stay still for no motion."""
    import numpy as np
    from skimage import data

    from fomm.checkpoints.loading import load_model
    from fomm.faces.crop import crop, square_box
    from fomm.faces.detect import detect_faces
    from fomm.inference.animator import Animator
    from fomm.media.image import similarity_warp

    photo = data.astronaut()
    source = crop(photo, square_box(detect_faces(photo)[0], photo.shape), 256)
    cases = [(0, 1.0, (0, 0)), (12, 1.0, (0, 0)), (-12, 1.0, (0, 0)), (0, 1.15, (0, 0)),
             (0, 1.0, (16, 0)), (0, 1.0, (0, -16))]
    driving = [similarity_warp(source, d, s, t) for d, s, t in cases]
    models, cfg = load_model(None)
    animator = Animator(models, cfg, device="cpu")
    generated = list(animator.animate(animator.prepare_source(source), driving, relative=True))

    def pose(frame):
        lm = detect_faces(frame)[0].landmarks  # eyes, nose, mouth corners
        eyes = lm[1] - lm[0]
        return np.degrees(np.arctan2(eyes[1], eyes[0])), np.linalg.norm(eyes), lm.mean(0)

    base = pose(source)
    shares = []
    for (degrees, scale, shift), real, fake in zip(cases, driving, generated):
        (ar, wr, cr), (af, wf, cf) = pose(real), pose(fake)
        if degrees:
            shares.append((af - base[0]) / (ar - base[0]))
        elif scale != 1.0:
            shares.append((wf / base[1] - 1) / (wr / base[1] - 1))
        elif any(shift):
            axis = 0 if shift[0] else 1
            shares.append((cf[axis] - base[2][axis]) / (cr[axis] - base[2][axis]))
        else:
            assert abs(af - base[0]) < 2 and np.linalg.norm(cf - base[2]) < 2  # no motion
    print("share of each motion transferred:", np.round(shares, 2))
    assert min(shares) > 0.5 and max(shares) < 1.5
