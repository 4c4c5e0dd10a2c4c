"""The detector's pure parts: the model adapters' pre/post-processing, the eye crop geometry, the plausibility
checks and the face tracker."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blinkstack.common.images import box_message, crop
from blinkstack.common.tracking import Tracker
from blinkstack.detector import eye_crops, geometry
from blinkstack.detector.adapters import centerface
from blinkstack.detector.adapters.face_mesh import FaceMesh, region_around, warp_for
from blinkstack.detector.faces import Eye, EyeCrop, EyeOutline, Face, Region
from blinkstack.v1 import detector_pb2, types_pb2

# --- CenterFace pre/post-processing ------------------------------------------------------------------------


def test_letterbox_keeps_the_aspect_ratio_pads_to_32_and_never_upscales():
    box = centerface.letterbox_for(640, 480, 320)
    with pytest.raises(ValueError, match="multiple of 32"):
        centerface.CenterFace(input_width=33)
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
    (face,) = centerface.CenterFace(score_threshold=0.5).decode(outputs, centerface.Letterbox(0.5, 320, 256))
    centre = np.array([(x + 0.5 + 0.5) * 4, (y + 0.25 + 0.5) * 4])  # model pixels
    size = np.array([32.0, 40.0])
    top_left = centre - size / 2
    np.testing.assert_allclose(face.box, np.concatenate([top_left, top_left + size]) * 2, atol=1e-4)
    np.testing.assert_allclose(face.right_eye.centre, (top_left + size * 0.25) * 2, atol=1e-4)
    np.testing.assert_allclose(face.left_eye.centre, (top_left + size * np.array([0.75, 0.25])) * 2, atol=1e-4)
    assert face.score == pytest.approx(0.9) and face.left_eye.outline is None
    assert set(face.points) == {"nose", "mouth_right", "mouth_left"}
    assert centerface.decode(outputs, centerface.Letterbox(0.5, 320, 256), threshold=0.95) == []


# --- eye geometry --------------------------------------------------------------------------------------------


def test_centerface_left_eye_is_the_subjects_left_and_boxes_are_square_at_the_measured_scale():
    landmarks = np.array([[100, 100], [150, 104], [125, 130], [110, 150], [140, 150]], np.float32)
    face = centerface.face_from_landmarks(landmarks, np.array([80, 60, 170, 180]), 0.9)
    np.testing.assert_allclose(face.left_eye.centre, [150, 104])  # on the image's right: the subject's left
    side = centerface.EYE_BOX_SCALE * np.hypot(50, 4)
    np.testing.assert_allclose(face.left_eye.crop.box, [150 - side / 2, 104 - side / 2, side, side], rtol=1e-6)
    assert face.left_eye.crop.angle_deg == 0
    np.testing.assert_allclose(face.right_eye.centre, [100, 100])


def test_centerface_turned_head_keeps_a_minimum_eye_box_from_the_face_width():
    landmarks = np.array([[100, 100], [110, 100], [105, 120], [100, 140], [110, 140]], np.float32)
    face = centerface.face_from_landmarks(landmarks, np.array([60, 60, 160, 180]), 0.9)
    assert face.left_eye.crop.side == pytest.approx(centerface.MIN_SIDE_OF_FACE_WIDTH * 100)


def outline(outer, inner, open_by: float) -> EyeOutline:
    """An eye from `outer` to `inner` corner with lids `open_by` x its width apart at the middle."""
    outer, inner = np.array(outer, float), np.array(inner, float)
    t = np.linspace(0, 1, 9)[1:-1, None]
    along = outer + t * (inner - outer)
    normal = np.array([-(inner - outer)[1], (inner - outer)[0]]) / np.linalg.norm(inner - outer)
    bulge = np.sin(np.pi * t) * open_by * np.linalg.norm(inner - outer) / 2
    return EyeOutline(outer, inner, along - bulge * normal, along + bulge * normal)


def test_aperture_is_the_lid_distance_over_the_eye_width_whatever_the_size_and_roll():
    wide = outline([100, 100], [140, 100], 0.3)
    assert wide.aperture == pytest.approx(0.3 * np.mean(np.sin(np.pi * np.array([3, 4, 5]) / 8)), rel=1e-6)
    tilted = outline([0, 0], [20 * math.cos(0.4), 20 * math.sin(0.4)], 0.3)
    assert tilted.aperture == pytest.approx(wide.aperture, rel=1e-6)
    assert outline([100, 100], [140, 100], 0.02).aperture < 0.1 * wide.aperture


def test_landmark_eye_crops_centre_on_the_corners_scale_with_the_eye_and_undo_the_roll():
    roll = math.radians(12)
    direction = np.array([math.cos(roll), math.sin(roll)])
    right = outline([100, 100], np.array([100, 100]) + 30 * direction, 0.3)
    crop_ = eye_crops.crop_from_outline(right, roll)
    np.testing.assert_allclose(crop_.centre, np.array([100, 100]) + 15 * direction)
    assert crop_.side == pytest.approx(eye_crops.SIDE_PER_EYE_WIDTH * 30)
    assert crop_.angle_deg == pytest.approx(12)
    assert eye_crops.head_roll(np.array([0.0, 0.0]), np.array([10.0, -10.0])) == pytest.approx(-math.pi / 4)


def test_a_turned_box_is_cut_along_its_own_axes():
    frame = np.zeros((200, 200), np.uint8)
    frame[95:106, 60:141] = 255  # a bar, then turned by 30 degrees about (100, 100)
    turned = cv2_rotate(frame, 30)
    upright = crop(turned, box_message(70, 70, 60, 60, 30), "eye")
    assert upright.shape == (60, 60)
    rows = upright.mean(axis=1)
    assert rows[25:35].min() > 150 and rows[:15].max() < 40 and rows[45:].max() < 40  # the bar is level again
    axis_aligned = crop(turned, box_message(70, 70, 60, 60), "eye")
    assert axis_aligned.mean(axis=1)[25:35].min() < 150  # not level without the turn
    flat = crop(frame, box_message(70, 70, 60, 60, 1e-3), "eye")
    np.testing.assert_allclose(flat.astype(float), crop(frame, box_message(70, 70, 60, 60), "eye"), atol=2)


def cv2_rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    matrix = cv2.getRotationMatrix2D((100, 100), -degrees, 1.0)  # OpenCV's positive angle turns anticlockwise
    return cv2.warpAffine(image, matrix, image.shape[::-1])


def test_face_mesh_regions_warp_the_face_upright_and_map_points_back():
    region = Region(np.array([200.0, 150.0]), 96.0, math.radians(20))
    warp = warp_for(region)
    centre = warp @ np.array([96, 96, 1.0])
    np.testing.assert_allclose(centre, [200, 150])
    right = warp @ np.array([192, 96, 1.0])  # the input's right edge: half a side along the region's x axis
    np.testing.assert_allclose(right - centre, 48 * np.array([math.cos(region.angle), math.sin(region.angle)]))
    points = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 5.0]])
    around = region_around(points, 0.0, 2.0)
    np.testing.assert_allclose(around.centre, [5, 2.5])
    assert around.side == pytest.approx(20.0)


def test_face_mesh_region_for_a_detection_follows_the_eye_line():
    eye = Eye(np.array([0.0, 0.0]), EyeCrop(np.array([0.0, 0.0]), 1.0))
    face = Face(np.array([100.0, 100, 200, 220]), 0.9, eye, eye, {}, np.zeros((5, 2)))
    level = FaceMesh().region_for(face)
    np.testing.assert_allclose(level.centre, [150, 160])
    assert level.side == pytest.approx(1.5 * 120) and level.angle == 0
    with pytest.raises(ValueError, match="min presence"):
        FaceMesh(min_presence=1.5)


# --- tracking ------------------------------------------------------------------------------------------------


def shift(dx: float) -> np.ndarray:
    """A horizontal move of dx pixels for an (x0, y0, x1, y1) box."""
    return np.array([dx, 0.0, dx, 0.0])


def test_spurious_detections_are_named_and_real_faces_pass():
    # Landmarks in CenterFace's order: right eye (image left), left eye, nose, mouth corners.
    box = np.array([100.0, 80.0, 210.0, 220.0])
    landmarks = np.array([[130.0, 130.0], [180.0, 130.0], [155, 160], [135, 185], [175, 185]])

    def face(points: np.ndarray, face_box: np.ndarray) -> Face:
        return centerface.face_from_landmarks(points, face_box, 0.9)

    assert geometry.implausible(face(landmarks, box), 320, 240, 32) is None
    assert "tiny" in geometry.implausible(face(landmarks * 0.2, box * 0.2), 320, 240, 32)
    # The edge face: an eye landmark left of the frame.
    edge = np.array([[-1.0, 15.3], [8.0, 15.3], [3, 20], [0, 25], [6, 25]])
    assert "edge-clipped" in geometry.implausible(face(edge, np.array([-6.0, 5.0, 28.0, 40.0])), 320, 240, 0)
    squeezed = landmarks.copy()
    squeezed[1, 0] = 135.0  # eyes 5 px apart in a 110 px face
    assert "eye geometry" in geometry.implausible(face(squeezed, box), 320, 240, 32)
    low = landmarks.copy()
    low[:2, 1] = 200.0  # "eyes" at the chin
    assert "lower face" in geometry.implausible(face(low, box), 320, 240, 32)


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


def _faces(*eyes: tuple[float, float, float], score: float = 0.9) -> list[detector_pb2.FaceDetection]:
    """Faces from (centre x, centre y, side) per eye, left then right."""

    def eye(x: float, y: float, side: float) -> detector_pb2.EyeDetection:
        return detector_pb2.EyeDetection(box=types_pb2.Box(x=x - side / 2, y=y - side / 2, width=side, height=side))

    return [
        detector_pb2.FaceDetection(score=score, left_eye=eye(*left), right_eye=eye(*right))
        for left, right in zip(eyes[::2], eyes[1::2], strict=True)
    ]


def test_which_eyes_can_be_judged_is_decided_once_with_the_reason():
    judge = geometry.Judgeable(min_eye_px=16, min_face_score=0.6)
    # The box an issue once reported, centred 1 px off a 320x240 frame's left edge; a tiny eye; a fine one.
    faces = _faces((8.0, 15.3, 20), (-1.04, 15.3, 20), (200, 100, 10), (150, 100, 30))
    judge.mark(faces, 320, 240)
    reasons = [(f.left_eye.unjudgeable, f.right_eye.unjudgeable) for f in faces]
    assert reasons == [
        (0, types_pb2.UNKNOWN_REASON_EYE_OUTSIDE_FRAME),
        (types_pb2.UNKNOWN_REASON_EYE_TOO_SMALL, 0),
    ]
    doubtful = _faces((200, 100, 30), (150, 100, 30), score=0.5)
    judge.mark(doubtful, 320, 240)
    assert (
        doubtful[0].left_eye.unjudgeable
        == doubtful[0].right_eye.unjudgeable
        == (types_pb2.UNKNOWN_REASON_LOW_CONFIDENCE_DETECTION)
    )
