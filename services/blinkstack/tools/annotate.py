"""Drawing detections (and, when known, eye states) on frames: `blinkstack detect --annotate`, `watch`."""

from __future__ import annotations

import cv2
import numpy as np

from blinkstack.v1 import types_pb2

FACE_COLOUR = (255, 160, 0)
OPEN_COLOUR, CLOSED_COLOUR, UNKNOWN_COLOUR = (60, 200, 60), (40, 40, 230), (200, 200, 200)


def _rect(image: np.ndarray, box: types_pb2.Box, colour: tuple[int, int, int], thickness: int = 2) -> None:
    if box.angle_deg:  # a turned eye box: its four corners
        centre = (box.x + box.width / 2, box.y + box.height / 2)
        corners = cv2.boxPoints((centre, (box.width, box.height), box.angle_deg))
        cv2.polylines(image, [np.round(corners).astype(np.int32)], True, colour, thickness)
        return
    top_left = (round(box.x), round(box.y))
    bottom_right = (round(box.x + box.width), round(box.y + box.height))
    cv2.rectangle(image, top_left, bottom_right, colour, thickness)


def _lids(image: np.ndarray, landmarks: types_pb2.EyeLandmarks, colour: tuple[int, int, int]) -> None:
    """The eye's outline: corners joined along the upper and the lower lid."""
    for lid in (landmarks.upper_lid, landmarks.lower_lid):
        points = [landmarks.outer_corner, *lid, landmarks.inner_corner]
        cv2.polylines(image, [np.array([[round(p.x), round(p.y)] for p in points], np.int32)], False, colour, 1)


def draw_faces(frame: np.ndarray, faces: list, caption: str = "") -> np.ndarray:
    """A BGR copy of `frame` with face boxes, track ids, eye boxes (turned with the head), lids and landmarks.

    `faces` are the detector's FaceDetection or the aggregator's TrackedFace messages; for the latter the eye
    boxes are green when open, red when closed, grey when unknown, with prob_open written under them.
    """
    image = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    for face in faces:
        _rect(image, face.box, FACE_COLOUR)
        label = f"#{face.track_id} {face.score:.2f}"
        cv2.putText(image, label, (round(face.box.x), max(12, round(face.box.y) - 4)), 0, 0.45, FACE_COLOUR, 1)
        for eye in (face.left_eye, face.right_eye):
            state = getattr(eye, "state", types_pb2.EYE_STATE_UNSPECIFIED)
            classified = "prob_open" in eye.DESCRIPTOR.fields_by_name and eye.HasField("prob_open")
            prob = eye.prob_open if classified else -1.0
            colour = {types_pb2.EYE_STATE_OPEN: OPEN_COLOUR, types_pb2.EYE_STATE_CLOSED: CLOSED_COLOUR}.get(
                state, UNKNOWN_COLOUR
            )
            _rect(image, eye.box, colour, 1)
            if eye.HasField("landmarks"):
                _lids(image, eye.landmarks, colour)
            if hasattr(eye, "center"):
                cv2.circle(image, (round(eye.center.x), round(eye.center.y)), 2, colour, -1)
            tag = ("L" if eye.eye == types_pb2.EYE_LEFT else "R") + (f" {prob:.2f}" if prob >= 0 else "")
            cv2.putText(image, tag, (round(eye.box.x), round(eye.box.y + eye.box.height) + 12), 0, 0.4, colour, 1)
        for point in getattr(face, "landmarks", []):
            cv2.circle(image, (round(point.x), round(point.y)), 2, FACE_COLOUR, -1)
    if caption:
        cv2.putText(image, caption, (8, 22), 0, 0.6, (255, 255, 255), 2)
    return image
