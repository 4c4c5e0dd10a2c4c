"""The face landmark adapter: MediaPipe's attention face mesh (model_repository/face_landmarks, Apache-2.0).

The model looks at one face region, warped upright to 192x192 RGB (0..1, NHWC), and returns 468 mesh points,
then refines each eye (71 contour points: corners, lids, brow) and iris (5 points) and the lips from feature maps
cropped around its first guess, plus a face-presence logit. All points are in the 192x192 input's pixels and are
mapped back through the region's warp.

Per eye (the first 16 of its 71 contour points, the iris model's order): 0 the outer corner, 1-7 the lower lid and
9-15 the upper lid, each from the outer towards the inner corner, 8 the inner corner. The model's "left eye"
output is the image's left eye, i.e. the subject's right eye in an unmirrored frame; the outputs were renamed to
the subject's sides when the model was imported (`blinkstack-train import-face-landmarks`).

The next frame's region follows MediaPipe's own face tracking: the mesh's bounding box in the frame turned so
that the outer eye corners (mesh points 33 and 263) lie level, 1.5x its longer side, square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from blinkstack.detector.eye_crops import corner_midpoint, crop_from_outline, head_roll
from blinkstack.detector.faces import Eye, EyeOutline, Face, Region

INPUT_SIZE = 192
INPUT_NAME = "images"
OUTPUT_NAMES = ("mesh", "face_flag", "left_eye_contour", "right_eye_contour", "left_iris", "right_iris")
REGION_SCALE = 1.5  # region side over the face's extent (MediaPipe's face tracking)
MESH_POINTS = 468
OUTER_CORNER_RIGHT, OUTER_CORNER_LEFT = 33, 263  # mesh points that level the region
NOSE_TIP, MOUTH_RIGHT, MOUTH_LEFT = 1, 61, 291
OUTER, INNER, LOWER_LID, UPPER_LID = 0, 8, slice(1, 8), slice(9, 16)
DEFAULT_MIN_PRESENCE = 0.5


@dataclass(frozen=True)
class _Warp:
    matrix: np.ndarray  # [2, 3]: input pixel (x, y, 1) -> frame pixel


def warp_for(region: Region, size: int = INPUT_SIZE) -> np.ndarray:
    """[2, 3] affine map from the model's input pixels to the frame: the region's square, turned by its angle."""
    cos, sin = math.cos(region.angle), math.sin(region.angle)
    step = region.side / size
    linear = np.array([[cos * step, -sin * step], [sin * step, cos * step]])
    shift = region.centre - linear @ np.array([size / 2, size / 2])
    return np.hstack([linear, shift[:, None]])


def _to_frame(points: np.ndarray, warp: np.ndarray) -> np.ndarray:
    return points @ warp[:, :2].T + warp[:, 2]


def region_around(points: np.ndarray, angle: float, scale: float = REGION_SCALE) -> Region:
    """The square region around `points` in the frame turned by `angle`, its side `scale` x their extent."""
    cos, sin = math.cos(angle), math.sin(angle)
    turn = np.array([[cos, sin], [-sin, cos]])  # frame -> upright
    upright = points @ turn.T
    low, high = upright.min(axis=0), upright.max(axis=0)
    centre = ((low + high) / 2) @ turn  # back to the frame
    return Region(centre, float(max(high - low)) * scale, angle)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 60.0), -60.0)))


class FaceMesh:
    """MediaPipe's attention face mesh as a `FaceLandmarkAdapter`."""

    def __init__(self, min_presence: float = DEFAULT_MIN_PRESENCE) -> None:
        if not 0 <= min_presence <= 1:
            raise ValueError(f"min presence must be in [0, 1] (got {min_presence})")
        self.min_presence = min_presence

    def region_for(self, face: Face) -> Region:
        """A detector's face: its box around its centre, turned by the line through its eyes."""
        x0, y0, x1, y1 = face.box
        angle = head_roll(face.right_eye.centre, face.left_eye.centre)
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=float)
        # The detector's box is axis-aligned: its extent measured upright shrinks back to the face's size.
        return region_around(corners, angle, REGION_SCALE / (abs(math.cos(angle)) + abs(math.sin(angle))))

    def prepare(self, frame: np.ndarray, regions: list[Region]) -> tuple[dict[str, np.ndarray], list[_Warp]]:
        """Each region warped upright to 192x192, RGB in 0..1: [N, 192, 192, 3] float32."""
        batch = np.empty((len(regions), INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)
        warps = []
        for i, region in enumerate(regions):
            warp = warp_for(region)
            patch = cv2.warpAffine(
                frame,
                warp,
                (INPUT_SIZE, INPUT_SIZE),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
            if patch.ndim == 2:  # a gray camera: the same value in every channel
                batch[i] = patch[:, :, None]
            else:
                batch[i] = patch[:, :, 2::-1]  # BGR(A) -> RGB
            warps.append(_Warp(warp))
        batch *= 1.0 / 255.0
        return {INPUT_NAME: batch}, warps

    def decode(self, outputs: dict[str, np.ndarray], context: object) -> list[Face | None]:
        assert isinstance(context, list)
        faces: list[Face | None] = []
        for i, warp in enumerate(context):
            presence = _sigmoid(float(np.ravel(outputs["face_flag"][i])[0]))
            if presence < self.min_presence:
                faces.append(None)
                continue
            matrix = warp.matrix
            mesh = _to_frame(np.reshape(outputs["mesh"][i], (MESH_POINTS, 3))[:, :2], matrix)
            outlines = {
                side: self._outline(outputs[f"{side}_eye_contour"][i], outputs[f"{side}_iris"][i], matrix)
                for side in ("left", "right")
            }
            faces.append(self._face(mesh, outlines, presence))
        return faces

    @staticmethod
    def _outline(contour: np.ndarray, iris: np.ndarray, matrix: np.ndarray) -> EyeOutline:
        points = _to_frame(np.reshape(contour, (-1, 2)), matrix)
        iris_points = _to_frame(np.reshape(iris, (-1, 2)), matrix)
        return EyeOutline(points[OUTER], points[INNER], points[UPPER_LID], points[LOWER_LID], iris_points[0])

    @staticmethod
    def _face(mesh: np.ndarray, outlines: dict[str, EyeOutline], presence: float) -> Face:
        centres = {side: corner_midpoint(outline) for side, outline in outlines.items()}
        roll = head_roll(centres["right"], centres["left"])
        eyes = {side: Eye(centres[side], crop_from_outline(outlines[side], roll), outlines[side]) for side in outlines}
        low, high = mesh.min(axis=0), mesh.max(axis=0)
        level = head_roll(mesh[OUTER_CORNER_RIGHT], mesh[OUTER_CORNER_LEFT])
        return Face(
            box=np.concatenate([low, high]),
            score=presence,
            left_eye=eyes["left"],
            right_eye=eyes["right"],
            points={"nose": mesh[NOSE_TIP], "mouth_right": mesh[MOUTH_RIGHT], "mouth_left": mesh[MOUTH_LEFT]},
            landmarks=mesh,
            region=region_around(mesh, level),
        )
