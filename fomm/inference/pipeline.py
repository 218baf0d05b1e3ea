"""File → file animation: image + video → faces → Animator → paste-back → video, streaming.

Only composes: reading and writing live in image.py / video.py, faces in faces/, maths in the
Animator.  Memory stays bounded by the batch size whatever the length of the driving video.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fomm.config import AnimateOptions, ModelConfig
from fomm.errors import FommError, InputError, NoFaceError
from fomm.inference.animator import Animator
from fomm.media.image import even_size, read_image, resize
from fomm.media.video import VideoInfo, VideoWriter, iter_frames, probe, read_frame
from fomm.models import Models
from fomm.render.detail import detail_size, pixel_box

if TYPE_CHECKING:
    from fomm.expression import ExpressionLayer, ExpressionOptions

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int | None], None]


@dataclass
class AnimationResult:
    output: Path
    frames: int
    fps: float
    size: tuple[int, int]  # (width, height)
    faces: int  # faces animated (0 when the whole image was animated)


@dataclass
class _Target:
    """Where the animated crops go: one box per face, or the whole image."""

    crops: list[np.ndarray]  # model inputs, uint8 (S, S, 3)
    paste: Callable[[list[np.ndarray]], np.ndarray]  # animated crops → output frame
    # the same crops at the output resolution, uint8 (R, R, 3) (--detail; None: model size)
    details: list[np.ndarray | None] | None = None
    # turns the paste's colour matching (the generator's tint) on or off; off for crops that
    # are the photo's own pixels (the expression regions), whose ring changes only by the warp
    colour_match: Callable[[bool], None] = lambda on: None
    # turns stitching on or off: what surrounds the head stays where the photo has it
    # (fomm.faces.stitch); on while the expression layer runs on the motion networks' results
    stitch: Callable[[bool], None] = lambda on: None


def _whole_image_target(source: np.ndarray, size: int, result_size: int | None,
                        detail: bool = False) -> _Target:
    out = result_size or size
    w, h = even_size(out, out)

    def paste(frames: list[np.ndarray]) -> np.ndarray:
        return frames[0] if frames[0].shape[:2] == (h, w) else resize(frames[0], (w, h))

    details = [resize(source, detail_size(w))] if detail else None
    return _Target([resize(source, size)], paste, details)


def _face_target(source: np.ndarray, size: int, opts: AnimateOptions) -> _Target:
    from fomm.faces.crop import crop, square_box
    from fomm.faces.detect import detect_faces
    from fomm.faces.paste import MultiPaster

    faces = detect_faces(source)
    if not faces:
        raise NoFaceError("no face found in the source image; use --no-crop to animate the "
                          "whole image resized to the model size")
    if opts.multi_person:
        chosen = faces
    else:
        index = opts.face_index or 0
        if not 0 <= index < len(faces):
            raise FommError(f"--face-index {index} is out of range: {len(faces)} face(s) found")
        chosen = [faces[index]]
    if opts.progress:
        log.info("faces: %s", faces_note(len(faces), opts))
    kwargs = {} if opts.crop_margin is None else {"margin": opts.crop_margin}
    boxes = [square_box(face, source.shape, **kwargs) for face in chosen]
    if not opts.detail:
        paster = MultiPaster(source, boxes, size, stitch=stitches(opts))
        return _Target([crop(source, box, size) for box in boxes], paster.paste,
                       colour_match=_colour_switch(paster), stitch=_switch(paster, "stitch"))
    boxes = [pixel_box(box) for box in boxes]  # detail crops copy the photo's pixels
    sides = [detail_size(box[2] - box[0]) for box in boxes]
    paster = MultiPaster(source, boxes, sides, stitch=stitches(opts))
    return _Target([crop(source, box, size) for box in boxes], paster.paste,
                   [crop(source, box, side) for box, side in zip(boxes, sides, strict=True)],
                   _colour_switch(paster), _switch(paster, "stitch"))


def _colour_switch(paster) -> Callable[[bool], None]:
    return _switch(paster, "colour_match")


def _switch(paster, name: str) -> Callable[[bool], None]:
    def switch(on: bool) -> None:
        for one in paster.pasters:
            setattr(one, name, on)

    return switch


def stitches(opts: AnimateOptions) -> bool:
    """Whether pasting keeps what surrounds the head (background, shoulders) where the photo
    has it (:mod:`fomm.faces.stitch`): with the expression layer on a region that moves the
    head (``all``, ``pose``); ``expression=False`` gives the motion model's frames as they are."""
    from fomm.expression import uses_networks

    return opts.expression and uses_networks(opts.animation_region)


def head_only(opts: AnimateOptions) -> bool:
    """Whether the motion networks get the driver's head motion alone, its expression left out
    (:func:`fomm.models.motion.head_motion`): region ``pose`` with the expression layer on."""
    return opts.expression and opts.animation_region == "pose"


def faces_note(found: int, opts: AnimateOptions) -> str:
    """Which of the ``found`` faces are animated, in words (largest first, index 0)."""
    if opts.multi_person:
        return f"animating all {found} faces found (--multi-person)"
    index = opts.face_index or 0
    if found == 1:
        return "animating the one face found"
    which = "the largest" if index == 0 else f"face {index} (0 = the largest)"
    return (f"animating {which} of {found} faces found; --face-index N picks another, "
            "--multi-person animates all")


def source_target(source: np.ndarray, size: int, opts: AnimateOptions) -> _Target:
    """The model-size crops of ``source`` to animate and how to paste results back.

    The one frame-level path shared by file animation and ``fomm live``: the chosen face(s)
    cropped and pasted back with a feathered mask, or with ``opts.crop`` off the whole image.
    With ``opts.detail``, ``details`` holds the same crops at the output resolution for
    :meth:`Animator.prepare_source`; ``paste`` takes results at either size.
    """
    if opts.crop:
        return _face_target(source, size, opts)
    return _whole_image_target(source, size, opts.result_size, opts.detail)


def expression_options(opts: AnimateOptions) -> ExpressionOptions:
    """The expression layer's settings from the animation options (the one place they map)."""
    from fomm.expression import ExpressionOptions

    return ExpressionOptions(region=opts.animation_region, scale=opts.expression_scale,
                             eyes=opts.eye_offset, mouth=opts.mouth_offset,
                             smile=opts.smile_offset)


def expression_layers(target: _Target, opts: AnimateOptions,
                      note: Callable[[str], None] | None = None,
                      framed: bool = True) -> list[ExpressionLayer] | None:
    """One :class:`~fomm.expression.ExpressionLayer` per animated face of ``target``, built on
    the crops its results come at (the detail crops with ``opts.detail``, else the model-size
    ones); None when the layer is off: ``opts.expression`` off, no face crop (``opts.crop``
    off), driving frames not ``framed`` (``--crop-driving off``), no face-mesh model
    installed, or no landmarks in a face (``note`` says which)."""
    note = note or (lambda text: None)
    if not opts.expression:
        return None
    if not opts.crop:
        note("the expression layer needs a face crop: off with --no-crop")
        return None
    if not framed:
        note("the expression layer needs the driving face framed: off with --crop-driving off")
        return None
    from fomm.faces import mesh

    if not mesh.available():
        note("the expression layer is off: its face-mesh model is not installed")
        return None
    from fomm.expression import ExpressionLayer

    options = expression_options(opts)
    photos = target.details or target.crops
    try:
        return [ExpressionLayer(photo, options) for photo in photos]
    except NoFaceError:
        note("the expression layer is off: no face landmarks found in the photo's face")
        return None


def keep_head(sources: list, layers: list[ExpressionLayer] | None) -> None:
    """Set each prepared source's ``head_keep`` from its face's layer
    (:meth:`~fomm.expression.ExpressionLayer.head_keep`: region ``pose``'s head motion keeps no
    own motion of the keypoints on the mouth and jaw); nothing without layers or sources (the
    regions that keep the photo's head)."""
    if layers is None or not sources:
        return
    import torch

    for source, layer in zip(sources, layers, strict=True):
        points = source.kp.value[0].detach().float().cpu().numpy()
        source.head_keep = torch.from_numpy(layer.head_keep(points)).to(source.kp.value.device)


def uses_motion(opts: AnimateOptions, layers: list[ExpressionLayer] | None) -> bool:
    """Whether frames need the motion networks: always without a layer; with one, for the
    regions that move the head (``all``, ``pose``)."""
    if layers is None:
        return True
    from fomm.expression import uses_networks

    return uses_networks(opts.animation_region)


def _remembered(frames: Iterable[np.ndarray], buffer: deque) -> Iterator[np.ndarray]:
    """``frames``, each also appended to ``buffer`` as it is taken (the consumer pops them
    as its results come: at most one batch is held)."""
    for frame in frames:
        buffer.append(frame)
        yield frame


def _driving_frames(driving: str | Path, info: VideoInfo, size: int,
                    opts: AnimateOptions) -> Iterator[np.ndarray]:
    frames: Iterable[np.ndarray] = iter_frames(driving, max_frames=opts.max_frames)
    if opts.frames_driving:
        return _framed_or_whole(driving, size, opts)
    return iter(frames)


def _framed_or_whole(driving: str | Path, size: int,
                     opts: AnimateOptions) -> Iterator[np.ndarray]:
    """The driving face framed; with ``crop_driving="auto"`` a video in which no face is found
    (within the tracker's search window) is animated whole, as with ``--crop-driving off``."""
    from fomm.faces.track import frame_driving

    framed = frame_driving(iter_frames(driving, max_frames=opts.max_frames), size)
    try:
        first = next(framed)
    except StopIteration:
        return
    except NoFaceError:
        if opts.crop_driving == "on":
            raise
        if opts.progress:
            log.warning("no face found in the driving video; it drives with the whole frame "
                        "(as with --crop-driving off)")
        yield from iter_frames(driving, max_frames=opts.max_frames)
        return
    yield first
    yield from framed


def _reference_frame(driving: str | Path, source: np.ndarray, info: VideoInfo, size: int,
                     opts: AnimateOptions) -> np.ndarray | None:
    index = opts.best_frame
    if opts.find_best_frame:
        from fomm.faces.best_frame import best_frame_index

        # framed crops at 256 px at least: the detector skips faces under 40 px
        index = best_frame_index(source, _driving_frames(driving, info, max(size, 256), opts))
    if index is None:
        return None
    if index < 0 or (info.num_frames is not None and index >= info.num_frames):
        raise FommError(f"--best-frame {index} is out of range: the driving video has "
                        f"{info.num_frames} frames")
    if opts.frames_driving:
        # the framed frame at that index: framing depends on the track, so run it up to there
        for i, frame in enumerate(_driving_frames(driving, info, size, opts)):
            if i == index:
                return frame
        raise FommError(f"--best-frame {index} is out of range")
    return read_frame(driving, index)


def _expression_reference(driving: str | Path, info: VideoInfo, size: int, target: _Target,
                          opts: AnimateOptions) -> np.ndarray | None:
    """The framed driving frame whose expression matches the (first) photo face's, from the first
    frames (:mod:`fomm.expression.reference`); None when no face is found there."""
    from fomm.expression.reference import matching_frame
    from fomm.faces.mesh import FaceMesh

    mesh = FaceMesh()
    photo = mesh.detect(target.crops[0])
    if photo is None:
        return None
    found = matching_frame(photo, _driving_frames(driving, info, size, opts), mesh)
    return None if found is None else found[1]


def _progress_bar(total: int | None, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", disable=not enabled, dynamic_ncols=True,
                desc="animating")


def _noter(opts: AnimateOptions) -> Callable[[str], None]:
    def note(text: str) -> None:
        if opts.progress:
            log.warning("%s", text)

    return note


def _animated(animator: Animator, sources: list, frames: Iterator[np.ndarray], target: _Target,
              layers: list[ExpressionLayer] | None, reference: np.ndarray | None,
              opts: AnimateOptions) -> Iterator[list[np.ndarray]]:
    """For each driving frame, one result crop per face: the motion networks' (without a
    layer), those with the driving frame's expression rendered on them, or with a region that
    keeps the head the photo's crops with the expression (no networks). Region ``pose`` moves
    the photo by the driver's head motion alone (:func:`head_only`)."""
    if layers is None:
        yield from animator.animate_many(sources, frames, opts.relative, opts.adapt_scale,
                                         reference, opts.batch_size, head_only(opts))
        return
    if not sources:  # expression / eyes / lips: rendered on the still photo
        target.colour_match(False)
        photos = target.details or target.crops
        for driving in frames:
            yield [layer.apply(photo, driving) for layer, photo in zip(layers, photos,
                                                                       strict=True)]
        return
    taken: deque[np.ndarray] = deque()  # the driving frames whose results are coming
    for animated in animator.animate_many(sources, _remembered(frames, taken), opts.relative,
                                          opts.adapt_scale, reference, opts.batch_size,
                                          head_only(opts)):
        driving = taken.popleft()
        yield [layer.apply(result, driving) for layer, result in zip(layers, animated,
                                                                     strict=True)]


def animate_file(source: str | Path, driving: str | Path, output: str | Path,
                 opts: AnimateOptions | None = None, *, models: Models | None = None,
                 config: ModelConfig | None = None, animator: Animator | None = None,
                 checkpoint: str | Path | None = None, model_config: str | Path | None = None,
                 on_progress: ProgressFn | None = None) -> AnimationResult:
    """Animate ``source`` (image file) with ``driving`` (video file or frame folder).

    Args:
        output: ``.mp4`` path (H.264 + the driving audio), or a folder for PNG frames (a path
            ending in ``/`` or without a suffix).
        opts: animation options (defaults: relative motion, face crop and paste-back).
        animator / models+config / checkpoint: the model to use (default: the bundled model).
        on_progress: called as ``on_progress(done, total)`` after each written frame; it may
            raise to cancel (nothing is left at ``output`` then).
    Returns:
        What was written.
    """
    opts = opts or AnimateOptions()
    if not Path(output).suffix and not str(output).endswith(("/", os.sep)):
        output = f"{output}{os.sep}"  # no suffix: a folder of PNG frames
    for path, what in ((source, "source image"), (driving, "driving video")):
        if not Path(path).exists():
            raise InputError(f"{path}: {what} not found")
    source_image = read_image(source)
    info = probe(driving, fps=opts.fps) if Path(driving).is_dir() else probe(driving)
    if animator is None:
        if models is None or config is None:
            from fomm.checkpoints.loading import load_model

            models, config = load_model(checkpoint, config=model_config, flavour=opts.flavour)
        animator = Animator(models, config, opts.device, opts.precision, opts.backend)
    size = animator.size
    target = source_target(source_image, size, opts)
    layers = expression_layers(target, opts, _noter(opts), framed=opts.frames_driving)
    details = target.details or [None] * len(target.crops)
    motion = uses_motion(opts, layers)
    sources = [animator.prepare_source(c, detail=d) for c, d in zip(target.crops, details)
               ] if motion else []
    keep_head(sources, layers)
    reference = _reference_frame(driving, source_image, info, size, opts)
    if layers is not None:
        # the expression the photo has is the reference frame's: the chosen motion reference,
        # else the driving frame whose expression matches the photo's
        expression_reference = reference if reference is not None else _expression_reference(
            driving, info, size, target, opts)
        if expression_reference is not None:
            for layer in layers:
                layer.set_reference(expression_reference)
    total = info.num_frames
    if opts.max_frames is not None and total is not None:
        total = min(total, opts.max_frames)
    fps = opts.fps or info.fps
    audio = driving if (opts.audio and info.has_audio) else None
    done = 0
    with VideoWriter(output, fps=fps, audio_from=audio) as writer, \
            _progress_bar(total, opts.progress) as bar:
        frames = _driving_frames(driving, info, size, opts)
        for animated in _animated(animator, sources, frames, target, layers, reference, opts):
            frame = target.paste(animated)
            writer.write(frame)
            done += 1
            bar.update(1)
            if on_progress is not None:
                on_progress(done, total)
        if done == 0:
            raise InputError(f"{driving}: has no video frames")
    width, height = even_size(frame.shape[1], frame.shape[0])
    return AnimationResult(Path(output), done, fps, (width, height),
                           len(target.crops) if opts.crop else 0)
