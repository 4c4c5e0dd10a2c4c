"""ONNX Runtime sessions for the project's models, with settings that suit small CPUs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

CPU_PROVIDER = "CPUExecutionProvider"


def create_session(
    model_path: str | Path, intra_op_threads: int = 0, providers: list[str] | None = None
) -> ort.InferenceSession:
    """An inference session; `intra_op_threads=0` means one thread per available core.

    The CPU provider is named explicitly: recent onnxruntime builds may list another provider first.
    Spinning is turned off because on a 2-core machine busy-waiting worker threads steal the core that the
    gRPC event loop and image decoding need between batches.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = providers or [CPU_PROVIDER]
    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise ValueError(f"ONNX Runtime providers {missing} unavailable here (have {ort.get_available_providers()})")
    return ort.InferenceSession(str(model_path), options, providers=providers)


def run_prob_open(session: ort.InferenceSession, images: np.ndarray, max_batch: int = 1024) -> np.ndarray:
    """[N, 1, H, W] float32 -> P(open) [N], in chunks of at most `max_batch`."""
    input_name = session.get_inputs()[0].name
    chunks = [
        session.run(None, {input_name: images[start : start + max_batch]})[0]
        for start in range(0, len(images), max_batch)
    ]
    return np.concatenate(chunks).reshape(-1) if chunks else np.empty(0, dtype=np.float32)


def run_readings(
    session: ort.InferenceSession, gate: ort.InferenceSession | None, images: np.ndarray, max_batch: int = 1024
) -> np.ndarray:
    """[N, 1, H, W] float32 -> [N, 2]: P(open) and the eye gate's P(eye) (NaN without a gate)."""
    readings = np.full((len(images), 2), np.nan, dtype=np.float32)
    readings[:, 0] = run_prob_open(session, images, max_batch)
    if gate is not None:
        readings[:, 1] = run_prob_open(gate, images, max_batch)  # the same shapes: one probability per crop
    return readings
