"""A face model with its backend: prepare, infer, decode. Shared by the front ends (`front_end.py`), the
`blinkstack detect` command, the benchmarks and the training tools, so every one of them sees exactly the same
faces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from blinkstack.detector import geometry
from blinkstack.detector.backend import ModelBackend
from blinkstack.detector.faces import Face, FaceDetectorAdapter, FaceLandmarkAdapter, Region


@dataclass
class StageTimes:
    """Seconds spent per stage of one frame (the benchmark's and the metrics' per-stage split), over every model
    call the frame needed."""

    prepare: float = 0.0
    infer: float = 0.0
    decode: float = 0.0
    flow: float = 0.0  # landmark optical flow (the face detector alone, frames between detections)

    def add(self, other: StageTimes) -> StageTimes:
        return StageTimes(*(a + b for a, b in zip(vars(self).values(), vars(other).values(), strict=True)))


def plausible(faces: list[Face], frame: np.ndarray, min_face_px: float) -> list[Face]:
    """Spurious detections (background fragments, faces too small to judge an eye) never leave the detector."""
    height, width = frame.shape[:2]
    return [face for face in faces if geometry.implausible(face, width, height, min_face_px) is None]


class FaceDetector:
    """A whole-frame face detector model (an adapter and its backend)."""

    def __init__(
        self, adapter: FaceDetectorAdapter, backend: ModelBackend, min_face_px: float = geometry.DEFAULT_MIN_FACE_PX
    ) -> None:
        if min_face_px < 0:
            raise ValueError(f"min face size must be >= 0 px (got {min_face_px})")
        self.adapter, self.backend, self.min_face_px = adapter, backend, min_face_px

    async def detect(self, frame: np.ndarray, timeout: float | None = None) -> tuple[list[Face], StageTimes]:
        """Faces in `frame` (HxW gray or HxWx3 BGR uint8), best score first."""
        start = time.perf_counter()
        inputs, context = self.adapter.prepare(frame)
        prepared = time.perf_counter()
        outputs = await self.backend.infer(inputs, timeout)
        inferred = time.perf_counter()
        faces = plausible(self.adapter.decode(outputs, context), frame, self.min_face_px)
        return faces, StageTimes(prepared - start, inferred - prepared, time.perf_counter() - inferred)


class FaceLandmarker:
    """A face landmark model (an adapter and its backend), run on all of a frame's face regions in one call."""

    def __init__(
        self, adapter: FaceLandmarkAdapter, backend: ModelBackend, min_face_px: float = geometry.DEFAULT_MIN_FACE_PX
    ) -> None:
        self.adapter, self.backend, self.min_face_px = adapter, backend, min_face_px

    async def landmarks(
        self, frame: np.ndarray, regions: list[Region], timeout: float | None = None
    ) -> tuple[list[Face | None], StageTimes]:
        """One entry per region: the face found there, or None (no face, or not one whose eyes can be judged)."""
        if not regions:
            return [], StageTimes()
        start = time.perf_counter()
        inputs, context = self.adapter.prepare(frame, regions)
        prepared = time.perf_counter()
        outputs = await self.backend.infer(inputs, timeout)
        inferred = time.perf_counter()
        height, width = frame.shape[:2]
        faces = [
            face if face is not None and geometry.implausible(face, width, height, self.min_face_px) is None else None
            for face in self.adapter.decode(outputs, context)
        ]
        return faces, StageTimes(prepared - start, inferred - prepared, time.perf_counter() - inferred)
