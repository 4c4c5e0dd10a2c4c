"""Export a trained checkpoint to the served ONNX model, behind a parity gate.

The graph: input `images` [N, 1, 32, 32] float32 (the shared preprocessing's output), output `prob_open` [N]
float32 (sigmoid inside), dynamic batch axis, BatchNorm folded into the convolutions, simplified with
onnxslim, one self-contained file. The export fails, and leaves no model behind, unless ONNX Runtime agrees
with PyTorch on real crops to within `PARITY_TOLERANCE`.
"""

from __future__ import annotations

import copy
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxslim
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from blinkstack.common.model_repository import (
    EYE_STATE_MODEL,
    MODEL_FILENAME,
    file_sha256,
    write_configs,
)
from blinkstack.common.onnx_runtime import create_session, run_prob_open
from blinkstack.common.preprocess import INPUT_SHAPE
from blinkstack_train import data
from blinkstack_train.loop import to_input
from blinkstack_train.models import ProbOpen, build_model, count_parameters
from blinkstack_train.train import load_split

PARITY_TOLERANCE = 1e-4
PARITY_CROPS = 2048
MAX_BATCH_SIZE = 128
OPSET = 18


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond the tolerance."""


def load_checkpoint(path: Path) -> nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(state["model_name"])
    model.load_state_dict(state["model"])
    return model.eval()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` with every Conv2d -> BatchNorm2d pair inside a Sequential folded into one Conv2d."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = nn.Identity()
    return folded


def to_onnx(model: nn.Module, path: Path, output_name: str = "prob_open") -> None:
    """Fold, export with a dynamic batch axis, simplify, and save as one file."""
    wrapper = ProbOpen(fold_batchnorm(model)).eval()
    example = torch.zeros(2, *INPUT_SHAPE)
    program = torch.onnx.export(
        wrapper,
        (example,),
        input_names=["images"],
        output_names=[output_name],
        dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1, max=65536)}},
        opset_version=OPSET,
        dynamo=True,
        verbose=False,
    )
    if program is None:  # dynamo=True always returns one; None is the legacy exporter's answer
        raise RuntimeError("torch.onnx.export returned no ONNX program")
    slim = onnxslim.slim(program.model_proto)
    onnx.checker.check_model(slim, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(slim, str(path), save_as_external_data=False)


def parity_check(model: nn.Module, onnx_path: Path, images: np.ndarray) -> float:
    """Max |ORT - PyTorch| over `images`; raises ParityError above the tolerance."""
    with torch.no_grad():
        expected = ProbOpen(model).eval()(torch.from_numpy(images)).numpy()
    got = run_prob_open(create_session(onnx_path), images)
    diff = float(np.max(np.abs(got - expected)))
    if got.shape != expected.shape or not diff <= PARITY_TOLERANCE:
        raise ParityError(f"ONNX Runtime vs PyTorch max |diff| {diff:.3g} > {PARITY_TOLERANCE} on {len(images)} crops")
    return diff


def install(onnx_path: Path, repository: Path, version: int) -> Path:
    """Copy the model into `<repository>/eye_state/<version>/` and (re)write its Triton configs."""
    model_dir = repository / EYE_STATE_MODEL
    target = model_dir / str(version) / MODEL_FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, target)
    write_configs(model_dir, MAX_BATCH_SIZE)
    return target


def quantize_int8(onnx_path: Path, out_path: Path, calibration: np.ndarray) -> Path:
    """Static INT8 (QDQ, per-channel weights) calibrated on real training crops."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(calibration, max(1, len(calibration) // 64)))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    prepared = out_path.with_suffix(".prep.onnx")
    quant_pre_process(str(onnx_path), str(prepared))
    quantize_static(
        str(prepared),
        str(out_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    prepared.unlink()
    return out_path


def export(
    checkpoint: Path,
    out: Path | None = None,
    data_dir: Path = data.DEFAULT_DATA_DIR,
    repository: Path | None = None,
    version: int = 1,
    int8: bool = False,
    parity_crops: int = PARITY_CROPS,
) -> dict:
    """Export, gate, optionally quantise and install; writes and returns `export.json` beside the model."""
    model = load_checkpoint(checkpoint)
    out = Path(out) if out else Path(checkpoint).with_name(MODEL_FILENAME)
    frame, _ = data.prepare(data_dir)
    # Parity on real crops from both domains: held-out validation crops, never augmented.
    crops = load_split(frame, "val", parity_crops, seed=0).crops
    images = to_input(crops).numpy()
    to_onnx(model, out)
    try:
        diff = parity_check(model, out, images)
    except ParityError:
        out.unlink(missing_ok=True)
        raise
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model_name": model.name,
        "onnx": str(out),
        "sha256": file_sha256(out),
        "bytes": out.stat().st_size,
        "parameters": count_parameters(model),
        "parity": {"crops": len(images), "max_abs_diff": diff, "tolerance": PARITY_TOLERANCE},
        "opset": OPSET,
    }
    if int8:
        from blinkstack_train.evaluate import evaluate

        int8_path = quantize_int8(
            out, out.with_name("model.int8.onnx"), to_input(load_split(frame, "train", 1024, 0).crops).numpy()
        )
        report = evaluate(int8_path, out.parent / "eval_int8", data_dir)
        result["int8"] = {
            "onnx": str(int8_path),
            "bytes": int8_path.stat().st_size,
            "mrl_test_f1": report["mrl_test"]["f1"],
            "cew_test_f1": report["cew_test"]["f1"],
        }
    if repository is not None:
        result["installed"] = str(install(out, Path(repository), version))
    (out.parent / "export.json").write_text(json.dumps(result, indent=2))
    return result
