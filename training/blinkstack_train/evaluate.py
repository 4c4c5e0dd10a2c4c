"""Evaluate a served ONNX model on held-out people, through the service's own preprocessing path.

MRL test subjects never appear in training or validation; the CEW hold-out faces neither. Reports F1 (open =
positive), macro F1, accuracy, ROC-AUC, precision/recall at the threshold, ECE, a threshold sweep, and the
MRL breakdown per subject, per sensor and with/without glasses. Writes eval.json and PNG plots.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from blinkstack.common.model_repository import resolve_model_file
from blinkstack.common.onnx_runtime import create_session, run_prob_open
from blinkstack.common.preprocess import preprocess_encoded
from blinkstack.tools.progress import progress
from blinkstack_train import data, plots
from blinkstack_train.metrics import classification_report, reliability, threshold_sweep

CHUNK = 2048


def resolve_model(path: str | Path) -> Path:
    """An ONNX file, or a model-repository folder (its newest version)."""
    path = Path(path)
    if path.is_dir():
        return resolve_model_file(path)[0] if (path / "config.pbtxt").exists() else path / "model.onnx"
    return path


def predict_rows(model_path: Path, rows: pd.DataFrame) -> np.ndarray:
    """P(open) for each row's PNG bytes, decoded and preprocessed exactly as the service does."""
    session = create_session(model_path)
    blobs = rows["image_png"].tolist()
    chunks = [
        run_prob_open(session, preprocess_encoded(blobs[i : i + CHUNK]))
        for i in progress(range(0, len(blobs), CHUNK), desc=f"evaluating {Path(model_path).name}", unit="chunk")
    ]
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float32)


def _breakdown(rows: pd.DataFrame, probs: np.ndarray, column: str, threshold: float) -> dict[str, dict]:
    out = {}
    for key, index in rows.groupby(column).indices.items():
        out[str(key)] = classification_report(rows["class_id"].to_numpy()[index], probs[index], threshold)
    return out


def report(rows: pd.DataFrame, probs: np.ndarray, threshold: float = 0.5) -> dict:
    """Metrics for MRL test rows and CEW test rows of `rows` (any subset of the test split)."""
    labels = rows["class_id"].to_numpy()
    is_mrl = (rows["dataset"] == "mrl").to_numpy()
    mrl_rows = rows[is_mrl].assign(glasses=lambda f: f["glasses"].map({0: "without", 1: "with"}))
    return {
        "threshold": threshold,
        "mrl_test": classification_report(labels[is_mrl], probs[is_mrl], threshold),
        "cew_test": classification_report(labels[~is_mrl], probs[~is_mrl], threshold),
        "mrl_per_subject": _breakdown(mrl_rows, probs[is_mrl], "person", threshold),
        "mrl_per_sensor": _breakdown(mrl_rows, probs[is_mrl], "sensor", threshold),
        "mrl_per_glasses": _breakdown(mrl_rows, probs[is_mrl], "glasses", threshold),
        "threshold_sweep": {
            "mrl_test": threshold_sweep(labels[is_mrl], probs[is_mrl]),
            "cew_test": threshold_sweep(labels[~is_mrl], probs[~is_mrl]),
        },
        "reliability": {
            "mrl_test": reliability(labels[is_mrl], probs[is_mrl]),
            "cew_test": reliability(labels[~is_mrl], probs[~is_mrl]),
        },
    }


def evaluate(model_path: Path, out_dir: Path, data_dir: Path = data.DEFAULT_DATA_DIR, threshold: float = 0.5) -> dict:
    frame, _ = data.prepare(data_dir)
    rows = frame[frame["split"] == "test"].reset_index(drop=True)
    probs = predict_rows(model_path, rows)
    result = {"model": str(model_path), **report(rows, probs, threshold)}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    labels, is_mrl = rows["class_id"].to_numpy(), (rows["dataset"] == "mrl").to_numpy()
    curves = {"MRL test": (labels[is_mrl], probs[is_mrl]), "CEW hold-out": (labels[~is_mrl], probs[~is_mrl])}
    plots.roc(curves, out / "roc.png")
    plots.reliability_diagram(curves, out / "reliability.png")
    plots.threshold_sweep(
        {"MRL": result["threshold_sweep"]["mrl_test"], "CEW": result["threshold_sweep"]["cew_test"]},
        out / "threshold_sweep.png",
    )
    plots.confusion_matrix(result["mrl_test"]["confusion"], "MRL test subjects", out / "confusion_mrl.png")
    plots.confusion_matrix(result["cew_test"]["confusion"], "CEW hold-out", out / "confusion_cew.png")
    return result
