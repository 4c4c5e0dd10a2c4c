"""Front ends: where a stream's faces come from, frame after frame.

- `LandmarkTracking` (the `landmarks` front end, the default): a landmark model runs on each followed face's
  region every frame; its own points give the next frame's region, and its presence score says when the face
  is lost. The face detector runs only when no face is followed (the first frame), in the same frame as soon as
  a face is lost, and every `detect_every` frames to find faces that enter the picture. A newly found face is
  landmarked twice in its first frame: from the detector's box, then from the region its own points give, so
  its first frame is as good as the following ones.
- `LandmarkFlow` (`centerface` with detect_every > 1): the face detector every N frames, optical flow between.
- `EveryFrame` (`centerface`): the face detector on every frame.

`FrontEndModels` holds what all streams of one process share (the models and their backends) and makes a fresh
per-stream front end for each camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from blinkstack.common.model_backend import BackendUnavailable
from blinkstack.common.model_repository import FACE_DETECTOR_MODEL, FACE_LANDMARK_MODEL
from blinkstack.common.tracking import iou_matrix
from blinkstack.detector.adapters import DEFAULT_FRONT_END, AdapterSettings, adapters_for
from blinkstack.detector.backend import ModelBackend
from blinkstack.detector.face_models import FaceDetector, FaceLandmarker, StageTimes
from blinkstack.detector.faces import Face, Region
from blinkstack.detector.landmark_flow import LandmarkFlow
from blinkstack.detector.onnxruntime_backend import OnnxRuntimeBackend

DEFAULT_MAX_FACES = 4
# Frames between two runs of the face detector when nothing asks for one sooner: with the landmark model it runs
# only to find faces that enter the picture (a lost face runs it at once); alone, it runs on every frame.
LANDMARKS_DETECT_EVERY = 30
DUPLICATE_IOU = 0.5  # two followed faces this much overlapped are one face


class FrontEnd(Protocol):
    async def faces(self, frame: np.ndarray, timeout: float | None = None) -> tuple[list[Face], StageTimes, bool]:
        """Faces in `frame` (best score first), the stage times, and True when the face detector did not run."""
        ...


@dataclass
class EveryFrame:
    detector: FaceDetector

    async def faces(self, frame: np.ndarray, timeout: float | None = None) -> tuple[list[Face], StageTimes, bool]:
        faces, times = await self.detector.detect(frame, timeout)
        return faces, times, False


def _inside(point: np.ndarray, box: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def _distinct(faces: list[Face]) -> list[Face]:
    """Best score first, without a second copy of any face (two regions that converged on one face)."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if not kept or iou_matrix(face.box[None], np.array([k.box for k in kept])).max() < DUPLICATE_IOU:
            kept.append(face)
    return kept


@dataclass
class LandmarkTracking:
    detector: FaceDetector
    landmarker: FaceLandmarker
    detect_every: int
    max_faces: int = DEFAULT_MAX_FACES
    _regions: list[Region] = field(default_factory=list)
    _since_detection: int = 0

    async def faces(self, frame: np.ndarray, timeout: float | None = None) -> tuple[list[Face], StageTimes, bool]:
        times = StageTimes()
        found, times = await self._follow(frame, self._regions, timeout, times)
        lost = len(found) < len(self._regions)
        due = not self._regions or lost or self._since_detection + 1 >= self.detect_every
        if due:
            detections, spent = await self.detector.detect(frame, timeout)
            times = times.add(spent)
            room = self.max_faces - len(found)
            new = [d for d in detections if not any(_inside(_centre(d), f.box) for f in found)][: max(room, 0)]
            if new:
                first, times = await self._follow(frame, [self.landmarker.adapter.region_for(d) for d in new],
                                                  timeout, times)  # fmt: skip
                regions = [f.region for f in first if f.region is not None]  # landmark faces all have one
                settled, times = await self._follow(frame, regions, timeout, times)
                found += settled
            self._since_detection = 0
        else:
            self._since_detection += 1
        faces = _distinct(found)[: self.max_faces]
        self._regions = [f.region for f in faces if f.region is not None]
        return faces, times, not due

    async def _follow(
        self, frame: np.ndarray, regions: list[Region], timeout: float | None, times: StageTimes
    ) -> tuple[list[Face], StageTimes]:
        faces, spent = await self.landmarker.landmarks(frame, regions, timeout)
        return [f for f in faces if f is not None], times.add(spent)


def _centre(face: Face) -> np.ndarray:
    return (face.box[:2] + face.box[2:]) / 2


@dataclass
class FrontEndModels:
    """A process's face models; `stream()` makes one camera's front end."""

    detector: FaceDetector
    landmarker: FaceLandmarker | None = None
    detect_every: int = 0  # 0: the front end's default
    max_faces: int = DEFAULT_MAX_FACES

    def __post_init__(self) -> None:
        if self.detect_every < 0:
            raise ValueError(f"detect_every must be >= 0 (got {self.detect_every}; 0: the front end's default)")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1 (got {self.max_faces})")

    @property
    def every(self) -> int:
        default = LANDMARKS_DETECT_EVERY if self.landmarker is not None else 1
        return self.detect_every or default

    @property
    def backends(self) -> list[ModelBackend]:
        return [self.detector.backend] + ([self.landmarker.backend] if self.landmarker is not None else [])

    def stream(self) -> FrontEnd:
        if self.landmarker is not None:
            return LandmarkTracking(self.detector, self.landmarker, self.every, self.max_faces)
        if self.every > 1:
            return LandmarkFlow(self.detector, self.every)
        return EveryFrame(self.detector)

    async def start(self) -> None:
        """Start every backend; the first that is not available yet is raised after the others have started."""
        missing: BackendUnavailable | None = None
        for backend in self.backends:
            try:
                await backend.start()
            except BackendUnavailable as exc:
                missing = missing or exc
        if missing is not None:
            raise missing

    async def ready(self) -> bool:
        return all([await backend.ready() for backend in self.backends])

    async def close(self) -> None:
        for backend in self.backends:
            await backend.close()


def embedded_models(
    repository: Path,
    front_end: str = DEFAULT_FRONT_END,
    threads: int = 1,
    detect_every: int = 0,
    settings: AdapterSettings | None = None,
) -> FrontEndModels:
    """A front end's models on embedded ONNX Runtime, as the detector service builds them by default (for the
    tools, benchmarks and tests that run the detector in-process). Call `start()` before use."""
    detector_adapter, landmark_adapter = adapters_for(front_end, settings or AdapterSettings())
    detector = FaceDetector(detector_adapter, OnnxRuntimeBackend(repository, FACE_DETECTOR_MODEL, threads=threads))
    landmarker = None
    if landmark_adapter is not None:
        landmarker = FaceLandmarker(
            landmark_adapter, OnnxRuntimeBackend(repository, FACE_LANDMARK_MODEL, threads=threads)
        )
    return FrontEndModels(detector, landmarker, detect_every)
