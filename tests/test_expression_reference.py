"""The expression layer's reference: the driving frame whose expression matches the photo's."""

from __future__ import annotations

import numpy as np
from test_expression_geometry import sim, synthetic_face
from test_expression_layer import Marks, ScriptedMesh, frame

from fomm.expression.eyes import OPEN_GAP
from fomm.expression.reference import LID_RANGE, expression_features, matching_frame, wanted


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


def _lids(rows: list[tuple[float, float]]) -> np.ndarray:
    """Feature rows (mouth 0.02, width 0.8) with these (left, right) lid gaps."""
    return np.array([[0.02, 0.8, left, right] for left, right in rows])


def test_the_reference_lids_are_the_photos_within_the_drivers_usual_range():
    # a driver whose eyes are usually narrow (0.06), who blinks (0.01) and once stares (0.16)
    frames = _lids([(0.06, 0.06)] * 12 + [(0.08, 0.08)] * 4 + [(0.01, 0.01), (0.16, 0.16)]
                   + [(0.07, 0.07)] * 4)
    wide_photo = np.array([0.02, 0.9, 0.11, 0.10])
    want = wanted(wide_photo, frames)
    assert want[0] == 0.02 and want[1] == 0.8  # the photo's opening, the driver's usual width
    # a wide-eyed photo asks for the driver's wide eyes, not their usual narrow ones ...
    np.testing.assert_allclose(want[2:], np.percentile(frames[:, 2:], LID_RANGE[1], axis=0))
    assert want[2] > 0.075
    # ... never the stare, nor the blink; a photo's closing eyes count as open, as the layer
    # opens them: to OPEN_GAP, or to the driver's usual eyes where those are narrower (here 0.06)
    assert wanted(np.array([0.02, 0.9, 0.5, 0.5]), frames)[2] < 0.16
    blinking = wanted(np.array([0.02, 0.9, 0.01, 0.02]), frames)
    np.testing.assert_allclose(blinking[2:], np.minimum(OPEN_GAP, [0.06, 0.06]))
    # within the range, the photo's own lids
    np.testing.assert_allclose(wanted(np.array([0.02, 0.9, 0.076, 0.077]), frames)[2:],
                               [0.076, 0.077])


def test_a_narrow_eyed_driver_is_not_asked_for_wide_eyes_by_a_blinking_photo():
    # the driver's usual eyes (0.04) are narrower than OPEN_GAP; they open wide now and then
    frames = _lids([(0.04, 0.04)] * 12 + [(0.09, 0.09)] * 4 + [(0.005, 0.005)] * 2)
    assert OPEN_GAP > 0.04
    # a photo as narrow as that is matched with the driver's usual eyes, not their widest ones
    np.testing.assert_allclose(wanted(np.array([0.02, 0.9, 0.025, 0.03]), frames)[2:],
                               [0.04, 0.04])
    # a wide-eyed driver's usual eyes (0.10) are no reason to open a blinking photo past OPEN_GAP
    wide = _lids([(0.10, 0.10)] * 12 + [(0.13, 0.13)] * 4 + [(0.01, 0.01)] * 2)
    np.testing.assert_allclose(wanted(np.array([0.02, 0.9, 0.025, 0.03]), wide)[2:],
                               [OPEN_GAP, OPEN_GAP])
