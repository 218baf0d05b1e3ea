#!/usr/bin/env python
"""Validate expression transfer (issue #21) on a tuning or a held-out set; print tables, write JSON.

Every measurement uses dlib's 68 landmarks (``fomm[metrics]``), independent of the FaceMesh model
the expression layer uses. Per clip (the first ``--max-frames`` frames, framed exactly as
``fomm animate`` frames a driving video: :func:`fomm.faces.track.frame_driving` at 256):

* **self** (self-reenactment): the clip's first framed frame (a 256 PNG) animated by the clip
  through :func:`fomm.inference.pipeline.animate_file` with the defaults: relative motion, the
  driving video framed by the pipeline (the same crops as measured here), the source's face crop
  (on a framed frame about the whole frame; the expression layer works on face crops and framed
  driving faces) pasted back into the 256 frame; lossless PNG output.
* **cross** (cross-reenactment): a photo of another person animated by the raw clip through
  :func:`~fomm.inference.pipeline.animate_file` with :class:`~fomm.config.AnimateOptions`
  defaults (face crop, driving framing, paste-back, detail) to an MP4, which is decoded and cut at
  the paste box (at 256) for measuring.

Every ``--stride``-th frame is measured (all frames are animated, so tracking and smoothing see
the real frame rate). Reported, result against driver (frames where both have a face):

* ``mouth`` (inner-lip gap), ``width`` (mouth-corner distance: smile), ``eyes`` (lid gap), each
  over the eye distance (:func:`fomm.train.regions.expression_features`): Pearson ``r`` and
  ``std_ratio`` (result std / driver std). Both only see changes: the same as first subtracting
  each signal's first-frame (neutral) value, which is how the photo's own expression is
  separated from the driver's in the cross protocol.
* ``face_found``: share of result frames with a face; ``aed``: identity distance of result
  frames to the source (:func:`fomm.faces.metrics.face_metrics`, dlib embeddings).
* ``head``: displacement of the stable landmarks (nose bridge and tip, eye corners) of the result
  from the source's, in source eye distances: per-frame mean, then ``mean`` and ``max`` over
  frames; ``nose_r`` / ``nose_std_ratio``: how the nose tip's displacement from the first frame
  (x and y, in eye distances) follows the driver's.
* ``floor`` (region pose only): the mouth numbers of the source moved by the driver's head
  alone (a similarity on the stable landmarks; in cross-reenactment the driver's motion since
  its first frame, on the photo), a mouth that does not move: dlib's own
  spread there is the least a region-pose result's ``mouth.std_ratio`` can reach; its
  ``steady_std_ratio`` the same with readings averaged as in ``steady``.
* ``mouth_noise`` (region pose only): dlib's own noise in the result's mouth opening, each
  measured frame read again moved by small translations (:func:`reading_noise`): ``within``
  (the spread a mouth that never changes shows from dlib's reading alone) and
  ``steady_std_ratio`` (the spread of each frame's mean reading), both over the driver's std.
* ``ceiling`` (self, region all only): dlib against itself on the driving frames moved by a
  small similarity, per feature: the ``r`` a perfect copy of the driver's expression would score
  (low where the driver's feature hardly moves).
* ``steady`` (self: regions all and pose; cross: region pose): ``mouth``, ``width`` and
  ``eyes`` again with each driving and result frame read by dlib under the same small
  translations and the readings averaged (:func:`steady_agreement`): the follow with dlib's
  reading noise averaged out. Region pose is judged on ``steady.mouth.std_ratio``: single
  readings cannot resolve its bound of 0.2, since a mouth that never moves (``floor``) reads
  0.24 on average over the 41 tuning and extra drivers, and 3 of the 7 held-out ones read
  over 0.2 (:data:`TARGETS`).
* ``corners`` (cross only: stitching): mean absolute change (0-255) of the result's pixels in the
  four corner patches of the paste box from one measured frame to the next (``swim``), and
  against the photo (``vs_photo``).

Targets (:data:`TARGETS`) are printed as pass/fail per clip and for the mean over clips.

    python benchmarks/validate_expression.py --set tuning --expression off \
        --out benchmarks/results/expression-validation-tuning-baseline.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fomm.train.regions import expression_features

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SIZE = 256

# issue #21's protocol (notes/common.md): parameters may be chosen on TUNING only
SETS: dict[str, dict[str, list[str]]] = {
    "tuning": {
        "clips": [f"videos-extra/{name}.mp4" for name in (
            "dt_w009_front_happy_level3_001", "dt_w009_front_surprised_level3_001",
            "dt_m030_front_happy_level3_001", "lp_d5", "lp_d7", "xp_driving_video",
            "sad_rd_radio2_000", "pcavs_681100216", "eamm_happy")],
        "photos": [f"images/lp_s{i}.jpg" for i in (0, 1, 2, 3)],
    },
    "heldout": {
        "clips": ["videos/lp_d12.mp4", "videos/lp_d18.mp4", "videos/tp_driving.mp4"] + [
            f"videos-extra/{name}.mp4" for name in (
                "dt_w011_front_angry_level3_001", "dt_w011_front_surprised_level3_001",
                "sad_wda_bobmenendez_000", "vrt_4")],
        "photos": [f"images/lp_s{i}.jpg" for i in (5, 6, 7, 8, 9, 10, 11)],
    },
}

FEATURES = ("mouth", "width", "eyes")  # columns of expression_features
STABLE = [27, 28, 29, 30, 36, 39, 42, 45]  # nose bridge and tip, eye corners (iBUG 300-W)
NOSE_TIP = 30
CORNER_PATCH = (0.10, 0.24)  # corner patches span this range of the box side from each corner

# metric path -> (comparison, bound); per protocol and animation region
Target = tuple[str, float | tuple[float, float]]
TARGETS: dict[tuple[str, str], dict[str, Target]] = {
    ("self", "all"): {"mouth.r": (">=", 0.7), "mouth.std_ratio": ("in", (0.7, 1.3)),
                      "eyes.r": (">=", 0.5), "width.r": (">=", 0.6), "aed": ("<=", 0.35)},
    ("cross", "all"): {"mouth.r": (">=", 0.6), "face_found": (">=", 0.99)},
    # region pose on readings averaged over small shifts (``steady``): dlib's single readings of
    # a mouth that never moves spread about as much as the bound (``floor``, ``mouth_noise``)
    ("self", "pose"): {"steady.mouth.std_ratio": ("<=", 0.2)},
    ("cross", "pose"): {"steady.mouth.std_ratio": ("<=", 0.2), "face_found": (">=", 0.99)},
    ("self", "expression"): {"head.max": ("<=", 0.05)},
    ("cross", "expression"): {"head.max": ("<=", 0.05), "face_found": (">=", 0.99)},
}


# ------------------------------------------------------------------------------------------
# metrics on landmark series (no models needed)


def follow(driver: np.ndarray, result: np.ndarray, min_frames: int = 3) -> dict[str, float | None]:
    """How a result signal follows the driver's: Pearson r and std ratio over finite pairs.

    Args:
        driver, result: (N,) or (N, D) values per frame (NaN where unknown); for (N, D) the
            columns are stacked (each measured from its own first value by the caller).
    Returns:
        ``r`` (None when either side is constant), ``std_ratio`` (result std / driver std; None
        when the driver is constant), ``driver_std`` (the driver's spread: where it is about
        dlib's own noise, some 0.005-0.01 eye distances for the lids, r measures noise) and
        ``frames`` used.
    """
    d = np.asarray(driver, np.float64).reshape(len(driver), -1)
    f = np.asarray(result, np.float64).reshape(len(result), -1)
    ok = np.isfinite(d).all(1) & np.isfinite(f).all(1)
    d, f = d[ok], f[ok]
    out: dict[str, float | None] = {"r": None, "std_ratio": None, "driver_std": None,
                                    "frames": int(ok.sum())}
    if len(d) < min_frames:
        return out
    d, f = (d - d.mean(0)).ravel(), (f - f.mean(0)).ravel()
    sd, sf = float(np.sqrt(np.mean(d**2))), float(np.sqrt(np.mean(f**2)))
    out["driver_std"] = round(sd, 4)
    if sd > 1e-9:
        out["std_ratio"] = round(sf / sd, 4)
        if sf > 1e-9:
            out["r"] = round(float(np.dot(d, f) / (len(d) * sd * sf)), 4)
    return out


def eye_distance(points: np.ndarray) -> np.ndarray:
    """Distance between the eye centres of (..., 68, 2) landmarks."""
    return np.linalg.norm(points[..., 36:42, :].mean(-2) - points[..., 42:48, :].mean(-2), axis=-1)


def head_displacement(points: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
    """Distance of the stable landmarks of each frame from the reference's, in its eye distances.

    Args:
        points: (N, 68, 2) result landmarks (NaN rows: no face).
        reference: (68, 2) landmarks of the source.
    Returns:
        ``mean`` and ``max`` over frames of the per-frame mean displacement (None without faces).
    """
    per_frame = np.linalg.norm(points[:, STABLE] - reference[STABLE], axis=-1).mean(1)
    per_frame = per_frame[np.isfinite(per_frame)] / float(eye_distance(reference))
    if not len(per_frame):
        return {"mean": None, "max": None}
    return {"mean": round(float(per_frame.mean()), 4), "max": round(float(per_frame.max()), 4)}


def nose_motion(points: np.ndarray, scale: float) -> np.ndarray:
    """(N, 2) nose-tip displacement from the first frame with a face, in units of ``scale``."""
    nose = points[:, NOSE_TIP]
    found = np.flatnonzero(np.isfinite(nose).all(1))
    if not len(found):
        return np.full_like(nose, np.nan)
    return (nose - nose[found[0]]) / scale


def expression_report(driver: np.ndarray, result: np.ndarray, source: np.ndarray,
                      series: bool = False) -> dict:
    """Expression, head and face-found numbers of result landmarks against the driver's.

    Args:
        driver, result: (N, 68, 2) landmarks of the driving and the result frames (NaN rows
            where no face was found).
        source: (68, 2) landmarks of the source (photo) in the result's coordinates.
        series: also return the per-frame features (``series``: driver and result, each N
            rows of mouth, width, eyes; None where no face).
    """
    fd, fr = expression_features(driver), expression_features(result)
    found = np.isfinite(result).all((1, 2))
    report: dict = {"frames": len(result), "face_found": round(float(found.mean()), 4)}
    for i, name in enumerate(FEATURES):
        report[name] = follow(fd[:, i], fr[:, i])
    report["head"] = head_displacement(result, source)
    drv_scale = np.nanmedian(eye_distance(driver))
    nose = follow(nose_motion(driver, drv_scale), nose_motion(result, eye_distance(source)))
    report["nose_r"], report["nose_std_ratio"] = nose["r"], nose["std_ratio"]
    if series:
        report["series"] = {name: [[None if not math.isfinite(x) else round(float(x), 4)
                                    for x in row] for row in f]
                            for name, f in (("driver", fd), ("result", fr))}
    return report


def corner_patches(size: int,
                   span: tuple[float, float] = CORNER_PATCH) -> list[tuple[slice, slice]]:
    """(rows, cols) slices of the four corner patches of a size × size paste-box crop."""
    a, b = round(span[0] * size), round(span[1] * size)
    near, far = slice(a, b), slice(size - b, size - a)
    return [(r, c) for r in (near, far) for c in (near, far)]


def corner_motion(frames: Sequence[np.ndarray], photo: np.ndarray) -> dict[str, float | None]:
    """Stitching: how the paste box's corner patches of the result move and differ from the photo.

    Args:
        frames: result crops of the paste box (uint8, S × S × 3), in order.
        photo: the photo's crop of the same box, same size.
    Returns:
        ``swim``: mean absolute change between consecutive frames, ``vs_photo``: mean absolute
        difference from the photo (both on 0-255, over the four patches).
    """
    patches = corner_patches(photo.shape[0])

    def cut(image: np.ndarray) -> np.ndarray:
        return np.concatenate([image[r, c].reshape(-1, 3) for r, c in patches]).astype(np.float32)

    cuts = [cut(f) for f in frames]
    ref = cut(photo)
    swim = [float(np.abs(b - a).mean()) for a, b in zip(cuts, cuts[1:])]
    return {"swim": round(float(np.mean(swim)), 3) if swim else None,
            "vs_photo": round(float(np.mean([np.abs(c - ref).mean() for c in cuts])), 3)
            if cuts else None}


def lookup(row: dict, path: str) -> float | None:
    """A metric of a report by dotted path (``"mouth.r"``), None when absent."""
    value: object = row
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)  # type: ignore[arg-type]


def passes(value: float | None, target: Target) -> bool:
    """Whether a value meets a target; a missing value fails."""
    if value is None or not math.isfinite(value):
        return False
    op, bound = target
    if op == ">=":
        return value >= bound  # type: ignore[operator]
    if op == "<=":
        return value <= bound  # type: ignore[operator]
    low, high = bound  # type: ignore[misc]
    return low <= value <= high


def mean_report(rows: list[dict]) -> dict:
    """Mean over clips of every numeric leaf of the reports (clips without the value skipped)."""
    keys: dict[str, None] = {}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                keys[f"{prefix}{k}"] = None

    for row in rows:
        walk(row, "")
    out: dict = {}
    for key in keys:
        values = [v for row in rows if (v := lookup(row, key)) is not None and math.isfinite(v)]
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = round(float(np.mean(values)), 4) if values else None
    return out


def judge(report: dict, protocol: str, region: str) -> dict[str, bool]:
    """Pass/fail of a report against the targets of its protocol and region."""
    return {k: passes(lookup(report, k), t) for k, t in TARGETS.get((protocol, region), {}).items()}


# ------------------------------------------------------------------------------------------
# running the animation and measuring


def landmarks(frame: np.ndarray) -> np.ndarray:
    """dlib's (68, 2) landmarks of the largest MTCNN face, NaN when there is none."""
    from fomm.faces.detect import detect_faces
    from fomm.faces.landmarks import landmarks_68

    faces = detect_faces(frame)
    return landmarks_68(frame, faces[0]) if faces else np.full((68, 2), np.nan)


def aed(source: np.ndarray, frames: Sequence[np.ndarray], at_most: int) -> float | None:
    """AED (dlib identity distance) of up to ``at_most`` evenly spread frames to the source."""
    from fomm.faces.metrics import face_metrics

    picks = np.linspace(0, len(frames) - 1, min(at_most, len(frames))).round().astype(int)
    picks = np.unique(picks)
    result = face_metrics(((source, frames[i]) for i in picks), akd=False).aed
    return round(result.value, 4) if result.frames else None


def expression_fields() -> set[str]:
    """The expression-layer fields AnimateOptions has on this revision (empty before it)."""
    from fomm.config import AnimateOptions

    names = {f.name for f in dataclasses.fields(AnimateOptions)}
    return names & {"expression", "animation_region", "expression_scale"}


def animate_options(args: argparse.Namespace, **kwargs: object):
    """AnimateOptions with this run's expression settings on top of ``kwargs``."""
    from fomm.config import AnimateOptions

    fields = expression_fields()
    extra: dict[str, object] = {}
    if args.expression != "default":
        if "expression" not in fields:
            if args.expression == "on":
                sys.exit("--expression on: this revision's AnimateOptions has no expression layer")
        else:
            extra["expression"] = args.expression == "on"
    if args.region != "all" or args.scale != 1.0:
        if "animation_region" not in fields:
            sys.exit("--region / --scale: this revision's AnimateOptions has no expression layer")
        extra["animation_region"] = args.region
        extra["expression_scale"] = args.scale
    return AnimateOptions(progress=False, audio=False, **kwargs, **extra)


def framed_clip(clip: Path, max_frames: int) -> list[np.ndarray]:
    """The clip's first frames framed as ``fomm animate`` frames a driving video, at 256."""
    from fomm.faces.track import frame_driving
    from fomm.media.video import iter_frames

    return list(frame_driving(iter_frames(clip, max_frames=max_frames), SIZE))


def run_self(animator, clip: Path, framed: list[np.ndarray], driver: np.ndarray,
             args: argparse.Namespace, work: Path) -> tuple[dict, dict, list[np.ndarray]]:
    """Self-reenactment through animate_file to PNGs; (report, options, measured results)."""
    from fomm.inference.pipeline import animate_file
    from fomm.media.image import resize, write_image
    from fomm.media.video import iter_frames

    source, out_dir = work / "source.png", work / "self-out"
    write_image(source, framed[0])
    opts = animate_options(args, max_frames=args.max_frames)
    animate_file(source, clip, f"{out_dir}/", opts, animator=animator)
    results = [f if f.shape[0] == SIZE else resize(f, SIZE)
               for f in list(iter_frames(out_dir))[::args.stride]]
    points = np.stack([landmarks(f) for f in results])
    source_points = landmarks(framed[0])
    report = expression_report(driver, points, source_points, args.series)
    report["aed"] = aed(framed[0], results, args.aed_frames)
    if args.region == "pose":
        report.update(pose_numbers(framed[::args.stride], results, driver, framed[0],
                                   source_points, relative=False))
    elif args.region == "all":
        report["ceiling"] = self_agreement(framed[::args.stride], driver)
        report["steady"] = steady_agreement(framed[::args.stride], results)
    return report, _options(opts), results


def moved(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``frame`` moved by the 2x3 affine ``matrix`` (bilinear, edges reflected, the same size)."""
    import cv2

    h, w = frame.shape[:2]
    return cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def moved_landmarks(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """dlib's landmarks (:func:`landmarks`) of ``frame`` :func:`moved` by ``matrix``."""
    return landmarks(moved(frame, matrix))


CEILING_MOVE = (3.0, 0.97, (2.5, -1.5))  # degrees, scale, shift (pixels): a small resampling


def self_agreement(frames: Sequence[np.ndarray], driver: np.ndarray) -> dict[str, dict]:
    """dlib's agreement with itself on the driving frames: each frame moved by a small
    similarity (:data:`CEILING_MOVE`) and measured again, then :func:`follow` of each feature
    against the driver's. A perfect copy of the driver's expression would score about this
    ``r``: where the driver's features hardly move (a clip without blinks), it is low.

    Args:
        frames: the measured driving frames (uint8 RGB).
        driver: (N, 68, 2) their landmarks.
    """
    import cv2

    angle, scale, shift = CEILING_MOVE
    moved = []
    for frame in frames:
        h, w = frame.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        matrix[:, 2] += shift
        moved.append(moved_landmarks(frame, matrix))
    fd, fm = expression_features(driver), expression_features(np.stack(moved))
    return {name: follow(fd[:, i], fm[:, i]) for i, name in enumerate(FEATURES)}


def still_mouth_floor(source: np.ndarray, source_points: np.ndarray, driver: np.ndarray,
                      driving: np.ndarray | None = None,
                      relative: bool = False) -> dict[str, float | None]:
    """The mouth numbers of a perfectly still mouth under the driver's head motion: the source
    moved by the similarity that takes its stable landmarks to each driving frame's (dlib), then
    measured like a result. Its ``std_ratio`` is the least a region-pose result can score
    (dlib's own spread on a mouth that does not move), beside which that result is read.

    Args:
        source: the source frame (uint8 RGB, SIZE square).
        source_points: (68, 2) its landmarks.
        driver: (N, 68, 2) the measured driving frames' landmarks (NaN rows: no face).
        driving: :func:`steady_readings` of the measured driving frames, or None.
        relative: move the source by the driver's head motion since its first frame with a
            face (turn and scale about the source's stable landmarks, the shift in proportion
            to the eye distances), for a source that is someone else's photo.
    Returns:
        :func:`follow` of the mouth opening (``r``, ``std_ratio``, ``driver_std``, ``frames``);
        with ``driving``, also ``steady_std_ratio``: the same with the moved sources' and the
        driving frames' readings averaged (:func:`steady_agreement`'s mouth ``std_ratio``).
    """
    import cv2

    points_moved = np.full_like(driver, np.nan)
    frames: list[np.ndarray | None] = [None] * len(driver)
    found = np.isfinite(driver).all((1, 2))
    if np.isfinite(source_points).all() and found.any():
        first = driver[int(np.argmax(found))]
        for i, points in enumerate(driver):
            if not found[i]:
                continue
            matrix, _ = cv2.estimateAffinePartial2D(
                (first if relative else source_points)[STABLE], points[STABLE])
            if matrix is None:
                continue
            if relative:
                matrix = _conjugated(matrix, first[STABLE], source_points[STABLE])
            frames[i] = moved(source, matrix)
            points_moved[i] = landmarks(frames[i])
    out = follow(expression_features(driver)[:, 0], expression_features(points_moved)[:, 0])
    if driving is not None:
        still = np.full((len(frames), len(FEATURES)), np.nan)
        found = [i for i, f in enumerate(frames) if f is not None]
        if found:
            still[found] = steady_readings([frames[i] for i in found])
        out["steady_std_ratio"] = follow(driving[:, 0], still[:, 0])["std_ratio"]
    return out


def _conjugated(matrix: np.ndarray, first: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The 2x3 similarity ``matrix`` (the driver's head from its points ``first`` on) applied to
    a source whose points are ``source``: turned and scaled about their centroid, shifted by
    the driver's centroid's displacement times the ratio of the two faces' sizes."""
    linear = matrix[:, :2]
    centre_d, centre_s = first.mean(0), source.mean(0)
    size = np.linalg.norm(source - centre_s) / max(float(np.linalg.norm(first - centre_d)), 1e-9)
    shift = (linear @ centre_d + matrix[:, 2] - centre_d) * size
    return np.hstack([linear, (centre_s - linear @ centre_s + shift)[:, None]])


NOISE_SHIFTS = ((0.5, 0.5), (-2.25, 1.5), (1.75, -2.5), (3.5, 0.75), (-1.0, -3.25))  # pixels


def shifted_features(frames: Sequence[np.ndarray],
                     shifts: Sequence[tuple[float, float]] = NOISE_SHIFTS) -> np.ndarray:
    """dlib's expression features of each frame read as it is and moved by each of the small
    translations ``shifts`` (the same picture; the face box and the pixel grid land elsewhere).

    Returns:
        (N, 1 + len(shifts), 3) mouth, width and eye opening per frame and reading (NaN where a
        reading found no face).
    """
    readings = []
    for frame in frames:
        row = [landmarks(frame)]
        for dx, dy in shifts:
            row.append(moved_landmarks(frame, np.float32([[1, 0, dx], [0, 1, dy]])))
        readings.append(expression_features(np.stack(row)))
    return np.asarray(readings, np.float64).reshape(len(frames), 1 + len(shifts), len(FEATURES))


def reading_noise(frames: Sequence[np.ndarray], driver: np.ndarray,
                  shifts: Sequence[tuple[float, float]] = NOISE_SHIFTS,
                  readings: np.ndarray | None = None) -> dict[str, float | None]:
    """dlib's own noise in the mouth opening of result frames (a diagnostic beside region pose's
    ``mouth.std_ratio``): each frame measured again moved by the small translations ``shifts``
    (:func:`shifted_features`).

    Args:
        frames: the measured result frames (uint8 RGB).
        driver: (N, 68, 2) the driving frames' landmarks (NaN rows: no face).
        shifts: (dx, dy) pixel translations, each one more reading of every frame.
        readings: :func:`shifted_features` of ``frames`` when already read.
    Returns:
        ``within``: the RMS over frames of each frame's std over its readings, over the driver's
        mouth std (the spread a result shows from dlib's reading alone, its mouth never
        changing); ``steady_std_ratio``: the std over frames of each frame's mean reading over
        the driver's (the result's spread with that noise averaged over ``1 + len(shifts)``
        readings); ``frames`` used (a face in the driving frame and in every reading).
    """
    values = (shifted_features(frames, shifts) if readings is None else readings)[..., 0]
    mouth = expression_features(driver)[:, 0].astype(np.float64)
    ok = np.isfinite(mouth) & np.isfinite(values).all(1)
    out: dict[str, float | None] = {"within": None, "steady_std_ratio": None,
                                    "frames": int(ok.sum())}
    spread = float(np.std(mouth[ok])) if ok.sum() >= 3 else 0.0
    if spread > 1e-9:
        within = float(np.sqrt(np.mean(np.var(values[ok], axis=1, ddof=1)))) if shifts else 0.0
        out["within"] = round(within / spread, 4)
        out["steady_std_ratio"] = round(float(np.std(values[ok].mean(1))) / spread, 4)
    return out


def steady_readings(frames: Sequence[np.ndarray],
                    shifts: Sequence[tuple[float, float]] = NOISE_SHIFTS,
                    readings: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) dlib's expression features of each frame averaged over its ``1 + len(shifts)``
    readings (:func:`shifted_features`, or ``readings`` when already read; the faceless ones
    left out, NaN where none has a face)."""
    import warnings

    if readings is None:
        readings = shifted_features(frames, shifts)
    with warnings.catch_warnings():  # a frame with no face in any reading: NaN, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(readings, axis=1)


def steady_agreement(driving: Sequence[np.ndarray], results: Sequence[np.ndarray],
                     shifts: Sequence[tuple[float, float]] = NOISE_SHIFTS,
                     driving_readings: np.ndarray | None = None,
                     result_readings: np.ndarray | None = None) -> dict[str, dict]:
    """How the result follows the driver with dlib's reading noise averaged out on both sides:
    each driving and result frame read ``1 + len(shifts)`` times, the readings of a frame
    averaged (:func:`steady_readings`), then :func:`follow` per feature. Where a feature moves
    less than a pixel (lids without blinks, a region-pose mouth), single readings measure much
    of dlib's noise.

    Args:
        driving, results: the measured driving and result frames, pairwise (uint8 RGB).
        driving_readings, result_readings: :func:`steady_readings` of ``driving`` and of
            ``results`` when already read.
    """
    fd = steady_readings(driving, shifts) if driving_readings is None else driving_readings
    fr = steady_readings(results, shifts) if result_readings is None else result_readings
    return {name: follow(fd[:, i], fr[:, i]) for i, name in enumerate(FEATURES)}


def pose_numbers(driving: Sequence[np.ndarray], results: Sequence[np.ndarray],
                 driver: np.ndarray, source: np.ndarray, source_points: np.ndarray,
                 relative: bool) -> dict[str, dict]:
    """Region pose's readings beside its ``mouth``: ``floor`` (:func:`still_mouth_floor`),
    ``mouth_noise`` (:func:`reading_noise`) and ``steady`` (:func:`steady_agreement`, on which
    region pose is judged), every driving and result frame read under the shifts once.

    Args:
        driving, results: the measured driving and result frames, pairwise (uint8 RGB).
        driver: (N, 68, 2) the driving frames' landmarks; ``source``, ``source_points``: the
            source (the photo's crop) and its landmarks; ``relative``: see
            :func:`still_mouth_floor`.
    """
    drive = steady_readings(driving)
    shifted = shifted_features(results)
    return {"floor": still_mouth_floor(source, source_points, driver, drive, relative=relative),
            "mouth_noise": reading_noise(results, driver, readings=shifted),
            "steady": steady_agreement(driving, results, driving_readings=drive,
                                       result_readings=steady_readings(results,
                                                                       readings=shifted))}


def run_cross(animator, clip: Path, photo_path: Path, framed: list[np.ndarray],
              driver: np.ndarray, args: argparse.Namespace,
              work: Path) -> tuple[dict, dict, list[np.ndarray]]:
    """Cross-reenactment of a photo through animate_file with the defaults (face crop, paste,
    detail) to MP4; measured on the output cut at the paste box."""
    from fomm.faces.crop import crop, square_box
    from fomm.faces.detect import detect_faces
    from fomm.inference.pipeline import animate_file
    from fomm.media.image import read_image
    from fomm.media.video import iter_frames
    from fomm.render.detail import pixel_box

    photo = read_image(photo_path)
    box = square_box(detect_faces(photo)[0], photo.shape)
    opts = animate_options(args, max_frames=args.max_frames)
    if opts.detail:
        box = pixel_box(box)  # as the pipeline pastes with detail
    output = work / "cross.mp4"
    animate_file(photo_path, clip, output, opts, animator=animator)
    results = [crop(f, box, SIZE) for f in list(iter_frames(output))[::args.stride]]
    photo_crop = crop(photo, box, SIZE)
    points = np.stack([landmarks(f) for f in results])
    report = expression_report(driver, points, landmarks(photo_crop), args.series)
    report["aed"] = aed(photo_crop, results, args.aed_frames)
    report["corners"] = corner_motion(results, photo_crop)
    if args.region == "pose":
        report.update(pose_numbers(framed[::args.stride], results, driver, photo_crop,
                                   landmarks(photo_crop), relative=True))
    return report, _options(opts), results


def _options(opts: object) -> dict:
    return {k: v for k, v in dataclasses.asdict(opts).items()  # type: ignore[call-overload]
            if k not in ("progress", "audio", "batch_size", "device", "precision")}


def git_revision() -> str:
    """``git describe --always --dirty`` of the checkout (the tree is shared: dirty is common)."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def resolve(items: list[str] | None, defaults: list[str]) -> list[Path]:
    """Paths of ``--clips``/``--photos`` (names of set members, data-relative or real paths)."""
    if not items:
        return [DATA / p for p in defaults]
    out = []
    for item in items:
        matches = [DATA / p for p in defaults if Path(p).stem == Path(item).stem]
        out.append(matches[0] if matches else (Path(item) if Path(item).exists() else DATA / item))
    return out


# ------------------------------------------------------------------------------------------
# printing


def _fmt(value: float | None, width: int = 6, digits: int = 2) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


HEADER = (f"{'clip':36} {'n':>3} {'face%':>6} | {'mouth r':>7} {'std':>5} | {'width r':>7} "
          f"{'std':>5} | {'eyes r':>6} {'std':>5} | {'AED':>5} | {'head':>5} {'max':>5} "
          f"{'nose r':>6} | {'swim':>5} {'photo':>5} | {'floor':>5} {'eye c':>5} {'eye s':>5}"
          f" {'std s':>5}"
          " | fails")


def table_row(name: str, r: dict, verdict: dict[str, bool]) -> str:
    face = lookup(r, "face_found")
    fails = [k for k, ok in verdict.items() if not ok]
    face = None if face is None else 100 * face
    return (f"{name[:36]:36} {r.get('frames', 0):3d} {_fmt(face, 6, 1)}"
            f" | {_fmt(lookup(r, 'mouth.r'), 7)} {_fmt(lookup(r, 'mouth.std_ratio'), 5)}"
            f" | {_fmt(lookup(r, 'width.r'), 7)} {_fmt(lookup(r, 'width.std_ratio'), 5)}"
            f" | {_fmt(lookup(r, 'eyes.r'), 6)} {_fmt(lookup(r, 'eyes.std_ratio'), 5)}"
            f" | {_fmt(lookup(r, 'aed'), 5)} | {_fmt(lookup(r, 'head.mean'), 5, 3)}"
            f" {_fmt(lookup(r, 'head.max'), 5, 3)} {_fmt(lookup(r, 'nose_r'), 6)}"
            f" | {_fmt(lookup(r, 'corners.swim'), 5, 1)}"
            f" {_fmt(lookup(r, 'corners.vs_photo'), 5, 1)}"
            f" | {_fmt(lookup(r, 'floor.std_ratio'), 5)} {_fmt(lookup(r, 'ceiling.eyes.r'), 5)}"
            f" {_fmt(lookup(r, 'steady.eyes.r'), 5)}"
            f" {_fmt(lookup(r, 'steady.mouth.std_ratio'), 5)}"
            f" | {'PASS' if not fails else 'FAIL ' + ', '.join(fails)}")


def print_tables(rows: list[dict], protocols: list[str], region: str) -> dict:
    """Per-clip table and the mean per protocol; returns the aggregate for the JSON."""
    aggregate: dict = {}
    for protocol in protocols:
        reports = [row[protocol] for row in rows if protocol in row]
        if not reports:
            continue
        print(f"\n{protocol} ({region})   targets: "
              + ", ".join(f"{k} {op} {b}" for k, (op, b) in
                          TARGETS.get((protocol, region), {}).items()))
        print(HEADER)
        for row in rows:
            if protocol in row:
                name = row["clip"] + (f" <- {row['photo']}" if protocol == "cross" else "")
                print(table_row(name, row[protocol], row[f"{protocol}_pass"]))
        mean = mean_report(reports)
        mean["frames"] = int(sum(r["frames"] for r in reports))
        verdict = judge(mean, protocol, region)
        per_clip = {k: sum(row[f"{protocol}_pass"][k] for row in rows if protocol in row)
                    for k in verdict}
        print(table_row("MEAN", mean, verdict))
        print("clips passing: " + ", ".join(f"{k} {n}/{len(reports)}" for k, n in per_clip.items()))
        aggregate[protocol] = {"mean": mean, "mean_pass": verdict,
                               "clips_passing": per_clip, "clips": len(reports)}
    return aggregate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), required=True)
    parser.add_argument("--clips", nargs="+", help="a subset of the set's clips (names or paths)")
    parser.add_argument("--photos", nargs="+", help="photos for cross-reenactment (clip i gets "
                        "photo i modulo their count; default: the set's)")
    parser.add_argument("--protocols", nargs="+", choices=("self", "cross"),
                        default=["self", "cross"])
    parser.add_argument("--expression", choices=("on", "off", "default"), default="default",
                        help="the expression layer (default: AnimateOptions' default)")
    parser.add_argument("--region", default="all",
                        help="--animation-region: all, pose, expression, eyes, lips")
    parser.add_argument("--scale", type=float, default=1.0, help="--expression-scale")
    parser.add_argument("--stride", type=int, default=2, help="measure every N-th frame")
    parser.add_argument("--max-frames", type=int, default=150)
    parser.add_argument("--aed-frames", type=int, default=25,
                        help="AED over this many evenly spread measured frames")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of torch, OpenVINO and OpenCV (1 on a busy machine)")
    parser.add_argument("--checkpoint", "-c", default=None)
    parser.add_argument("--series", action="store_true",
                        help="store the per-frame mouth, width and eye features in the JSON")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the measured result frames of each clip here (PNG)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    chosen = SETS[args.set]
    clips = resolve(args.clips, chosen["clips"])
    photos = resolve(args.photos, chosen["photos"])
    missing = [p for p in clips + photos if not p.exists()]
    if missing:
        print(f"skipped: the {args.set} set's media are absent ({', '.join(map(str, missing))}); "
              f"they are expected under {DATA}")
        return
    if args.threads:
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    from fomm.checkpoints.loading import load_model
    from fomm.faces.landmarks import require
    from fomm.inference.animator import Animator

    require()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import machine  # benchmarks/machine.py

    models, config = load_model(args.checkpoint)
    animator = Animator(models, config, device="auto", precision="auto")
    print(f"set {args.set}: {len(clips)} clips; backend {animator.backend}, precision "
          f"{animator.precision}; expression fields: {sorted(expression_fields()) or 'none'}")
    rows, options = [], {}
    started, revision = time.perf_counter(), git_revision()  # the tree may change while running
    for i, clip in enumerate(clips):
        t0 = time.perf_counter()
        framed = framed_clip(clip, args.max_frames)
        driver = np.stack([landmarks(f) for f in framed[::args.stride]])
        row: dict = {"clip": clip.stem, "frames_animated": len(framed),
                     "driver_face_found": round(float(np.isfinite(driver).all((1, 2)).mean()), 4)}
        with tempfile.TemporaryDirectory(prefix="validate-expression-") as tmp:
            kept: dict[str, list[np.ndarray]] = {}
            if "self" in args.protocols:
                t1 = time.perf_counter()
                row["self"], options["self"], kept["self"] = run_self(
                    animator, clip, framed, driver, args, Path(tmp))
                row["self"]["seconds"] = round(time.perf_counter() - t1, 1)
                row["self_pass"] = judge(row["self"], "self", args.region)
            if "cross" in args.protocols:
                photo = photos[i % len(photos)]
                row["photo"] = photo.stem
                t1 = time.perf_counter()
                row["cross"], options["cross"], kept["cross"] = run_cross(
                    animator, clip, photo, framed, driver, args, Path(tmp))
                row["cross"]["seconds"] = round(time.perf_counter() - t1, 1)
                row["cross_pass"] = judge(row["cross"], "cross", args.region)
        if args.keep:
            _keep(args.keep / clip.stem, framed[::args.stride], kept)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"  {clip.stem}: {row['seconds']} s", flush=True)
    aggregate = print_tables(rows, args.protocols, args.region)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "set": args.set, "machine": machine(), "git": revision,
            "checkpoint": str(args.checkpoint or "bundled"), "backend": animator.backend,
            "precision": animator.precision,
            "settings": {"expression": args.expression, "region": args.region,
                         "scale": args.scale, "stride": args.stride,
                         "max_frames": args.max_frames, "aed_frames": args.aed_frames,
                         "threads": args.threads, "protocols": args.protocols},
            "animate_options": options,
            "targets": {f"{p}/{r}": {k: [op, b] for k, (op, b) in t.items()}
                        for (p, r), t in TARGETS.items()},
            "aggregate": aggregate, "clips": rows,
            "seconds": round(time.perf_counter() - started, 1),
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


def _keep(folder: Path, driving: list[np.ndarray], kept: dict[str, list[np.ndarray]]) -> None:
    from fomm.media.image import write_image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(driving):
        row = [frame] + [frames[i] for frames in kept.values() if i < len(frames)]
        write_image(folder / f"{i:04d}.png", np.concatenate(row, axis=1))


if __name__ == "__main__":
    main()
