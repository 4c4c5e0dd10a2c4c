"""One adapter per face model. This package is the only place that names a model: the rest of the detector
picks a front end by kind and gets its adapters from here.

- `landmarks` (the default): CenterFace (`face_detector`) finds faces, on a stream's first frame, when a face is
  lost and every N frames; MediaPipe's attention face mesh (`face_landmarks`) follows each face every frame and
  gives its eyes' corners, lids and irises.
- `centerface`: CenterFace on every frame (or every N frames, optical flow in between); eye centres only, no
  corners, lids or aperture.
"""

from __future__ import annotations

from dataclasses import dataclass

from blinkstack.detector.adapters.centerface import DEFAULT_INPUT_WIDTH, DEFAULT_SCORE_THRESHOLD, CenterFace
from blinkstack.detector.adapters.face_mesh import DEFAULT_MIN_PRESENCE, FaceMesh
from blinkstack.detector.faces import FaceDetectorAdapter, FaceLandmarkAdapter

FRONT_ENDS = ("landmarks", "centerface")
DEFAULT_FRONT_END = "landmarks"


@dataclass(frozen=True)
class AdapterSettings:
    input_width: int = DEFAULT_INPUT_WIDTH
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    min_presence: float = DEFAULT_MIN_PRESENCE


def adapters_for(front_end: str, settings: AdapterSettings) -> tuple[FaceDetectorAdapter, FaceLandmarkAdapter | None]:
    """The face detector adapter and, for the landmark front end, the landmark adapter."""
    if front_end not in FRONT_ENDS:
        raise ValueError(f"unknown front end {front_end!r} (choose from {', '.join(FRONT_ENDS)})")
    detector = CenterFace(settings.input_width, settings.score_threshold)
    return detector, FaceMesh(settings.min_presence) if front_end == "landmarks" else None
