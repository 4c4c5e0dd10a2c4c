"""Import MediaPipe's attention face mesh into `model_repository/face_landmarks/` from its pinned PyPI wheel.

The model (478 face points with refined eye contours and irises, Apache-2.0) ships only as
`mediapipe/modules/face_landmark/face_landmark_with_attention.tflite` inside the `mediapipe` wheel. Only that
file and the wheel's licence are taken: the wheel is downloaded without its dependencies for one fixed platform,
so it is the same file on every machine, and both the wheel and the member are checked against pinned sha256
digests. `tflite_onnx` converts it (MediaPipe's three custom operators included) without the lips refinement,
which blinkstack does not use (a third of the refinement's cost: 2.5 instead of 3.4 ms a face on one core);
the tensors get names that say what they are, by the subject's side (the model's "left eye" is the image's left
eye: the subject's right):

| TFLite | ONNX | shape (N faces) |
|---|---|---|
| input_1 | images | [N, 192, 192, 3] RGB in 0..1 |
| output_mesh_identity | mesh | [N, 1, 1, 1404]: 468 x (x, y, z) in input pixels |
| conv_faceflag | face_flag | [N, 1, 1, 1]: face presence logit |
| output_left_eye / output_right_eye | right_eye_contour / left_eye_contour | [N, 1, 1, 142]: 71 x (x, y) |
| output_left_iris / output_right_iris | right_iris / left_iris | [N, 1, 1, 10]: 5 x (x, y), centre first |

The parity check (`landmark_parity.py`) runs the converted model through the detector's own front end and
MediaPipe's FaceMesh (the original runtime, in its own environment) on the same real frames.

Run once by a maintainer (`blinkstack-train import-face-landmarks`); the result is committed, so nothing is
downloaded at install or run time.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import onnx

from blinkstack.common.model_repository import FACE_LANDMARK_MODEL, MODEL_FILENAME, file_sha256, write_configs
from blinkstack_train import tflite_onnx
from blinkstack_train.pinned_wheel import PinnedWheel, rename_tensors

WHEEL = "mediapipe==0.10.21"
WHEEL_FILE = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
MEMBER = "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite"
MEMBER_SHA256 = "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4"
LICENCE_MEMBER = "mediapipe-0.10.21.dist-info/LICENSE"
NAMES = {
    "input_1": "images",
    "output_mesh_identity": "mesh",
    "conv_faceflag": "face_flag",
    "output_left_eye": "right_eye_contour",
    "output_right_eye": "left_eye_contour",
    "output_left_iris": "right_iris",
    "output_right_iris": "left_iris",
}
MAX_BATCH_SIZE = 8


PINNED = PinnedWheel(
    WHEEL,
    WHEEL_FILE,
    WHEEL_SHA256,
    MEMBER,
    MEMBER_SHA256,
    platform=("--python-version", "3.11", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64"),
)


def convert_member(member: bytes) -> onnx.ModelProto:
    outputs = {name for name in NAMES if name.startswith(("output", "conv"))}
    model = rename_tensors(tflite_onnx.convert(member, FACE_LANDMARK_MODEL, outputs), NAMES)
    onnx.checker.check_model(model, full_check=True)
    return model


def import_face_landmarks(repository: Path, version: int = 1) -> dict:
    """Write `<repository>/face_landmarks/<version>/model.onnx`, its Triton configs, LICENSE and SOURCE.json
    (without the parity figures, which `landmark_parity.check` adds)."""
    model_dir = Path(repository) / FACE_LANDMARK_MODEL
    target = model_dir / str(version) / MODEL_FILENAME
    with tempfile.TemporaryDirectory() as tmp:
        member, licence = PINNED.fetch(Path(tmp), LICENCE_MEMBER)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(convert_member(member), target)
    write_configs(model_dir, MAX_BATCH_SIZE)
    (model_dir / "LICENSE").write_bytes(licence)
    source = {
        "model": "MediaPipe face landmarks with attention (468 mesh points, refined eye contours and irises, face "
        "presence; the lips refinement left out)",
        "wheel": WHEEL,
        "wheel_file": WHEEL_FILE,
        "wheel_sha256": WHEEL_SHA256,
        "member": MEMBER,
        "member_sha256": MEMBER_SHA256,
        "licence": "Apache-2.0 (see LICENSE, copied from the wheel)",
        "converter": "blinkstack_train.tflite_onnx (MediaPipe's custom operators written with ONNX operators)",
        "tensor_names": NAMES,
        "served_sha256": file_sha256(target),
        "command": "blinkstack-train import-face-landmarks",
    }
    (model_dir / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n")
    return source
