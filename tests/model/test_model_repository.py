"""The committed model repository is valid for Triton and matches the ONNX file it serves."""

from __future__ import annotations

import hashlib
import json

import onnx
import pytest

from blinkstack.common.model_repository import (
    TensorSpec,
    onnx_io_specs,
    parse_pbtxt,
    read_config,
    render_config,
    resolve_model_file,
    tensor_specs,
)
from blinkstack_train import face_landmarks
from blinkstack_train.face_detector import MEMBER_SHA256, WHEEL, WHEEL_SHA256
from tests.helpers import MODEL_REPOSITORY

MODEL_DIR = MODEL_REPOSITORY / "eye_state"
DETECTOR_DIR = MODEL_REPOSITORY / "face_detector"
LANDMARKS_DIR = MODEL_REPOSITORY / "face_landmarks"
MODELS = {
    "eye_state": (
        [TensorSpec("images", "TYPE_FP32", (1, 32, 32))],
        [TensorSpec("prob_open", "TYPE_FP32", ())],
    ),
    "face_detector": (
        [TensorSpec("images", "TYPE_FP32", (3, -1, -1))],
        [
            TensorSpec(name, "TYPE_FP32", (c, -1, -1))
            for name, c in (("heatmap", 1), ("scale", 2), ("offset", 2), ("landmarks", 10))
        ],
    ),
    "face_landmarks": (
        [TensorSpec("images", "TYPE_FP32", (192, 192, 3))],
        [
            TensorSpec(name, "TYPE_FP32", (1, 1, size))
            for name, size in (
                ("mesh", 1404),
                ("right_eye_contour", 142),
                ("left_eye_contour", 142),
                ("right_iris", 10),
                ("left_iris", 10),
                ("face_flag", 1),
            )
        ],
    ),
}


@pytest.fixture(scope="module")
def served():
    return resolve_model_file(MODEL_DIR)


@pytest.mark.parametrize("model", list(MODELS))
def test_config_is_a_batched_onnxruntime_model(model):
    config = read_config(MODEL_REPOSITORY / model)
    assert config["name"] == model
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] > 0
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] > 0
    assert config["instance_group"][0]["kind"] in {"KIND_CPU", "KIND_GPU"}


@pytest.mark.parametrize("model", list(MODELS))
def test_config_matches_the_onnx_graph(model):
    model_file, _ = resolve_model_file(MODEL_REPOSITORY / model)
    config = read_config(MODEL_REPOSITORY / model)
    inputs, outputs = onnx_io_specs(model_file)
    expected_inputs, expected_outputs = MODELS[model]
    assert tensor_specs(config, "input") == inputs == expected_inputs
    assert tensor_specs(config, "output") == outputs == expected_outputs


@pytest.mark.parametrize("model", list(MODELS))
def test_gpu_variant_uses_tensorrt_fp16_and_the_same_tensors(model):
    default = read_config(MODEL_REPOSITORY / model)
    gpu = parse_pbtxt((MODEL_REPOSITORY / model / "configs" / "gpu.pbtxt").read_text())
    assert gpu["instance_group"][0]["kind"] == "KIND_GPU"
    (accelerator,) = gpu["optimization"]["execution_accelerators"]["gpu_execution_accelerator"]
    parameters = {p["key"]: p["value"] for p in accelerator["parameters"]}
    assert accelerator["name"] == "tensorrt" and parameters["precision_mode"] == "FP16"
    for key in ("name", "platform", "max_batch_size", "input", "output", "dynamic_batching"):
        assert gpu[key] == default[key], key


def test_face_detector_is_the_pinned_centerface_with_its_licence():
    source = json.loads((DETECTOR_DIR / "SOURCE.json").read_text())
    model_file, _ = resolve_model_file(DETECTOR_DIR)
    assert source["served_sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert source["wheel"] == WHEEL and source["wheel_sha256"] == WHEEL_SHA256
    assert source["member_sha256"] == MEMBER_SHA256
    assert "MIT License" in (DETECTOR_DIR / "LICENSE").read_text()
    proto = onnx.load(str(model_file))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["images"]  # weights are initializers, not inputs


def test_face_landmarks_is_the_pinned_mediapipe_model_with_its_licence_and_parity():
    source = json.loads((LANDMARKS_DIR / "SOURCE.json").read_text())
    model_file, _ = resolve_model_file(LANDMARKS_DIR)
    assert source["served_sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert source["wheel"] == face_landmarks.WHEEL and source["wheel_sha256"] == face_landmarks.WHEEL_SHA256
    assert source["member"] == face_landmarks.MEMBER and source["member_sha256"] == face_landmarks.MEMBER_SHA256
    assert "Apache License" in (LANDMARKS_DIR / "LICENSE").read_text()
    parity = source["parity_with_mediapipe"]  # written by the import's comparison with MediaPipe itself
    assert parity["frames_with_a_face_in_both"] >= 3000 and parity["point_distance_over_iod"]["p99"] < 0.1
    proto = onnx.load(str(model_file))
    onnx.checker.check_model(proto)
    assert {node.op_type for node in proto.graph.node}.isdisjoint({"PRelu"})  # rewritten for ONNX Runtime's speed
    assert source["served_sha256"] in (LANDMARKS_DIR / "MODEL_CARD.md").read_text()


def test_onnx_file_is_self_contained_folded_and_batch_dynamic(served):
    model_file, _ = served
    proto = onnx.load(str(model_file), load_external_data=False)
    onnx.checker.check_model(proto)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    assert not any(node.op_type == "BatchNormalization" for node in proto.graph.node)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert proto.graph.node[-1].op_type == "Sigmoid"


def test_model_card_describes_the_served_file(served):
    model_file, version = served
    card = json.loads((MODEL_DIR / "model_card.json").read_text())
    assert card["sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert card["version"] == version
    assert {"MRL", "CEW"} <= {d["name"] for d in card["data"]["datasets"]}
    assert len(card["family"]) >= 3
    assert (MODEL_DIR / "MODEL_CARD.md").read_text().count(card["sha256"]) == 1


def test_pbtxt_parser_reads_what_the_renderer_writes():
    text = render_config("m", [TensorSpec("x", "TYPE_FP32", (3, 4))], [TensorSpec("y", "TYPE_FP32", (2,))], 8)
    config = parse_pbtxt(text + '# trailing comment\nparameters { key: "a#b" value: { string_value: "1" } }\n')
    assert tensor_specs(config, "input") == [TensorSpec("x", "TYPE_FP32", (3, 4))]
    assert tensor_specs(config, "output") == [TensorSpec("y", "TYPE_FP32", (2,))]
    assert config["parameters"]["key"] == "a#b"
    repeated = parse_pbtxt(
        'input { name: "a" data_type: TYPE_FP32 dims: [1] } input { name: "b" data_type: TYPE_FP32 dims: [2] }'
    )
    assert [s.name for s in tensor_specs(repeated, "input")] == ["a", "b"]


def test_version_resolution_picks_newest_or_pinned(tmp_path):
    model_dir = tmp_path / "eye_state"
    for version in (1, 3, 12):
        (model_dir / str(version)).mkdir(parents=True)
        (model_dir / str(version) / "model.onnx").write_bytes(b"x")
    (model_dir / "7").mkdir()  # a version folder without a model does not count
    assert resolve_model_file(model_dir) == (model_dir / "12" / "model.onnx", 12)
    assert resolve_model_file(model_dir, 3) == (model_dir / "3" / "model.onnx", 3)
    with pytest.raises(FileNotFoundError, match=r"version 7 not in .* \(have \[1, 3, 12\]\)"):
        resolve_model_file(model_dir, 7)


# The mesh points that each eye's first 16 contour points refine (MediaPipe's order: outer corner, lower lid,
# inner corner, upper lid), from the model's own Landmarks2TransformMatrix options.
REFINED_MESH_POINTS = {
    "right": [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173],
    "left": [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398],
}


def test_face_landmarks_refines_the_eyes_where_its_mesh_put_them(video_frames):
    """The converted custom operators at work: each eye's contour comes from a feature-map crop placed by the
    first mesh guess and is mapped back by the crop's transform; wrong maths lands it elsewhere."""
    import asyncio

    import numpy as np

    from blinkstack.detector.front_end import embedded_models

    async def faces():
        models = embedded_models(MODEL_REPOSITORY)
        await models.start()
        stream, found = models.stream(), []
        for frame in video_frames[:40]:
            found.append((await stream.faces(frame))[0][0])
        await models.close()
        return found

    for face in asyncio.run(faces()):
        mesh = face.landmarks
        iod = float(np.linalg.norm(face.left_eye.centre - face.right_eye.centre))
        for side, indices in REFINED_MESH_POINTS.items():
            outline = getattr(face, f"{side}_eye").outline
            contour = np.vstack([outline.outer_corner, outline.lower_lid, outline.inner_corner, outline.upper_lid])
            distance = np.linalg.norm(contour - mesh[indices], axis=1) / iod
            # Measured on these frames: medians up to 0.023, every point within 0.04 of the eye distance.
            assert np.median(distance) < 0.05 and distance.max() < 0.1, (side, distance.round(3))
