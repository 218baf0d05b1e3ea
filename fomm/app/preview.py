"""One preview frame for the page's sliders: the photo animated by one driving frame, fast.

The photo's preparation (face crop, source encoding, expression layers) and each driving frame's
framing and keypoints are cached by content, so a slider move costs one generator call (none for
the regions that keep the head) and one expression render. Without a driving frame the preview
is the photo itself with the expression sliders applied.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fomm.config import AnimateOptions
from fomm.errors import NoFaceError
from fomm.inference.animator import Animator
from fomm.inference.pipeline import (
    expression_layers,
    expression_options,
    head_only,
    keep_head,
    source_target,
)
from fomm.media.image import read_image, resize

MAX_SIDE = 640  # px: the preview's longest side
JPEG_QUALITY = 85


class _LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> Any:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value

    def take(self, key: Any) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None


@dataclasses.dataclass
class _Photo:
    target: Any  # fomm.inference.pipeline._Target
    sources: list  # prepared for the networks (made on first need)
    layers: list | None  # expression layers (None: the layer cannot run on this photo)
    note: str


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


class Previewer:
    """Renders preview frames with ``animator``, one at a time (the page debounces its requests).

    Args:
        animator: the server's model; previews run at the model's size (``detail`` off).
    """

    def __init__(self, animator: Animator, photos: int = 2, frames: int = 8) -> None:
        self.animator = animator
        self._lock = threading.Lock()
        self._photos = _LRU(photos)
        self._frames = _LRU(frames)

    def render(self, photo: Path, driving: Path | None, reference: Path | None,
               opts: AnimateOptions) -> bytes:
        """The photo animated by the ``driving`` frame (motion relative to ``reference``,
        default the driving frame itself) with ``opts``' expression settings, as JPEG bytes.

        Raises:
            NoFaceError: no face in the photo (with ``opts.crop``) or in a driving frame.
        """
        opts = dataclasses.replace(opts, detail=False, progress=False)
        with self._lock:
            frame = self._render(photo, driving, reference, opts)
        height, width = frame.shape[:2]
        if max(height, width) > MAX_SIDE:
            factor = MAX_SIDE / max(height, width)
            frame = resize(frame, (round(width * factor), round(height * factor)))
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        assert ok
        return data.tobytes()

    def _render(self, photo_path: Path, driving: Path | None, reference: Path | None,
                opts: AnimateOptions) -> np.ndarray:
        photo = self._photo(photo_path, opts)
        layers = photo.layers if opts.expression else None
        crops = list(photo.target.crops)
        if driving is None:  # the photo itself, with the sliders
            if layers is None:
                return photo.target.paste(crops)
            drive = ref = crops[0]
            results = crops
        else:
            drive, kp_drive = self._frame(driving, opts)
            ref, kp_ref = self._frame(reference, opts) if reference is not None else (
                drive, kp_drive)
            from fomm.expression import uses_networks

            if layers is not None and not uses_networks(opts.animation_region):
                results = crops  # the photo's head stays
            else:
                if not photo.sources:
                    photo.sources = [self.animator.prepare_source(c) for c in crops]
                    keep_head(photo.sources, photo.layers)
                results = self.animator.render(photo.sources, kp_drive, kp_ref, opts.relative,
                                               opts.adapt_scale, head_only(opts))[0]
        if layers is not None:
            options = expression_options(opts)
            rendered = []
            for layer, result in zip(layers, results, strict=True):
                layer.options = options
                layer.reset()  # each preview stands alone: no smoothing across requests
                layer.set_reference(ref)
                rendered.append(layer.apply(result, drive))
            results = rendered
        return photo.target.paste(results)

    def _photo(self, path: Path, opts: AnimateOptions) -> _Photo:
        key = (_digest(path), opts.crop, opts.face_index, opts.multi_person, opts.crop_margin,
               opts.frames_driving)
        photo = self._photos.take(key)
        if photo is None:
            target = source_target(read_image(path), self.animator.size, opts)
            notes: list[str] = []
            layers = expression_layers(target, dataclasses.replace(opts, expression=True),
                                       notes.append, framed=opts.frames_driving)
            photo = self._photos.put(key, _Photo(target, [], layers, "; ".join(notes)))
        return photo

    def _frame(self, path: Path, opts: AnimateOptions) -> tuple[np.ndarray, Any]:
        """A driving frame framed like the training data (or whole, as ``opts`` asks) at the
        model's size, and its keypoints."""
        key = (_digest(path), opts.frames_driving, opts.crop_margin)
        cached = self._frames.take(key)
        if cached is None:
            image = read_image(path)
            size = self.animator.size
            if opts.frames_driving:
                from fomm.faces.crop import crop, square_box
                from fomm.faces.detect import detect_faces

                faces = detect_faces(image)
                if not faces:
                    raise NoFaceError("no face found in the driving frame")
                kwargs = {} if opts.crop_margin is None else {"margin": opts.crop_margin}
                framed = crop(image, square_box(faces[0], image.shape, **kwargs), size)
            else:
                framed = resize(image, size)
            kp = self.animator.keypoints(self.animator.to_model_input(framed))
            cached = self._frames.put(key, (framed, kp))
        return cached
