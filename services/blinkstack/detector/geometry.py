"""The eye crop geometry: which landmark is which eye, and the box the eye-state model expects around it.

- "Left" is the subject's own left eye. CenterFace lists the eyes in image order (landmark 0 is the eye on the
  image's left, i.e. the subject's right eye in an un-mirrored camera frame), so the subject's left eye is
  landmark 1. A mirrored (selfie-preview) frame swaps them; blinkstack expects frames as the camera sees them.
- Each eye box is a square centred on the eye landmark with side `EYE_BOX_SCALE` x the inter-ocular distance
  (IOD). 0.62 is measured, not guessed: matching the 24x24 CEW eye patches (which the model is trained and
  evaluated on) back into their source faces gives a median side of 0.62 IOD (10th-90th percentile 0.54-0.70)
  and centres within 0.04 IOD of the CenterFace eye landmarks (`blinkstack-train measure-eye-geometry`).
- A head turned sideways shortens the IOD in the image while the eyes stay as tall; the side therefore never
  drops below `MIN_SIDE_OF_FACE_WIDTH` of the face box width (frontal faces have IOD ~0.45 face widths, so the
  floor only acts beyond about 40 degrees of yaw).
"""

from __future__ import annotations

import numpy as np

RIGHT_EYE_LANDMARK, LEFT_EYE_LANDMARK = 0, 1
EYE_BOX_SCALE = 0.62
MIN_SIDE_OF_FACE_WIDTH = 0.35 * EYE_BOX_SCALE


def eye_box_side(left_eye: np.ndarray, right_eye: np.ndarray, face_width: float) -> float:
    iod = float(np.hypot(*(left_eye - right_eye)))
    return max(EYE_BOX_SCALE * iod, MIN_SIDE_OF_FACE_WIDTH * face_width, 1.0)


def eye_boxes(landmarks: np.ndarray, face_box: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"left"/"right": (centre (x, y), box (x, y, width, height))} for one face's landmarks [5, 2]."""
    left, right = landmarks[LEFT_EYE_LANDMARK], landmarks[RIGHT_EYE_LANDMARK]
    side = eye_box_side(left, right, float(face_box[2] - face_box[0]))
    return {
        name: (centre, np.array([centre[0] - side / 2, centre[1] - side / 2, side, side]))
        for name, centre in (("left", left), ("right", right))
    }


# A frontal face's inter-ocular distance is ~0.45 of its box width; a turned head shortens it. Outside this
# range the "eyes" are not a face's eyes (a fragment at the frame edge, a pattern in the background).
IOD_OF_FACE_WIDTH = (0.18, 0.8)
DEFAULT_MIN_FACE_PX = 32.0


def implausible(
    landmarks: np.ndarray, face_box: np.ndarray, frame_width: int, frame_height: int, min_face_px: float
) -> str | None:
    """Why a detection is no face whose eyes can be judged, or None when it is one.

    - tiny: narrower than `min_face_px` (at 32 px an eye box is ~9 px: nothing left of an eyelid to judge);
    - edge-clipped: an eye landmark outside the frame (the eye is not in the picture);
    - implausible eye geometry: eye distance outside `IOD_OF_FACE_WIDTH` of the face width, or an eye below
      the face box's middle.
    """
    x0, y0, x1, y1 = (float(v) for v in face_box)
    width = x1 - x0
    if width < min_face_px:
        return f"tiny ({width:.0f} px wide < {min_face_px:g})"
    eyes = landmarks[[RIGHT_EYE_LANDMARK, LEFT_EYE_LANDMARK]]
    if not ((eyes[:, 0] >= 0) & (eyes[:, 0] < frame_width) & (eyes[:, 1] >= 0) & (eyes[:, 1] < frame_height)).all():
        return "edge-clipped (an eye lies outside the frame)"
    iod = float(np.hypot(*(eyes[0] - eyes[1])))
    low, high = IOD_OF_FACE_WIDTH
    if not low * width <= iod <= high * width:
        return f"implausible eye geometry (eye distance {iod / width:.2f} of the face width)"
    if (eyes[:, 1] > y0 + 0.6 * (y1 - y0)).any():
        return "implausible eye geometry (an eye in the lower face)"
    return None
