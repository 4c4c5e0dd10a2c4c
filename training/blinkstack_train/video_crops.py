"""Eye crops cut from ZJU-format clips by the product's own detector, labelled per eye and frame.

The model is meant to see at training time what the stack feeds it at run time: each frame is JPEG-encoded as
`blinkstack watch` sends it (quality 90) and decoded, the embedded detector's front end follows the faces
exactly as the detector service does for one camera (one stream per clip), and both eye boxes of the
best-scoring face are cut as the eye-state service cuts them (turned with the head, edge replication past the
border) and reduced to the model's input size. Landmark jitter from frame to frame is therefore the detector's
real jitter.

Labels per eye (subject's own left/right; the annotation's image-left eye `le` is the subject's right eye):
1 open (not closed and outside every annotated blink), 0 closed (annotated 90-100 % closed), -1 neither
(closing or reopening, not visible, or a frame without a face): kept for evaluation, never trained on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blinkstack.common.images import box_message, crop
from blinkstack.common.preprocess import INPUT_HEIGHT, INPUT_WIDTH, crop_to_gray_input, decode_image
from blinkstack.detector.adapters import DEFAULT_FRONT_END
from blinkstack.detector.front_end import embedded_models
from blinkstack.tools.progress import progress
from blinkstack.tools.watch import FrameEncoding, read_video
from blinkstack_train.zju import Clip

SUBJECT_EYE_TO_IMAGE_SIDE = {"left": "re", "right": "le"}


@dataclass
class ClipCrops:
    """Every frame of one clip: crops [F, 2, H, W] uint8 (subject's left, right), labels [F, 2], found [F]."""

    clip: str
    subject: int
    condition: str
    crops: np.ndarray
    labels: np.ndarray
    found: np.ndarray


def eye_labels(clip: Clip, frame: int) -> tuple[int, int]:
    """(left, right) labels of the subject's eyes in `frame`: 1 open, 0 closed, -1 neither."""
    if frame >= clip.annotated_frames:
        return -1, -1
    labels = []
    for eye in ("left", "right"):
        side = SUBJECT_EYE_TO_IMAGE_SIDE[eye]
        if clip.not_visible[side][frame]:
            labels.append(-1)
        elif clip.closed[side][frame]:
            labels.append(0)
        elif clip.in_blink[frame]:
            labels.append(-1)
        else:
            labels.append(1)
    return labels[0], labels[1]


def read_frames(video: Path, gray: bool = False) -> list[np.ndarray]:
    """The clip's frames as the stack receives them: JPEG at `watch`'s quality, decoded again (BGR; with `gray`, the
    luma the detector decodes)."""
    return [decode_image(FrameEncoding().jpeg(frame), gray) for frame in read_video(video)]


async def _cut(clips: list[Clip], repository: Path, front_end: str) -> list[ClipCrops]:
    models = embedded_models(repository, front_end)
    await models.start()
    result = []
    try:
        for clip in progress(clips, desc="cutting eye crops", unit="clip"):
            frames = read_frames(clip.video, gray=True)  # as the detector service decodes them
            stream = models.stream()
            crops = np.zeros((len(frames), 2, INPUT_HEIGHT, INPUT_WIDTH), np.uint8)
            labels = np.full((len(frames), 2), -1, np.int8)
            found = np.zeros(len(frames), bool)
            for i, frame in enumerate(frames):
                faces, _, _ = await stream.faces(frame)
                if not faces:
                    continue
                face = faces[0]  # best score first
                for j, eye in enumerate((face.left_eye, face.right_eye)):
                    box = box_message(*eye.crop.box, eye.crop.angle_deg)
                    crops[i, j] = crop_to_gray_input(crop(frame, box, "eye"))
                labels[i] = eye_labels(clip, i)
                found[i] = True
            result.append(ClipCrops(clip.name, clip.subject, clip.condition, crops, labels, found))
    finally:
        await models.close()
    return result


def cut_clip_crops(clips: list[Clip], repository: Path, front_end: str = DEFAULT_FRONT_END) -> list[ClipCrops]:
    return asyncio.run(_cut(clips, Path(repository), front_end))


def save(crops: list[ClipCrops], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        clip=np.array([c.clip for c in crops for _ in range(len(c.found))]),
        subject=np.concatenate([np.full(len(c.found), c.subject) for c in crops]),
        condition=np.array([c.condition for c in crops for _ in range(len(c.found))]),
        frame=np.concatenate([np.arange(len(c.found)) for c in crops]),
        crops=np.concatenate([c.crops for c in crops]),
        labels=np.concatenate([c.labels for c in crops]),
        found=np.concatenate([c.found for c in crops]),
    )
