"""The landmark recipe a user would pick instead, as the baseline row of `evaluate-video --baseline`.

MediaPipe Face Mesh with `refine_landmarks` (the attention model: on ZJU dev its lids separate open from closed
eyes far better than the plain mesh's), run by MediaPipe itself in its own environment (`make mediapipe-env`:
`.venv/mediapipe`, `face_mesh_runner.py`), on the same clips sent the same way as to the stack (each encoding:
JPEG at its quality, or the raw pixels), one FaceMesh per clip in video mode. Per frame, the eye aspect ratio
(EAR, Soukupova and Cech 2016: the two lid distances over twice the corner distance, both eyes averaged); a
blink is a run of at least `MIN_FRAMES` frames below the threshold:
- fixed: EAR below 0.21, the recipe's usual constant;
- adaptive: EAR below 0.75 of the clip's median EAR (its open level). The median is taken over the whole clip,
  which a live camera could not do, so this row is a little kinder to the recipe than it would be live.
Both eyes share the frame's state (the recipe has one EAR per face).
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from blinkstack.tools.watch import FrameEncoding, read_video
from blinkstack_train import zju

RUNNER = Path(__file__).with_name("face_mesh_runner.py")
# Mesh points p1..p6 of each eye: outer corner, two upper lid points, inner corner, two lower lid points.
RIGHT_EYE = (33, 160, 158, 133, 153, 144)
LEFT_EYE = (263, 387, 385, 362, 380, 373)
FIXED_THRESHOLD = 0.21
ADAPTIVE_RATIO = 0.75
MIN_FRAMES = 2
VARIANTS = ("fixed", "adaptive")


@dataclass
class RecipeClip:
    """The recipe's reading of one clip: EAR per frame (NaN without a face) and its blinks for each variant."""

    ear: np.ndarray
    blinks: dict[str, list[tuple[int, int]]]
    closed: dict[str, np.ndarray]


def eye_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Mean EAR of both eyes per frame, from mesh points [F, >=468, 2] (NaN where there was no face)."""

    def one(eye: tuple[int, ...]) -> np.ndarray:
        p = landmarks[:, list(eye)]
        lids = np.linalg.norm(p[:, 1] - p[:, 5], axis=1) + np.linalg.norm(p[:, 2] - p[:, 4], axis=1)
        return lids / (2 * np.linalg.norm(p[:, 0] - p[:, 3], axis=1))

    return (one(RIGHT_EYE) + one(LEFT_EYE)) / 2


def runs_below(values: np.ndarray, threshold: float, min_frames: int = MIN_FRAMES) -> list[tuple[int, int]]:
    """[first, last] frame of every run of at least `min_frames` values below `threshold` (NaN ends a run)."""
    below = np.append(values < threshold, False)
    runs, start = [], None
    for i, low in enumerate(below):
        if low and start is None:
            start = i
        elif not low and start is not None:
            if i - start >= min_frames:
                runs.append((start, i - 1))
            start = None
    return runs


def read_clip(ear: np.ndarray) -> RecipeClip:
    thresholds = {"fixed": FIXED_THRESHOLD, "adaptive": ADAPTIVE_RATIO * float(np.nanmedian(ear))}
    blinks = {name: runs_below(ear, t) for name, t in thresholds.items()}
    return RecipeClip(ear, blinks, {name: ear < t for name, t in thresholds.items()})


def encoded_frames(video: Path, encoding: FrameEncoding) -> list[bytes]:
    """The clip's frames as the stack receives them at `encoding` (raw pixels travel as PNG: the same pixels)."""
    if encoding.quality is None:
        return [cv2.imencode(".png", frame)[1].tobytes() for frame in read_video(video)]
    return [encoding.jpeg(frame) for frame in read_video(video)]


def run_recipe(env: Path, clips: list[zju.Clip], encoding: FrameEncoding) -> dict[str, RecipeClip]:
    """MediaPipe Face Mesh on every clip at `encoding`, in the environment `env`; the recipe's reading per clip."""
    python = Path(env) / "bin" / "python"
    if not python.is_file():
        raise FileNotFoundError(f"no MediaPipe environment at {env}; create it with `make mediapipe-env`")
    frames, streams = [], []
    for clip in clips:
        encoded = encoded_frames(clip.video, encoding)
        frames += encoded
        streams += [clip.name] * len(encoded)
    with tempfile.TemporaryDirectory(prefix="blinkstack-recipe-") as tmp:
        frames_path, out = Path(tmp) / "frames.npz", Path(tmp) / "mesh.npz"
        np.savez(frames_path, jpeg=np.array(frames, dtype=object), stream=np.array(streams))
        subprocess.run([str(python), str(RUNNER), str(frames_path), str(out), "--refine"], check=True)
        landmarks = np.load(out)["landmarks"]
    names = np.array(streams)
    return {clip.name: read_clip(eye_aspect_ratio(landmarks[names == clip.name])) for clip in clips}
