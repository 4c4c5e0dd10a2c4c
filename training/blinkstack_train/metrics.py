"""Binary classification metrics on P(open), numpy only. Positive class = open (class_id 1)."""

from __future__ import annotations

import numpy as np


def confusion(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, int]:
    pred = probs >= threshold
    truth = labels.astype(bool)
    return {
        "tp": int((pred & truth).sum()),
        "fp": int((pred & ~truth).sum()),
        "tn": int((~pred & ~truth).sum()),
        "fn": int((~pred & truth).sum()),
    }


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def roc_curve(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-probs, kind="mergesort")
    sorted_probs, sorted_labels = probs[order], labels[order].astype(bool)
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_probs)), len(probs) - 1]
    tps = np.cumsum(sorted_labels)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    pos, neg = max(sorted_labels.sum(), 1), max((~sorted_labels).sum(), 1)
    return np.r_[0.0, fps / neg], np.r_[0.0, tps / pos]


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    if labels.min() == labels.max():
        return float("nan")  # undefined with one class
    fpr, tpr = roc_curve(labels, probs)
    return float(np.trapezoid(tpr, fpr))


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE of P(open) over equal-width bins, weighted by bin population."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.mean() * abs(probs[members].mean() - labels[members].mean())
    return float(error)


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> dict[str, list[float] | list[int]]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    centres, confidence, accuracy, counts = [], [], [], []
    for b in range(bins):
        members = index == b
        if members.any():
            centres.append(float((edges[b] + edges[b + 1]) / 2))
            confidence.append(float(probs[members].mean()))
            accuracy.append(float(labels[members].mean()))
            counts.append(int(members.sum()))
    return {"bin_centre": centres, "mean_prob_open": confidence, "frac_open": accuracy, "count": counts}


def classification_report(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict:
    """F1 (open positive), macro F1, accuracy, precision/recall, ROC-AUC, ECE, confusion counts."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    c = confusion(labels, probs, threshold)
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    f1 = _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])
    f1_closed = _ratio(2 * c["tn"], 2 * c["tn"] + c["fn"] + c["fp"])
    return {
        "n": len(labels),
        "n_open": int(labels.sum()),
        "threshold": threshold,
        "f1": f1,
        "f1_closed": f1_closed,
        "macro_f1": (f1 + f1_closed) / 2,
        "accuracy": _ratio(c["tp"] + c["tn"], len(labels)),
        "precision": precision,
        "recall": recall,
        "roc_auc": roc_auc(labels, probs),
        "ece": expected_calibration_error(labels, probs),
        "confusion": c,
    }


def threshold_sweep(labels: np.ndarray, probs: np.ndarray, steps: int = 19) -> list[dict[str, float]]:
    rows = []
    for threshold in np.linspace(0.05, 0.95, steps):
        r = classification_report(labels, probs, float(threshold))
        rows.append({k: r[k] for k in ("threshold", "f1", "macro_f1", "accuracy", "precision", "recall")})
    return rows
