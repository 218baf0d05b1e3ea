"""The driver's mouth opening on the result: the interior filled where the frame only seems open,
and an expression reference whose mouth is no more open than the photo's."""

from __future__ import annotations

import cv2
import numpy as np
from test_expression_geometry import sim, synthetic_face
from test_expression_layer import Marks, ScriptedMesh, frame

from fomm.expression import ExpressionLayer, ExpressionOptions
from fomm.expression.mouth import inner_contour
from fomm.expression.reference import matching_frame


def _opened(points: np.ndarray, groups: dict, pixels: float) -> np.ndarray:
    out = points.copy()
    for name in ("lips_inner_lower", "lips_outer_lower"):
        out[groups[name][1:-1], 1] += pixels
    return out


def _inside(points: np.ndarray, groups: dict, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(inner_contour(points, groups)).astype(np.int32)], 1)
    return cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0


def test_a_result_whose_lips_only_look_apart_gets_the_drivers_interior():
    # the networks part the photo's closed lips as far as the driver's (the landmarks say open)
    # but draw no interior: the driver's dark mouth is filled in all the same
    mesh = ScriptedMesh()
    pts, groups = synthetic_face(eye_distance=60.0)
    photo = mesh.add(frame(0), pts, groups)
    reference = mesh.add(frame(1), pts, groups)
    opened = _opened(pts, groups, 9.0)
    inside = _inside(opened, groups, photo.shape)
    driving = frame(2)
    driving[inside] = 0
    driving = mesh.add(driving, opened, groups)
    result = mesh.add(frame(3), opened, groups)  # parted lips, the photo's noise between them
    layer = ExpressionLayer(photo, ExpressionOptions(region="all"), mesh=mesh)
    assert layer.set_reference(reference)
    out = layer.apply(result, driving)
    assert result[inside].mean() > 100
    assert out[inside].mean() < 40  # the driver's dark interior


def test_a_photos_own_open_mouth_is_kept():
    # the photo shows its interior: as open as the target, nothing is filled over it
    mesh = ScriptedMesh()
    pts, groups = synthetic_face(eye_distance=60.0)
    opened = _opened(pts, groups, 9.0)
    photo = mesh.add(frame(0), opened, groups)
    reference = mesh.add(frame(1), pts, groups)
    driving = mesh.add(frame(2), pts, groups)  # the driver as in its reference
    layer = ExpressionLayer(photo, ExpressionOptions(region="expression"), mesh=mesh)
    assert layer.set_reference(reference)
    np.testing.assert_array_equal(layer.apply(photo, driving), photo)


def test_the_reference_mouth_is_not_more_open_than_the_photos():
    # a frame in the photo's very pose but with the mouth open beats a closed one whose head is
    # a little off no longer: every smaller opening of the driver would shut the photo's mouth
    mesh = ScriptedMesh()
    photo_points, groups = synthetic_face(mouth_gap=0.02)
    keys = np.concatenate([groups["stable"], groups["nose"]])
    closed_off = synthetic_face(mouth_gap=0.02)[0]
    closed_off[keys, 0] += np.linspace(-3.0, 6.0, len(keys))  # slightly out of plane
    open_in_pose = synthetic_face(mouth_gap=0.06)[0]
    frames = [mesh.add(frame(30), sim(open_in_pose, 1.1, 0.1, (4.0, 2.0)), groups),
              mesh.add(frame(31), closed_off, groups)]
    assert matching_frame(Marks(photo_points, groups), frames, mesh, step=1)[0] == 1
    # a photo as open as that frame is still matched with it
    open_photo = Marks(open_in_pose, groups)
    assert matching_frame(open_photo, frames, mesh, step=1)[0] == 0
