"""The CenterFace adapter (model_repository/face_detector, MIT): a BGR/gray frame -> faces with five points.

The model takes RGB pixels in 0..255, [N, 3, H, W] with H and W multiples of 32, and predicts on a stride-4
grid: a face-centre heatmap, log box sizes, sub-cell centre offsets and five landmarks relative to the box
(the subject's right eye, left eye, nose, right and left mouth corner). Frames are scaled to `input_width`
keeping their aspect ratio and padded at the bottom/right to a multiple of 32, so coordinates map back with one
scale factor.

Its eye crops are squares centred on the eye point, their side `EYE_BOX_SCALE` x the inter-ocular distance
(IOD). 0.62 is measured, not guessed: matching the 24x24 CEW eye patches (which the eye-state model is trained
and evaluated on) back into their source faces gives a median side of 0.62 IOD (10th-90th percentile
0.54-0.70) and centres within 0.04 IOD of the CenterFace eye points (`blinkstack-train measure-eye-geometry`).
A head turned sideways shortens the IOD in the image while the eyes stay as tall; the side therefore never
drops below `MIN_SIDE_OF_FACE_WIDTH` of the face box width (frontal faces have IOD ~0.45 face widths, so the
floor only acts beyond about 40 degrees of yaw). The model gives no corners or lids, so no aperture.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from blinkstack.detector.faces import Eye, EyeCrop, Face

STRIDE = 4
ALIGN = 32
INPUT_NAME = "images"
OUTPUT_NAMES = ("heatmap", "scale", "offset", "landmarks")


RIGHT_EYE, LEFT_EYE, NOSE, MOUTH_RIGHT, MOUTH_LEFT = range(5)  # the model's landmark order
EYE_BOX_SCALE = 0.62
MIN_SIDE_OF_FACE_WIDTH = 0.35 * EYE_BOX_SCALE
DEFAULT_INPUT_WIDTH = 320
DEFAULT_SCORE_THRESHOLD = 0.3


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
    height, width = frame.shape[:2]
    box = letterbox_for(width, height, input_width)
    scaled_w, scaled_h = max(1, round(width * box.scale)), max(1, round(height * box.scale))
    # Shrink first, then make RGB (the same pixels either way): a 4096x4096 frame made RGB first was 48 MB.
    if (scaled_w, scaled_h) != (width, height):
        frame = cv2.resize(frame, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA)
    if frame.ndim == 2:
        rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 4:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    blob = np.zeros((1, 3, box.height, box.width), dtype=np.float32)
    blob[0, :, :scaled_h, :scaled_w] = rgb.transpose(2, 0, 1)
    return blob, box


def decode(
    outputs: dict[str, np.ndarray], letterbox: Letterbox, threshold: float = 0.5, nms_iou: float = 0.3
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """The model's maps for one image -> (box, score, landmarks [5, 2]) above `threshold`, non-maximum
    suppressed, in frame pixels, best score first."""
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
        (boxes[i] * inverse, float(scores[i]), landmarks[i] * inverse)
        for i in sorted(np.asarray(keep).reshape(-1).tolist(), key=lambda i: -scores[i])
    ]


def eye_box_side(left_eye: np.ndarray, right_eye: np.ndarray, face_width: float) -> float:
    iod = float(np.hypot(*(left_eye - right_eye)))
    return max(EYE_BOX_SCALE * iod, MIN_SIDE_OF_FACE_WIDTH * face_width, 1.0)


def face_from_landmarks(landmarks: np.ndarray, box: np.ndarray, score: float) -> Face:
    """A Face from CenterFace's five points [5, 2] and box (x0, y0, x1, y1)."""
    left, right = landmarks[LEFT_EYE], landmarks[RIGHT_EYE]
    side = eye_box_side(left, right, float(box[2] - box[0]))
    return Face(
        box=box,
        score=score,
        left_eye=Eye(left, EyeCrop(left, side)),
        right_eye=Eye(right, EyeCrop(right, side)),
        points={"nose": landmarks[NOSE], "mouth_right": landmarks[MOUTH_RIGHT], "mouth_left": landmarks[MOUTH_LEFT]},
        landmarks=landmarks,
    )


class CenterFace:
    """CenterFace as a whole-frame `FaceDetectorAdapter`."""

    def __init__(
        self,
        input_width: int = DEFAULT_INPUT_WIDTH,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_iou: float = 0.3,
    ) -> None:
        if input_width < ALIGN or input_width % ALIGN:
            raise ValueError(f"input width must be a positive multiple of {ALIGN} (got {input_width})")
        self.input_width, self.score_threshold, self.nms_iou = input_width, score_threshold, nms_iou

    def prepare(self, frame: np.ndarray) -> tuple[dict[str, np.ndarray], Letterbox]:
        blob, letterbox = prepare(frame, self.input_width)
        return {INPUT_NAME: blob}, letterbox

    def decode(self, outputs: dict[str, np.ndarray], context: object) -> list[Face]:
        assert isinstance(context, Letterbox)
        return [
            face_from_landmarks(landmarks, box, score)
            for box, score, landmarks in decode(outputs, context, self.score_threshold, self.nms_iou)
        ]

    def from_landmarks(self, landmarks: np.ndarray, box: np.ndarray, score: float) -> Face:
        return face_from_landmarks(landmarks, box, score)
