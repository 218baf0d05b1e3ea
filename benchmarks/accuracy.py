"""Accuracy harnesses shared by the benchmarks and the precision tests (not part of the package)."""

from __future__ import annotations

from typing import Any


def bf16_difference(frames: int = 3, step: int = 13, backend: str = "torch") -> Any:
    """|bf16 − fp32| of the bundled model on the built-in inputs, in 8-bit levels.

    The demo's talking-face clip (every ``step``-th of its first ``frames`` × ``step`` frames,
    face-framed) drives the astronaut's face crop at the model size, once per precision on the
    CPU, both on ``backend`` (``torch``: eager with islands; ``openvino``: its bf16 islands).
    Used by the precision test and ``benchmarks/animate.py`` / ``benchmarks/live.py``.

    Returns:
        int array (frames, H, W, 3) of absolute differences.
    """
    import numpy as np
    from skimage import data

    from fomm.checkpoints.loading import load_model
    from fomm.config import AnimateOptions
    from fomm.faces.track import frame_driving
    from fomm.inference.animator import Animator
    from fomm.inference.demo import _packaged_clip
    from fomm.inference.pipeline import source_target
    from fomm.media.video import iter_frames

    clip = iter_frames(_packaged_clip(), max_frames=frames * step)
    driving = list(frame_driving(clip, 256))[::step]
    models, cfg = load_model(None)
    out = {}
    for name in ("fp32", "bf16"):
        animator = Animator(models, cfg, device="cpu", precision=name, backend=backend)
        crop = source_target(data.astronaut(), animator.size, AnimateOptions()).crops[0]
        source = animator.prepare_source(crop)
        out[name] = np.stack(list(animator.animate(source, driving, batch_size=4)))
    return np.abs(out["bf16"].astype(int) - out["fp32"].astype(int))
