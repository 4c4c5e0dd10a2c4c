"""The detector's contract with its face models: what any model adapter returns, whatever the model.

A face model adapter (one per model, in `adapters/`) owns everything model-specific: pre- and post-processing,
landmark order, and how an eye's crop box is laid out from the model's points. The rest of the detector (the
front ends, the service) sees only `Face`: a box, a score, named points, and per eye its centre, the crop box
the eye-state model looks at and, where the model has them, the corners, lids and iris (`EyeOutline`).

"Left" and "right" are the subject's own eyes (in an unmirrored camera frame the subject's left eye is on the
image's right side).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Named points every adapter provides (the service returns them in this order as FaceDetection.landmarks).
FACE_POINTS = ("nose", "mouth_right", "mouth_left")


@dataclass(frozen=True)
class EyeCrop:
    """Where the eye-state model looks: a square of side `side` centred on `centre`, turned by `angle_deg`."""

    centre: np.ndarray  # (x, y)
    side: float
    angle_deg: float = 0.0

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x, y, width, height) of the unturned square."""
        half = self.side / 2
        return float(self.centre[0] - half), float(self.centre[1] - half), float(self.side), float(self.side)


@dataclass(frozen=True)
class EyeOutline:
    """An eye's corners and lids from a landmark model; lid points run from the outer to the inner corner."""

    outer_corner: np.ndarray
    inner_corner: np.ndarray
    upper_lid: np.ndarray  # [k, 2]
    lower_lid: np.ndarray  # [k, 2], the same k: point i of each lid faces point i of the other
    iris_centre: np.ndarray | None = None

    @property
    def width(self) -> float:
        return float(np.hypot(*(self.outer_corner - self.inner_corner)))

    @property
    def aperture(self) -> float:
        """Mean distance between the lids over the middle three point pairs, over the eye's width."""
        middle = len(self.upper_lid) // 2
        pairs = slice(max(middle - 1, 0), middle + 2)
        gaps = np.hypot(*(self.upper_lid[pairs] - self.lower_lid[pairs]).T)
        return float(gaps.mean() / max(self.width, 1e-6))


@dataclass(frozen=True)
class Eye:
    centre: np.ndarray  # (x, y)
    crop: EyeCrop
    outline: EyeOutline | None = None  # None: the model gives no corners or lids


@dataclass(frozen=True)
class Region:
    """A face's square region for a landmark model: centre, side, and the roll (radians) that makes it upright."""

    centre: np.ndarray
    side: float
    angle: float


@dataclass(frozen=True)
class Face:
    box: np.ndarray  # (x0, y0, x1, y1)
    score: float
    left_eye: Eye
    right_eye: Eye
    points: dict[str, np.ndarray]  # at least FACE_POINTS
    landmarks: np.ndarray  # [n, 2]: all the model's points in its own order (optical flow moves these)
    region: Region | None = None  # landmark models: where to look for this face in the next frame


class FaceDetectorAdapter(Protocol):
    """A whole-frame face detector: frame in, faces out (best score first)."""

    def prepare(self, frame: np.ndarray) -> tuple[dict[str, np.ndarray], object]:
        """The model's inputs by name, and what `decode` needs to map outputs back to the frame."""
        ...

    def decode(self, outputs: dict[str, np.ndarray], context: object) -> list[Face]: ...

    def from_landmarks(self, landmarks: np.ndarray, box: np.ndarray, score: float) -> Face:
        """The face for moved landmarks (optical flow between detections)."""
        ...


class FaceLandmarkAdapter(Protocol):
    """A landmark model on face regions: regions in, one face per region (or None: no face there)."""

    def region_for(self, face: Face) -> Region:
        """Where to look for a face that another model found."""
        ...

    def prepare(self, frame: np.ndarray, regions: list[Region]) -> tuple[dict[str, np.ndarray], object]: ...

    def decode(self, outputs: dict[str, np.ndarray], context: object) -> list[Face | None]:
        """One entry per region: the face (its score is the model's presence), or None below `min_presence`."""
        ...
