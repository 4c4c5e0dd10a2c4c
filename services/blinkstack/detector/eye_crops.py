"""Eye crops laid out from an eye's own corners, for any landmark model that gives them.

- Centre: the midpoint of the eye's two corners.
- Side: `SIDE_PER_EYE_WIDTH` x the eye's width (corner to corner).
- Turn: the head's roll, from the line through the two eyes' corner midpoints (the subject's right eye to the
  left one), so the corners lie level in the crop. Each eye keeps its own slight corner tilt (the outer corner
  a little higher), which the training crops also show; a per-eye turn would remove it.

The side is measured (`blinkstack-train measure-eye-geometry --landmarks`): on the ZJU dev clips (2,830 open
eyes), the boxes the eye-state model was trained with (0.62 x the inter-ocular distance around the face detector's
eye point) have a side of 1.49 eye widths (median; 10th-90th percentile 1.36-1.60), and their centres lie 0.02 eye
widths along and 0.005 across the eye line from the corners' midpoint (10th-90th percentile within 0.19 either
way): the same place, steadier.
"""

from __future__ import annotations

import math

import numpy as np

from blinkstack.detector.faces import EyeCrop, EyeOutline

SIDE_PER_EYE_WIDTH = 1.49


def head_roll(right_eye_centre: np.ndarray, left_eye_centre: np.ndarray) -> float:
    """Radians from the image's x axis to the line from the subject's right eye to the left one."""
    dx, dy = left_eye_centre - right_eye_centre
    return math.atan2(dy, dx)


def corner_midpoint(outline: EyeOutline) -> np.ndarray:
    return (outline.outer_corner + outline.inner_corner) / 2


def crop_from_outline(outline: EyeOutline, roll: float) -> EyeCrop:
    return EyeCrop(corner_midpoint(outline), max(SIDE_PER_EYE_WIDTH * outline.width, 1.0), math.degrees(roll))
