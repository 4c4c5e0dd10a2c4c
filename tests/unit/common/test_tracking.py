"""Face tracking (common/tracking.py): stable ids by overlap or a close centre, new ids for new faces, ended
tracks never reused, and a state that survives a restart."""

from __future__ import annotations

import numpy as np

from blinkstack.common.tracking import Tracker, iou_matrix


def box(x: float, y: float, side: float = 100.0) -> list[float]:
    return [x, y, x + side, y + side]


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    a = np.array([box(0, 0)])
    b = np.array([box(0, 0), box(500, 500), box(50, 0)])
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 0.0, 1 / 3], atol=1e-9)


def test_faces_keep_their_ids_as_they_move_and_a_new_face_gets_the_next_id():
    tracker = Tracker()
    assert tracker.update(np.array([box(0, 0), box(300, 0)])) == [1, 2]
    assert tracker.update(np.array([box(310, 5), box(10, 5)])) == [2, 1]  # order of detection does not matter
    assert tracker.update(np.array([box(40, 5), box(310, 5), box(600, 0)])) == [1, 2, 3]  # 30 px: a fast move


def test_a_face_lost_longer_than_max_missed_comes_back_with_a_new_id():
    tracker = Tracker(max_missed=2)
    assert tracker.update(np.array([box(0, 0)])) == [1]
    for _ in range(3):
        tracker.update(np.empty((0, 4)))
    assert tracker.track_ids == set()
    assert tracker.update(np.array([box(0, 0)])) == [2]  # ids are never reused within a stream


def test_the_state_round_trips_through_json():
    tracker = Tracker()
    tracker.update(np.array([box(0, 0), box(300, 0)]))
    restored = Tracker()
    restored.restore(tracker.to_json())
    assert restored.update(np.array([box(305, 0)])) == [2]
    assert restored.next_id == 3
