"""CenterFace pre- and post-processing: a BGR/gray frame -> the model's input, its four maps -> faces.

The model (model_repository/face_detector) takes RGB pixels in 0..255, [N, 3, H, W] with H and W multiples of
32, and predicts on a stride-4 grid: a face-centre heatmap, log box sizes, sub-cell centre offsets and five
landmarks relative to the box. Frames are scaled to `input_width` keeping their aspect ratio and padded at the
bottom/right to a multiple of 32, so coordinates map back with one scale factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

STRIDE = 4
ALIGN = 32
INPUT_NAME = "images"
OUTPUT_NAMES = ("heatmap", "scale", "offset", "landmarks")


@dataclass(frozen=True)
class RawFace:
    """One detection in frame pixels: box (x0, y0, x1, y1), score, landmarks [5, 2] in the model's order."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray


@dataclass(frozen=True)
class Letterbox:
    scale: float  # model pixels per frame pixel
    width: int
    height: int


def letterbox_for(frame_width: int, frame_height: int, input_width: int) -> Letterbox:
    """Scale so the frame is at most `input_width` wide (never upscaled), padded to multiples of 32."""
    scale = min(1.0, input_width / frame_width)
    width = int(np.ceil(frame_width * scale / ALIGN) * ALIGN)
    height = int(np.ceil(frame_height * scale / ALIGN) * ALIGN)
    return Letterbox(scale, width, height)


def prepare(frame: np.ndarray, input_width: int) -> tuple[np.ndarray, Letterbox]:
    """HxW gray or HxWx3/4 BGR(A) uint8 -> [1, 3, H', W'] float32 RGB and the letterbox that maps it back."""
    if frame.ndim == 2:
        rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 4:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    height, width = frame.shape[:2]
    box = letterbox_for(width, height, input_width)
    scaled_w, scaled_h = max(1, round(width * box.scale)), max(1, round(height * box.scale))
    if (scaled_w, scaled_h) != (width, height):
        rgb = cv2.resize(rgb, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA)
    blob = np.zeros((1, 3, box.height, box.width), dtype=np.float32)
    blob[0, :, :scaled_h, :scaled_w] = rgb.transpose(2, 0, 1)
    return blob, box


def decode(
    outputs: dict[str, np.ndarray], letterbox: Letterbox, threshold: float = 0.5, nms_iou: float = 0.3
) -> list[RawFace]:
    """The model's maps for one image -> faces above `threshold`, non-maximum suppressed, in frame pixels."""
    heatmap = outputs["heatmap"][0, 0]
    ys, xs = np.nonzero(heatmap > threshold)
    if len(ys) == 0:
        return []
    scores = heatmap[ys, xs]
    size_h = np.exp(outputs["scale"][0, 0, ys, xs]) * STRIDE
    size_w = np.exp(outputs["scale"][0, 1, ys, xs]) * STRIDE
    centre_y = (ys + outputs["offset"][0, 0, ys, xs] + 0.5) * STRIDE
    centre_x = (xs + outputs["offset"][0, 1, ys, xs] + 0.5) * STRIDE
    x0, y0 = centre_x - size_w / 2, centre_y - size_h / 2
    boxes = np.stack([x0, y0, x0 + size_w, y0 + size_h], axis=1)
    # Landmarks are (y, x) pairs relative to the box's top-left corner, in units of the box size.
    marks = outputs["landmarks"][0][:, ys, xs].T.reshape(-1, 5, 2)
    landmarks = np.stack(
        [x0[:, None] + marks[:, :, 1] * size_w[:, None], y0[:, None] + marks[:, :, 0] * size_h[:, None]], axis=2
    )
    keep = cv2.dnn.NMSBoxes(
        [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes],
        scores.astype(float).tolist(),
        threshold,
        nms_iou,
    )
    inverse = 1.0 / letterbox.scale
    return [
        RawFace(boxes[i] * inverse, float(scores[i]), landmarks[i] * inverse)
        for i in sorted(np.asarray(keep).reshape(-1).tolist(), key=lambda i: -scores[i])
    ]
