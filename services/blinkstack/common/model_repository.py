"""The Triton model repository as both Triton and the embedded backend see it.

Layout: `<repository>/<model>/config.pbtxt` and `<repository>/<model>/<version>/model.onnx`. The training
export writes it; the eye-state service's embedded ONNX Runtime backend reads the very same files.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EYE_STATE_MODEL = "eye_state"
EYE_GATE_MODEL = "eye_gate"  # optional: is the crop an eye at all (the eye-state service's NOT_AN_EYE)
FACE_DETECTOR_MODEL = "face_detector"  # whole frames -> faces with eye points (its MODEL_CARD.md says which)
FACE_LANDMARK_MODEL = "face_landmarks"  # a face region -> eye corners, lids and irises (its MODEL_CARD.md)
MODEL_FILENAME = "model.onnx"

# Triton data types for the ONNX element types the project uses.
ONNX_TO_TRITON_DTYPE = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(uint8)": "TYPE_UINT8"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton name, e.g. TYPE_FP32
    dims: tuple[int, ...]  # without the batch axis


def render_config(
    name: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    max_batch_size: int,
    max_queue_delay_us: int = 500,
    gpu: bool = False,
    instance_count: int = 1,
) -> str:
    """config.pbtxt for Triton's ONNX Runtime backend with dynamic batching.

    `gpu=True` renders the GPU variant: instances on the GPU, and ONNX Runtime's TensorRT execution
    accelerator in FP16 with an engine cache (TensorRT builds engines on first load; the cache keeps restarts
    fast). Triton picks it with `--model-config-name=gpu` (file `configs/gpu.pbtxt`), so one repository
    serves CPU and GPU deployments.
    """

    def tensor(spec: TensorSpec) -> str:
        # Triton wants at least one dim per tensor; a per-item scalar ([N] with batching) is declared as
        # [1] and reshaped to [] so it matches the ONNX output exactly.
        dims = spec.dims or (1,)
        reshape = "\n    reshape: { shape: [ ] }" if not spec.dims else ""
        return (
            f'  {{\n    name: "{spec.name}"\n    data_type: {spec.data_type}\n'
            f"    dims: [ {', '.join(map(str, dims))} ]{reshape}\n  }}"
        )

    input_block = ",\n".join(tensor(s) for s in inputs)
    output_block = ",\n".join(tensor(s) for s in outputs)
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
        f"input [\n{input_block}\n]\n"
        f"output [\n{output_block}\n]\n"
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}\n"
        f"instance_group [\n  {{\n    count: {instance_count}\n    kind: {'KIND_GPU' if gpu else 'KIND_CPU'}\n  }}\n]\n"
        + (_TENSORRT if gpu else "")
    )


_TENSORRT = """optimization {
  execution_accelerators {
    gpu_execution_accelerator: [
      {
        name: "tensorrt"
        parameters { key: "precision_mode" value: "FP16" }
        parameters { key: "max_workspace_size_bytes" value: "1073741824" }
        parameters { key: "trt_engine_cache_enable" value: "1" }
        parameters { key: "trt_engine_cache_path" value: "/tmp/triton-trt-cache" }
      }
    ]
  }
}
"""
GPU_CONFIG_NAME = "gpu"


def onnx_io_specs(onnx_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX file as Triton sees them: batch axis dropped, symbolic dims as -1."""
    from blinkstack.common.onnx_runtime import create_session

    session = create_session(onnx_path, intra_op_threads=1)

    def spec(arg: Any) -> TensorSpec:
        dims = tuple(d if isinstance(d, int) else -1 for d in arg.shape[1:])
        return TensorSpec(arg.name, ONNX_TO_TRITON_DTYPE[arg.type], dims)

    return [spec(a) for a in session.get_inputs()], [spec(a) for a in session.get_outputs()]


def write_configs(model_dir: Path, max_batch_size: int, max_queue_delay_us: int = 500) -> None:
    """config.pbtxt (CPU) and configs/gpu.pbtxt (TensorRT) for the newest ONNX file under `model_dir`."""
    model_file, _ = resolve_model_file(model_dir)
    inputs, outputs = onnx_io_specs(model_file)
    name = Path(model_dir).name
    for gpu, path in ((False, Path(model_dir) / "config.pbtxt"), (True, config_path(model_dir, GPU_CONFIG_NAME))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_config(name, inputs, outputs, max_batch_size, max_queue_delay_us, gpu=gpu))


def config_path(model_dir: Path, config_name: str | None = None) -> Path:
    """Triton's `--model-config-name`: `configs/<name>.pbtxt`, or the default config.pbtxt."""
    model_dir = Path(model_dir)
    return model_dir / "configs" / f"{config_name}.pbtxt" if config_name else model_dir / "config.pbtxt"


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|#[^\n]*|[{}\[\]:,]|[^\s{}\[\]:,"#]+')


def _tokens(text: str) -> list[str]:
    return [token for token in _TOKEN.findall(text) if not token.startswith("#")]


def _scalar(token: str) -> Any:
    if token.startswith('"'):
        return token[1:-1]
    for cast in (int, float):
        try:
            return cast(token)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(token, token)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def parse_pbtxt(text: str) -> dict[str, Any]:
    """Protobuf text format -> nested dicts. Repeated fields and `[...]` lists become lists."""
    tokens = _tokens(text)
    pos = 0

    def value() -> Any:
        nonlocal pos
        token = tokens[pos]
        pos += 1
        if token == "{":
            return message("}")
        if token == "[":
            items = []
            while tokens[pos] != "]":
                items.append(value())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return items
        return _scalar(token)

    def message(end: str | None) -> dict[str, Any]:
        nonlocal pos
        fields: dict[str, Any] = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            item = value()
            if key in fields:  # a repeated field: collect every occurrence in one list
                fields[key] = _as_list(fields[key]) + _as_list(item)
            else:
                fields[key] = item
        pos += 1  # closing brace
        return fields

    return message(None)


def read_config(model_dir: Path) -> dict[str, Any]:
    return parse_pbtxt((Path(model_dir) / "config.pbtxt").read_text())


def tensor_specs(config: dict[str, Any], kind: str) -> list[TensorSpec]:
    """`kind` is "input" or "output"; dims are the shapes the model sees (reshape applied), batch axis excluded."""
    specs = []
    for entry in _as_list(config.get(kind, [])):
        dims = entry.get("reshape", {}).get("shape", entry["dims"])
        specs.append(TensorSpec(entry["name"], entry["data_type"], tuple(dims)))
    return specs


def available_versions(model_dir: Path) -> list[int]:
    return sorted(
        int(p.name)
        for p in Path(model_dir).iterdir()
        if p.is_dir() and p.name.isdigit() and (p / MODEL_FILENAME).exists()
    )


def resolve_model_file(model_dir: Path, version: int | None = None) -> tuple[Path, int]:
    """The ONNX file of a pinned version, or of the newest one (Triton's default `latest` policy)."""
    versions = available_versions(model_dir)
    if not versions:
        raise FileNotFoundError(f"no <version>/{MODEL_FILENAME} under {model_dir}")
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise FileNotFoundError(f"version {version} not in {model_dir} (have {versions})")
    return Path(model_dir) / str(version) / MODEL_FILENAME, version


def file_sha256(path: Path) -> str:
    """The identity of a served model file (model card, GetModelInfo)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
