"""The face detector alone (`--front-end centerface`) with `--detect-every N > 1`: detect every N frames of a
camera stream and move the landmarks by optical flow in between.

The face detector costs ~12 ms a frame on a small CPU; pyramidal Lucas-Kanade flow on its points costs ~1 ms.
Frame 0, N, 2N, ... run the detector; the frames between move each face's landmarks from the previous frame by LK
flow, scale and shift the face box with them, and let the detector's adapter lay the eyes out again from the
moved points, as for a detection. A tracked frame falls back to a full detection when any point
is lost, fails the forward-backward check (tracked forward then back, it must land within
`max_fb_error` x the inter-ocular distance of where it started), or when the inter-ocular distance jumps by more
than `max_scale_step` in one frame: a hard cut, a fast turn or an occlusion then costs one detection, not a
wrong eye box. Faces that appear between detections are found at the next detection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from blinkstack.detector.face_models import FaceDetector, StageTimes
from blinkstack.detector.faces import Face

# 21 px windows and 3 pyramid levels follow motion of ~60 px per frame at 640x480: a fast head turn at 30 fps.
LK_PARAMS: dict[str, Any] = {
    "winSize": (21, 21),
    "maxLevel": 3,
    "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
}


def _gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def _iod(face: Face) -> float:
    return float(np.hypot(*(face.left_eye.centre - face.right_eye.centre)))


@dataclass
class LandmarkFlow:
    """One stream's detector-only front end: the previous grey frame and faces, and frames left until the next
    detection."""

    detector: FaceDetector
    detect_every: int
    max_fb_error: float = 0.1
    max_scale_step: float = 0.2
    _previous: np.ndarray | None = None
    _faces: list[Face] = field(default_factory=list)
    _since_detection: int = 0

    async def faces(self, frame: np.ndarray, timeout: float | None = None) -> tuple[list[Face], StageTimes, bool]:
        """Faces in `frame`, its stage times, and whether they were followed (True) or detected (False)."""
        start = time.perf_counter()
        gray = _gray(frame)
        due = self._since_detection + 1 >= self.detect_every
        if not due and self._previous is not None and self._previous.shape == gray.shape and self._faces:
            tracked = self._track(gray)
            if tracked is not None:
                self._previous, self._faces = gray, tracked
                self._since_detection += 1
                return tracked, StageTimes(flow=time.perf_counter() - start), True
        faces, times = await self.detector.detect(frame, timeout)
        self._previous, self._faces, self._since_detection = gray, faces, 0
        return faces, times, False

    def _track(self, gray: np.ndarray) -> list[Face] | None:
        """Every face moved to `gray`, or None when any of them cannot be followed reliably."""
        assert self._previous is not None, "tracking needs a previous frame"
        counts = [len(f.landmarks) for f in self._faces]
        start_points = np.concatenate([f.landmarks for f in self._faces]).astype(np.float32).reshape(-1, 1, 2)
        moved, found, _ = cv2.calcOpticalFlowPyrLK(self._previous, gray, start_points, None, **LK_PARAMS)
        back, found_back, _ = cv2.calcOpticalFlowPyrLK(gray, self._previous, moved, None, **LK_PARAMS)
        ok = (found.ravel() == 1) & (found_back.ravel() == 1)
        fb_error = np.linalg.norm(back.reshape(-1, 2) - start_points.reshape(-1, 2), axis=1)
        moved = moved.reshape(-1, 2).astype(np.float64)
        faces, first = [], 0
        for face, count in zip(self._faces, counts, strict=True):
            points = slice(first, first + count)
            first += count
            if not ok[points].all() or fb_error[points].max() > self.max_fb_error * _iod(face):
                return None
            adapter = self.detector.adapter
            scale = _iod(adapter.from_landmarks(moved[points], face.box, face.score)) / max(_iod(face), 1e-6)
            if abs(scale - 1) > self.max_scale_step:
                return None
            # The box follows the landmarks: same scale change about their centroid, same shift.
            before, after = face.landmarks.mean(axis=0), moved[points].mean(axis=0)
            corners = (face.box.reshape(2, 2) - before) * scale + after
            faces.append(adapter.from_landmarks(moved[points], corners.reshape(4), face.score))
        return faces
