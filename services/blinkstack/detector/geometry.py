"""Which detections are faces whose eyes can be judged: the sanity checks every front end applies, whatever
the model (the model-specific eye crop geometry lives in each adapter)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blinkstack.common import images
from blinkstack.detector.faces import Face
from blinkstack.v1 import detector_pb2, types_pb2

# A frontal face's inter-ocular distance is ~0.45 of its box width; a turned head shortens it. Outside this
# range the "eyes" are not a face's eyes (a fragment at the frame edge, a pattern in the background).
IOD_OF_FACE_WIDTH = (0.18, 0.8)
DEFAULT_MIN_FACE_PX = 32.0


def implausible(face: Face, frame_width: int, frame_height: int, min_face_px: float) -> str | None:
    """Why a detection is no face whose eyes can be judged, or None when it is one.

    - tiny: narrower than `min_face_px` (at 32 px an eye crop is ~9 px: nothing left of an eyelid to judge);
    - edge-clipped: an eye centre outside the frame (the eye is not in the picture);
    - implausible eye geometry: eye distance outside `IOD_OF_FACE_WIDTH` of the face width, or an eye below
      the face box's middle.
    """
    x0, y0, x1, y1 = (float(v) for v in face.box)
    width = x1 - x0
    if width < min_face_px:
        return f"tiny ({width:.0f} px wide < {min_face_px:g})"
    eyes = np.array([face.right_eye.centre, face.left_eye.centre], dtype=float)
    if not ((eyes[:, 0] >= 0) & (eyes[:, 0] < frame_width) & (eyes[:, 1] >= 0) & (eyes[:, 1] < frame_height)).all():
        return "edge-clipped (an eye lies outside the frame)"
    iod = float(np.hypot(*(eyes[0] - eyes[1])))
    low, high = IOD_OF_FACE_WIDTH
    if not low * width <= iod <= high * width:
        return f"implausible eye geometry (eye distance {iod / width:.2f} of the face width)"
    if (eyes[:, 1] > y0 + 0.6 * (y1 - y0)).any():
        return "implausible eye geometry (an eye in the lower face)"
    return None


@dataclass(frozen=True)
class Judgeable:
    """Which eyes can be judged: decided here, once, and carried downstream as EyeDetection.unjudgeable (the
    aggregator reports it as the eye's UNKNOWN reason and never decides again)."""

    min_eye_px: float = 16.0
    min_face_score: float = 0.6

    def mark(self, faces: list[detector_pb2.FaceDetection], width: int, height: int) -> None:
        """Each eye's reason it cannot be judged: a doubtful face, an eye mostly outside the frame, a tiny eye."""
        for face in faces:
            for eye in (face.left_eye, face.right_eye):
                if face.score < self.min_face_score:
                    eye.unjudgeable = types_pb2.UNKNOWN_REASON_LOW_CONFIDENCE_DETECTION
                elif images.mostly_outside(eye.box, width, height):
                    eye.unjudgeable = types_pb2.UNKNOWN_REASON_EYE_OUTSIDE_FRAME
                elif eye.box.width < self.min_eye_px:
                    eye.unjudgeable = types_pb2.UNKNOWN_REASON_EYE_TOO_SMALL


JUDGEABLE = Judgeable()  # the defaults
