"""ExpressionLayer: the driver's facial expression on each rendered frame, by design.

Per face: the photo's landmarks once, the driving reference once, then one call a frame::

    layer = ExpressionLayer(photo_crop, ExpressionOptions(region="all"))
    for result, driving in zip(fomm_results, driving_crops):
        frame = layer.apply(result, driving)

The driving frame's landmarks can be found apart from the rendering, e.g. on another thread
while the networks draw ``result`` (``fomm live``)::

    observed = layer.observe(driving)
    frame = layer.apply(result, driving, observed=observed)

Each frame: landmarks of the driving frame and of the result (FaceMesh, on a copy of at most
``DETECT_SIZE`` pixels), the driver's expression since the reference (geometry.py), the target
landmarks (the photo's face with the expression, in the result's head pose), a confined
thin-plate warp of the result onto them (warp.py) and the mouth's interior where the target mouth
opens wider than the result's (mouth.py); where the photo's expression is kept on the FOMM result
(region ``pose``), the photo's own mouth is laid on it (:func:`mouth.paste_mouth`). Landmarks are
smoothed over time (One-Euro; in region ``pose`` the smoothed shape is posed like the frame's
own landmarks: the pasted mouth does not lag behind a moving head); a frame without landmarks
holds the last good ones for ``HOLD`` frames, then the result passes unchanged. The result's
eyelids come from the iris network on closing eyes and every ``LID_REFRESH`` frames only; the
driver's on every frame (its blinks), ``LID_BLEND`` of the way to the face network's, their
lower lids riding on the cheek (:data:`geometry.CHEEK_LID`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from fomm.errors import NoFaceError
from fomm.expression import eyes, geometry, mouth, warp
from fomm.expression.options import ExpressionOptions
from fomm.expression.smoothing import OneEuro

if TYPE_CHECKING:
    from fomm.faces.mesh import FaceLandmarks, FaceMesh

DEFAULT_OPTIONS = ExpressionOptions()  # frozen: safe to share
DETECT_SIZE = 256  # landmarks are found on a copy at most this large
HOLD = 5  # frames a missed face keeps the last good landmarks
# One-Euro settings (face units: eye distances a second), steady at rest. The driver's offsets
# follow fast motion almost at once (a blink lasts 3-4 frames: slower settings lose it); the
# result's landmarks with little lag too (the warp must sit on the features of the frame).
OFFSETS_FILTER = {"min_cutoff": 3.0, "beta": 30.0, "d_cutoff": 5.0}
RESULT_FILTER = {"min_cutoff": 3.0, "beta": 10.0, "d_cutoff": 5.0}
# The result's eyelids: the iris network's (FaceMesh.refined) on a frame where an eye's lid gap
# (face network) falls below LID_CLOSING times its open gap, and at least every LID_REFRESH
# frames; in between, the face network's lids moved by the last refined frame's correction (in
# each eye's corner frame). An open eye's correction hardly changes; a closing one is refined.
LID_REFRESH = 4
LID_CLOSING = 0.9
# The driver's eyelids: the face network's and the iris network's, this share of the way from
# the iris network's to the face network's. Each has slow errors of its own (the iris network's
# lids hardly move on a smile's narrowed eyes, the face network's drift with the head), the iris
# network alone shuts a blink: halfway, their lid gap followed dlib's 68-point one on the tuning
# clips' drivers with r 0.78 (mean of 9 clips, every frame), against 0.74 (iris) and 0.71 (face).
LID_BLEND = 0.5
# region pose's head motion (fomm.models.motion.head_motion): a FOMM keypoint on the photo's lower
# face keeps none of its own motion (its small motions are the mouth's and the jaw's, not the
# head's turn); all of it above. The share falls (smoothstep) from HEAD_KEEP_FACE[0] to [1] of
# the way from the eye line down to the top of the upper lip.
HEAD_KEEP_FACE = (0.5, 0.8)
FOCUS_MARGIN = 0.2  # the warp is finer over the lips' box grown by this (eye distances)
SPARSE = ("face_oval", "left_brow", "right_brow", "nose")
CONTROL_GROUPS = (
    "face_oval",
    "left_brow",
    "right_brow",
    "nose",
    "stable",
    *geometry.LIDS,
    *geometry.LIPS,
)


class Observation(NamedTuple):
    """A driving frame's landmarks, from :meth:`ExpressionLayer.observe`."""

    points: np.ndarray | None  # (468, 2) float64 in the driving frame's pixels; None: no face


class ExpressionLayer:
    """Per face: the photo's landmarks once, the driving reference once, then one call a frame.

    Args:
        photo: the face crop of the source photo (uint8 RGB, square, any size; the same framing
            as the crops later given to :meth:`apply`).
        options: region, strength and sliders; ``options`` may be replaced between frames.
        mesh: the landmark detector for the photo, the driving frames and the results (an
            untracked one: they alternate). Default: new :class:`fomm.faces.mesh.FaceMesh`
            instances, a tracked one each for the driving frames and the results (the
            driving frames' eyelids between the face and the iris network's: ``LID_BLEND``;
            the results' refined where it matters: ``LID_CLOSING``).

    Raises:
        NoFaceError: no landmarks on the photo.
    """

    def __init__(
        self,
        photo: np.ndarray,
        options: ExpressionOptions = DEFAULT_OPTIONS,
        mesh: FaceMesh | None = None,
    ) -> None:
        if mesh is None:
            from fomm.faces.mesh import FaceMesh

            # one tracker per stream: one network pass a frame each
            mesh, self._mesh_driving, self._mesh_result = (
                FaceMesh(),
                FaceMesh(track=True, refine_eyes=False),  # both lids kept: LID_BLEND
                FaceMesh(track=True, refine_eyes=False),  # refined where it matters
            )
            self._some_lids_refined = True
        else:
            self._mesh_driving = self._mesh_result = mesh
            self._some_lids_refined = False
        self.options = options
        self._mesh = mesh
        self._photo = np.ascontiguousarray(photo)
        found = self._detect(self._photo)
        if found is None:
            raise NoFaceError("no face landmarks found on the photo for the expression layer")
        self._groups = {name: np.asarray(idx) for name, idx in found.groups.items()}
        self._photo_points = np.asarray(found.points, dtype=np.float64)
        self._photo_small: tuple[np.ndarray, np.ndarray] | None = None
        # every other point of the long outlines is enough for a smooth warp (and cheaper)
        self._controls = np.unique(
            np.concatenate([self._groups[g][:: 2 if g in SPARSE else 1] for g in CONTROL_GROUPS])
        )
        self.reset()

    def reset(self) -> None:
        """Forget the reference, the smoothing and the held landmarks (live: retake)."""
        self._reference: np.ndarray | None = None
        self._offsets = OneEuro(**OFFSETS_FILTER)
        self._result_filter = OneEuro(**RESULT_FILTER)
        self._held_offsets: np.ndarray | None = None
        self._held_driving: np.ndarray | None = None
        self._held_image: np.ndarray | None = None
        self._offset_misses = 0
        self._held_result: np.ndarray | None = None
        self._result_misses = 0
        self._result_raw: np.ndarray | None = self._photo_points  # the last result's, unsmoothed
        self._last_result: np.ndarray | None = self._photo
        self._last_points: np.ndarray | None = self._photo_points
        self._lid_fix: list[np.ndarray] | None = None
        self._open_gaps: np.ndarray | None = None
        self._since_refined = 0

    def _detect(self, image: np.ndarray, mesh: FaceMesh | None = None) -> FaceLandmarks | None:
        mesh = self._mesh if mesh is None else mesh
        small, factor = _shrunk(image)
        found = mesh.detect(small)
        return found if found is None or factor == 1.0 else found.scaled(1.0 / factor)

    def _points(self, image: np.ndarray, mesh: FaceMesh | None = None) -> np.ndarray | None:
        found = self._detect(image, mesh)
        return None if found is None else np.asarray(found.points, dtype=np.float64)

    def observe(self, driving: np.ndarray) -> Observation:
        """The landmarks of a driving frame (framed crop, uint8 RGB, any size) for
        :meth:`apply` and :meth:`set_reference` (``observed=``). The layer's work on the
        driving frame alone: safe to run on one thread while :meth:`apply` renders an earlier
        frame on another. Observe the driving frames in their order (the landmarks are tracked
        from frame to frame)."""
        driving = np.ascontiguousarray(driving)
        if not self._some_lids_refined:
            return Observation(self._points(driving, self._mesh_driving))
        small, factor = _shrunk(driving)
        found = self._mesh_driving.detect(small)
        if found is None:
            return Observation(None)
        raw = np.asarray(found.points, dtype=np.float64)
        points = np.asarray(self._mesh_driving.refined(small, found).points, dtype=np.float64)
        for lids, _ in self._eyes():
            points[lids] += LID_BLEND * (raw[lids] - points[lids])
        return Observation(points / factor)

    def set_reference(self, driving: np.ndarray, observed: Observation | None = None) -> bool:
        """Take ``driving``'s expression as the photo's own; False if it has no face.
        ``observed``: :meth:`observe` of ``driving``, when it was observed already."""
        if observed is None:
            observed = self.observe(driving)
        points = observed.points
        if points is None:
            return False
        self._reference = points
        self._offsets.reset()
        self._held_offsets = None
        return True

    def _driver(
        self, driving: np.ndarray, observed: Observation | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The smoothed expression offsets (face units), the driving landmarks and image, or the
        held ones after a miss; None when there are none."""
        points = (self.observe(driving) if observed is None else observed).points
        if points is not None and self._reference is None:
            self._reference = points
        if points is None:
            self._offset_misses += 1
            if self._held_offsets is None or self._offset_misses > HOLD:
                return None
            return self._held_offsets, self._held_driving, self._held_image
        self._offset_misses = 0
        offsets = self._offsets(geometry.expression_offsets(points, self._reference, self._groups))
        self._held_offsets, self._held_driving, self._held_image = offsets, points, driving.copy()
        return offsets, points, self._held_image

    def _result_points(self, result: np.ndarray) -> np.ndarray | None:
        """Smoothed landmarks of ``result``; the known ones when it is the same image again."""
        last = self._last_result
        if last is not None and last.shape == result.shape and np.array_equal(last, result):
            return self._last_points
        points = self._result_landmarks(result)
        self._result_raw = points
        if points is None:
            self._result_misses += 1
            if self._held_result is None or self._result_misses > HOLD:
                return None
            return self._held_result
        self._result_misses = 0
        dist, _ = geometry.face_axes(points, self._groups)
        dist = max(dist, 1e-6)
        points = self._result_filter(points / dist) * dist
        self._held_result = points
        self._last_result, self._last_points = result.copy(), points
        return points

    def _result_landmarks(self, result: np.ndarray) -> np.ndarray | None:
        """Landmarks of ``result``, their eyelids refined where it matters (``LID_CLOSING``)."""
        if not self._some_lids_refined:
            return self._points(result, self._mesh_result)
        small, factor = _shrunk(result)
        found = self._mesh_result.detect(small)
        if found is None:
            return None
        raw = np.asarray(found.points, dtype=np.float64)
        gaps = _lid_gaps(raw, self._groups)
        self._since_refined += 1
        closing = self._open_gaps is not None and bool(np.any(gaps < LID_CLOSING * self._open_gaps))
        if self._lid_fix is None or closing or self._since_refined >= LID_REFRESH:
            refined = self._mesh_result.refined(small, found)
            points = np.asarray(refined.points, dtype=np.float64)
            self._lid_fix = [_in_eye(points, raw, lids, ends) for lids, ends in self._eyes()]
            self._since_refined = 0
            if not closing:
                self._open_gaps = gaps
        else:
            points = raw.copy()
            for fix, (lids, ends) in zip(self._lid_fix, self._eyes()):
                a, b = _complex(raw[ends])
                points[lids] = _points(a + (b - a) * (_in_eye(raw, raw, lids, ends) + fix))
        return points / factor

    def head_keep(self, keypoints: np.ndarray) -> np.ndarray:
        """How much of its own small motion each FOMM keypoint of the photo keeps under region
        ``pose``'s head motion (:func:`fomm.models.motion.head_motion`'s ``kept``): 1 on the
        upper face (the head's turn out of the image plane moves those), 0 on the mouth and
        the jaw (their motion is the expression's), by ``HEAD_KEEP_FACE``.

        Args:
            keypoints: (K, 2) the photo's keypoints, x and y in [-1, 1] of the photo crop.
        Returns:
            (K,) float32 factors 0..1.
        """
        h, w = self._photo.shape[:2]
        pixels = (np.asarray(keypoints, dtype=np.float64).reshape(-1, 2) + 1) / 2 * (w - 1, h - 1)
        points, groups = self._photo_points, self._groups
        dist, axes = geometry.face_axes(points, groups)
        origin = np.mean(geometry.eye_centres(points, groups), axis=0)
        down = axes[:, 1]
        lip = float(np.min((points[groups["lips_outer_upper"]] - origin) @ down))
        depth = ((pixels - origin) @ down) / max(lip, 1e-6 * max(dist, 1.0))
        low, high = HEAD_KEEP_FACE
        t = np.clip((depth - low) / (high - low), 0.0, 1.0)
        return (1.0 - t * t * (3.0 - 2.0 * t)).astype(np.float32)

    def _photo_at(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The photo crop and its landmarks at a result's size (area-averaged once: a much larger
        photo would alias where it is sampled)."""
        h, w = self._photo.shape[:2]
        if shape[0] * 1.5 >= h:
            return self._photo, self._photo_points
        if self._photo_small is None or self._photo_small[0].shape[:2] != shape[:2]:
            small = cv2.resize(self._photo, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
            factor = np.array([shape[1] / w, shape[0] / h])
            self._photo_small = small, self._photo_points * factor
        return self._photo_small

    def _eyes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per eye: its lid points (both lids, corners once) and its two corners."""
        out = []
        for side in ("left", "right"):
            upper, lower = self._groups[f"{side}_eye_upper"], self._groups[f"{side}_eye_lower"]
            out.append((np.unique(np.r_[upper, lower]), np.array([upper[0], upper[-1]])))
        return out

    def apply(
        self, result: np.ndarray, driving: np.ndarray, observed: Observation | None = None
    ) -> np.ndarray:
        """The rendered crop: ``result`` with the expression the options ask for.

        Args:
            result: the frame to render on (uint8 RGB square crop, any size, the photo's
                framing): the FOMM result for regions all/pose, the photo crop itself for
                expression/eyes/lips.
            driving: the driving frame (framed crop, uint8 RGB, any size).
            observed: :meth:`observe` of ``driving``, when it was observed already (None:
                observed here, where the options use the driver).

        Returns:
            A new array shaped like ``result``; ``result``'s pixels where no face is found.
        """
        opts = self.options
        result = np.ascontiguousarray(result)
        drive = opts.region != "pose" and opts.scale > 0
        driver = self._driver(np.ascontiguousarray(driving), observed) if drive else None
        src = self._result_points(result)
        if src is None or (drive and driver is None):
            return result.copy()
        groups = self._groups
        if opts.region == "pose" and self._result_raw is not None:
            src = _posed_like(src, self._result_raw, groups["stable"])
        photo = self._photo_points
        face = geometry.slider_offsets(photo, groups, opts.eyes, opts.mouth, opts.smile)
        if driver is not None:
            offsets = driver[0]
            if opts.region in ("expression", "eyes", "lips"):  # the photo's head stays
                offsets = geometry.without_pose(offsets, photo, groups)
            # a photo's closing eyes open while the driver's are open
            offsets = offsets + eyes.opening(photo, groups, driver[1], self._reference)
            face = face + opts.scale * offsets
        moving = geometry.region_mask(groups, len(photo), opts.region)[:, None]
        wanted = photo + moving * geometry.to_pixels(face, photo, groups)
        wanted = np.where(moving > 0, geometry.clamp(wanted, groups, like=photo), photo)
        stable = groups["stable"]
        pose = geometry.similarity(photo[stable], src[stable])
        if opts.region in ("eyes", "lips"):
            target = src + (wanted - photo) @ pose[:, :2].T  # the rest pinned where it is
        else:
            target = geometry.transform(pose, wanted)
        idx = self._controls
        oval = groups["face_oval"]
        warped = eyes.kept_open(src, target, groups)
        if opts.region in ("eyes", "lips"):
            outline = np.vstack([_padded(p, groups, opts.region) for p in (src, target)])
        else:
            outline = np.vstack([src[oval], target[oval]])
        dist, axes = geometry.face_axes(target, groups)
        focus = None
        if opts.region != "eyes":  # a mouth opens and closes faster than a coarse grid follows
            lips = np.vstack([p[groups[g]] for p in (src, target) for g in geometry.LIPS])
            focus = (*(lips.min(0) - FOCUS_MARGIN * dist), *(lips.max(0) + FOCUS_MARGIN * dist))
        out = warp.warp(result, src[idx], warped[idx], outline, focus=focus)
        if driver is not None and opts.region != "lips":  # lids lifted past the frame's own
            out = eyes.fill_eye(out, warped, src, groups, driver[2], driver[1])
        origin = np.mean(geometry.eye_centres(target, groups), axis=0)
        shut = eyes.shut(target, groups)
        for side in ("left", "right"):
            upper = groups[f"{side}_eye_upper"]
            brow = groups[f"{side}_brow"]
            brow = brow[len(brow) // 2 :] if len(brow) >= 10 else brow  # its lower edge
            out = eyes.close_lid(
                out, warped[upper], shut[upper], origin, axes, dist, brow=target[brow]
            )
        if opts.region == "eyes":
            return out
        source, source_points = (self._photo, photo) if driver is None else (driver[2], driver[1])
        shown = src  # the frame's own mouth, before any fill
        if driver is None and opts.region in ("all", "pose"):
            # the photo's expression kept: its own mouth, not the result's squeezed shut
            out = mouth.paste_mouth(out, target, groups, *self._photo_at(result.shape[:2]), dist)
            shown = photo
        inner = groups["lips_inner_upper"], groups["lips_inner_lower"]
        target_gap = geometry.gap(target, *inner, groups)
        # a frame shows at most the photo's own mouth interior: it is drawn from the photo's
        # pixels, and the networks part the lips without the teeth or the dark between them
        # (FaceMesh reads such lips as apart where the image shows no interior)
        shown_gap = min(geometry.gap(shown, *inner, groups), geometry.gap(photo, *inner, groups))
        strength = mouth.fill_strength(target_gap, shown_gap)
        share = mouth.source_share(target_gap, geometry.gap(source_points, *inner, groups))
        return mouth.fill_mouth(out, target, groups, source, source_points, strength, dist, share,
                                tint=self._photo_at(result.shape[:2]))


def _shrunk(image: np.ndarray) -> tuple[np.ndarray, float]:
    """``image`` at most ``DETECT_SIZE`` pixels large (area-averaged), and its scale factor."""
    h, w = image.shape[:2]
    factor = min(1.0, DETECT_SIZE / max(h, w))
    if factor >= 1.0:
        return image, 1.0
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


def _posed_like(points: np.ndarray, frame: np.ndarray, stable: np.ndarray) -> np.ndarray:
    """Smoothed landmarks ``points`` moved by the similarity that takes their ``stable``
    points onto the frame's own (unsmoothed) ``frame``: the smoothing's steadiness of the shape
    without its lag behind a moving head (region ``pose`` pastes the photo's mouth where the
    head is in this frame, not a few frames back)."""
    return geometry.transform(geometry.similarity(points[stable], frame[stable]), points)


def _complex(points: np.ndarray) -> np.ndarray:
    return points[..., 0] + 1j * points[..., 1]


def _points(z: np.ndarray) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1)


def _in_eye(
    points: np.ndarray, frame: np.ndarray, lids: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """``points[lids]`` in the eye frame of ``frame``'s corners ``ends`` (complex: 0 and 1 at
    the corners), minus the same for ``frame`` when ``points`` is not ``frame``."""
    a, b = _complex(frame[ends])
    span = b - a if abs(b - a) > 1e-9 else 1.0
    local = (_complex(points[lids]) - a) / span
    if points is frame:
        return local
    return local - (_complex(frame[lids]) - a) / span


def _lid_gaps(points: np.ndarray, groups: geometry.Groups) -> np.ndarray:
    """Each eye's mean distance between its upper and lower lid points, in eye distances."""
    dist = max(geometry.face_axes(points, groups)[0], 1e-6)
    gaps = []
    for side in ("left", "right"):
        upper, lower = groups[f"{side}_eye_upper"][1:-1], groups[f"{side}_eye_lower"][1:-1]
        gaps.append(np.linalg.norm(points[upper] - points[lower], axis=1).mean() / dist)
    return np.asarray(gaps)


def _padded(points: np.ndarray, groups: geometry.Groups, region: str) -> np.ndarray:
    """The points of the eyes' (lips') groups and those points shifted a margin outward along
    the face's axes: the outline of a warp confined to them."""
    names = geometry.LIDS if region == "eyes" else geometry.LIPS
    part = points[np.concatenate([groups[n] for n in names])]
    dist, axes = geometry.face_axes(points, groups)
    shifts = [(0, 0), (0.15, 0), (-0.15, 0), (0, 0.25), (0, -0.25)]
    return np.vstack([part + dist * (axes @ np.asarray(v, dtype=float)) for v in shifts])
