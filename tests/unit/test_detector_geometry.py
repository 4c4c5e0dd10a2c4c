"""The detector's pure parts: CenterFace pre/post-processing, the eye crop geometry and the face tracker."""

from __future__ import annotations

import numpy as np
import pytest

from blinkstack.common.tracking import Tracker
from blinkstack.detector import centerface, geometry

# --- CenterFace pre/post-processing ------------------------------------------------------------------------


def test_letterbox_keeps_the_aspect_ratio_pads_to_32_and_never_upscales():
    box = centerface.letterbox_for(640, 480, 320)
    assert (box.scale, box.width, box.height) == (0.5, 320, 256)
    small = centerface.letterbox_for(100, 80, 320)
    assert (small.scale, small.width, small.height) == (1.0, 128, 96)
    blob, _ = centerface.prepare(np.zeros((480, 640), np.uint8), 320)
    assert blob.shape == (1, 3, 256, 320) and blob.dtype == np.float32


def test_decode_maps_one_synthetic_face_back_to_frame_pixels():
    grid_h, grid_w = 64, 80
    outputs = {
        "heatmap": np.zeros((1, 1, grid_h, grid_w), np.float32),
        "scale": np.zeros((1, 2, grid_h, grid_w), np.float32),
        "offset": np.zeros((1, 2, grid_h, grid_w), np.float32),
        "landmarks": np.zeros((1, 10, grid_h, grid_w), np.float32),
    }
    y, x = 10, 20
    outputs["heatmap"][0, 0, y, x] = 0.9
    outputs["scale"][0, :, y, x] = np.log([40 / 4, 32 / 4])  # height 40, width 32 (model pixels)
    outputs["offset"][0, :, y, x] = (0.25, 0.5)
    outputs["landmarks"][0, :, y, x] = [0.25, 0.25, 0.25, 0.75, 0.5, 0.5, 0.75, 0.25, 0.75, 0.75]  # (y, x) pairs
    (face,) = centerface.decode(outputs, centerface.Letterbox(0.5, 320, 256), threshold=0.5)
    centre = np.array([(x + 0.5 + 0.5) * 4, (y + 0.25 + 0.5) * 4])  # model pixels
    size = np.array([32.0, 40.0])
    top_left = centre - size / 2
    np.testing.assert_allclose(face.box, np.concatenate([top_left, top_left + size]) * 2, atol=1e-4)
    np.testing.assert_allclose(face.landmarks[0], (top_left + size * 0.25) * 2, atol=1e-4)
    np.testing.assert_allclose(face.landmarks[1], (top_left + size * np.array([0.75, 0.25])) * 2, atol=1e-4)
    assert face.score == pytest.approx(0.9)
    assert centerface.decode(outputs, centerface.Letterbox(0.5, 320, 256), threshold=0.95) == []


# --- eye geometry --------------------------------------------------------------------------------------------


def test_left_eye_is_the_subjects_left_and_boxes_are_square_at_the_measured_scale():
    landmarks = np.array([[100, 100], [150, 104], [125, 130], [110, 150], [140, 150]], np.float32)
    eyes = geometry.eye_boxes(landmarks, np.array([80, 60, 170, 180]))
    left_centre, left_box = eyes["left"]
    np.testing.assert_allclose(left_centre, [150, 104])  # on the image's right: the subject's left
    side = geometry.EYE_BOX_SCALE * np.hypot(50, 4)
    np.testing.assert_allclose(left_box, [150 - side / 2, 104 - side / 2, side, side], rtol=1e-6)
    np.testing.assert_allclose(eyes["right"][0], [100, 100])


def test_turned_head_keeps_a_minimum_eye_box_from_the_face_width():
    landmarks = np.array([[100, 100], [110, 100], [105, 120], [100, 140], [110, 140]], np.float32)
    _, box = geometry.eye_boxes(landmarks, np.array([60, 60, 160, 180]))["left"]
    assert box[2] == pytest.approx(geometry.MIN_SIDE_OF_FACE_WIDTH * 100)


# --- tracking ------------------------------------------------------------------------------------------------


def shift(dx: float) -> np.ndarray:
    """A horizontal move of dx pixels for an (x0, y0, x1, y1) box."""
    return np.array([dx, 0.0, dx, 0.0])


def test_spurious_detections_are_named_and_real_faces_pass():
    # Landmarks in model order: right eye (image left), left eye, nose, mouth corners.
    face = np.array([100.0, 80.0, 210.0, 220.0])
    landmarks = np.array([[130.0, 130.0], [180.0, 130.0], [155, 160], [135, 185], [175, 185]])
    assert geometry.implausible(landmarks, face, 320, 240, 32) is None
    assert "tiny" in geometry.implausible(landmarks * 0.2, face * 0.2, 320, 240, 32)
    # The edge face: an eye landmark left of the frame.
    edge = np.array([[-1.0, 15.3], [8.0, 15.3], [3, 20], [0, 25], [6, 25]])
    assert "edge-clipped" in geometry.implausible(edge, np.array([-6.0, 5.0, 28.0, 40.0]), 320, 240, 0)
    squeezed = landmarks.copy()
    squeezed[1, 0] = 135.0  # eyes 5 px apart in a 110 px face
    assert "eye geometry" in geometry.implausible(squeezed, face, 320, 240, 32)
    low = landmarks.copy()
    low[:2, 1] = 200.0  # "eyes" at the chin
    assert "lower face" in geometry.implausible(low, face, 320, 240, 32)


def test_tracks_keep_their_ids_while_faces_move():
    tracker = Tracker()
    a, b = np.array([10.0, 10, 60, 70]), np.array([300.0, 20, 360, 90])
    ids = [tracker.update(np.stack([a + shift(3 * t), b - shift(2 * t)])) for t in range(50)]
    assert all(pair == [1, 2] for pair in ids)
    assert tracker.update(np.stack([b - shift(80), a + shift(150)])) == [2, 1]


def test_fast_motion_matches_by_centre_and_lost_faces_get_new_ids():
    tracker = Tracker(max_missed=3)
    face = np.array([[100.0, 100, 160, 170]])
    assert tracker.update(face) == [1]
    assert tracker.update(face + shift(25)) == [1]  # IoU < 0.3, centre within half a face width
    for _ in range(4):
        assert tracker.update(np.empty((0, 4))) == []
    assert tracker.update(face) == [2]  # gone for more than max_missed frames: a new track, ids never reused
    assert tracker.update(np.vstack([face, face + shift(300)])) == [2, 3]
