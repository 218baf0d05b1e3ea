"""The expression layer's reference: the driving frame whose expression matches the photo's."""

from __future__ import annotations

import numpy as np
from test_expression_geometry import sim, synthetic_face
from test_expression_layer import Marks, ScriptedMesh, frame

from fomm.expression.reference import expression_features, matching_frame


def test_features_measure_the_mouth_opening_whatever_the_head_pose():
    closed, groups = synthetic_face(mouth_gap=0.02)
    opened, _ = synthetic_face(mouth_gap=0.3)
    a = expression_features(closed, groups)
    b = expression_features(sim(opened, 1.7, 0.4, (30.0, -12.0)), groups)
    assert b[0] - a[0] > 0.2  # the opening, in eye distances
    np.testing.assert_allclose(a[1:], b[1:], atol=1e-6)  # width and lids unchanged
    np.testing.assert_allclose(expression_features(sim(closed, 0.6, -0.3, (5.0, 9.0)), groups),
                               a, atol=1e-9)


def test_a_neutral_photo_is_matched_with_the_drivers_most_neutral_frame():
    mesh = ScriptedMesh()
    photo_points, groups = synthetic_face(mouth_gap=0.02)
    gaps = [0.4, 0.3, 0.25, 0.03, 0.2, 0.35, 0.05]  # the clip starts on a wide-open mouth
    frames = [mesh.add(frame(10 + i), sim(synthetic_face(mouth_gap=g)[0], 1.2, 0.2 * i,
                                            (3.0 * i, 0.0)), groups)
              for i, g in enumerate(gaps)]
    index, chosen = matching_frame(Marks(photo_points, groups), frames, mesh, step=1)
    assert index == 3 and chosen is frames[3]
    # an open-mouthed photo is matched with an open-mouthed frame
    open_photo = Marks(synthetic_face(mouth_gap=0.31)[0], groups)
    assert matching_frame(open_photo, frames, mesh, step=1)[0] == 1
    # only every step-th frame of the first `limit` is looked at; faceless frames never chosen
    assert matching_frame(Marks(photo_points, groups), frames, mesh, step=2)[0] == 6
    assert matching_frame(Marks(photo_points, groups), frames, mesh, limit=3, step=1)[0] == 2
    assert matching_frame(Marks(photo_points, groups), [frame(99)], mesh) is None


def test_a_frame_in_another_head_pose_is_passed_over():
    mesh = ScriptedMesh()
    photo_points, groups = synthetic_face(mouth_gap=0.02)
    keys = np.concatenate([groups["stable"], groups["nose"]])
    turned = synthetic_face(mouth_gap=0.02)[0]
    turned[keys, 0] += np.linspace(-6.0, 12.0, len(keys))  # out of plane: no similarity fits
    neutral_elsewhere = synthetic_face(mouth_gap=0.06)[0]
    frames = [mesh.add(frame(20), turned, groups), mesh.add(frame(21), neutral_elsewhere, groups)]
    assert matching_frame(Marks(photo_points, groups), frames, mesh, step=1)[0] == 1
