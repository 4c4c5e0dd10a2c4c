"""Frame -> faces with both eyes: prepare, run the backend, decode, and lay the eye boxes out.

Shared by the gRPC service, the `blinkstack detect` command, the benchmark and the tests, so every one of them
sees exactly the same detections.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from blinkstack.detector import centerface, geometry
from blinkstack.detector.backend import FaceDetectorBackend

DEFAULT_INPUT_WIDTH = 320
DEFAULT_SCORE_THRESHOLD = 0.3


@dataclass(frozen=True)
class Eye:
    centre: np.ndarray  # (x, y)
    box: np.ndarray  # (x, y, width, height), square, may extend past the frame edge


@dataclass(frozen=True)
class Face:
    box: np.ndarray  # (x0, y0, x1, y1)
    score: float
    left_eye: Eye  # the subject's left
    right_eye: Eye
    landmarks: np.ndarray  # [5, 2]: right eye, left eye, nose, mouth corners (model order)


@dataclass
class StageTimes:
    """Seconds spent per stage of one frame (the benchmark's per-stage split)."""

    prepare: float = 0.0
    infer: float = 0.0
    decode: float = 0.0
    flow: float = 0.0  # landmark optical flow, on frames tracked between detections


def to_face(raw: centerface.RawFace) -> Face:
    eyes = geometry.eye_boxes(raw.landmarks, raw.box)
    return Face(raw.box, raw.score, Eye(*eyes["left"]), Eye(*eyes["right"]), raw.landmarks)


class FaceDetector:
    def __init__(
        self,
        backend: FaceDetectorBackend,
        input_width: int = DEFAULT_INPUT_WIDTH,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_iou: float = 0.3,
        min_face_px: float = geometry.DEFAULT_MIN_FACE_PX,
    ) -> None:
        if input_width < centerface.ALIGN or input_width % centerface.ALIGN:
            raise ValueError(f"input width must be a positive multiple of {centerface.ALIGN} (got {input_width})")
        if min_face_px < 0:
            raise ValueError(f"min face size must be >= 0 px (got {min_face_px})")
        self.backend, self.input_width = backend, input_width
        self.score_threshold, self.nms_iou, self.min_face_px = score_threshold, nms_iou, min_face_px

    async def detect(self, frame: np.ndarray, timeout: float | None = None) -> tuple[list[Face], StageTimes]:
        """Faces in `frame` (HxW gray or HxWx3 BGR uint8), best score first."""
        times = StageTimes()
        start = time.perf_counter()
        blob, letterbox = centerface.prepare(frame, self.input_width)
        prepared = time.perf_counter()
        outputs = await self.backend.infer(blob, timeout)
        inferred = time.perf_counter()
        raw = centerface.decode(outputs, letterbox, self.score_threshold, self.nms_iou)
        height, width = frame.shape[:2]
        # Spurious detections (background fragments, faces too small to judge an eye) never leave the detector.
        faces = [
            to_face(r) for r in raw if geometry.implausible(r.landmarks, r.box, width, height, self.min_face_px) is None
        ]
        times.prepare, times.infer, times.decode = prepared - start, inferred - prepared, time.perf_counter() - inferred
        return faces, times
