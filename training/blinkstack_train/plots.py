"""PNG plots of training and evaluation results (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from blinkstack_train.metrics import reliability, roc_curve


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_curves(history: list[dict], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], label="val")
    loss_ax.set(xlabel="epoch", ylabel="weighted BCE", title="loss")
    loss_ax.legend()
    for key, label in (
        ("val_f1_mrl", "MRL val F1"),
        ("val_f1_cew", "CEW val F1"),
        ("val_score", "selection: MRL val macro-F1"),
    ):
        f1_ax.plot(epochs, [h[key] for h in history], label=label)
    f1_ax.set(xlabel="epoch", ylabel="F1", title="validation")
    f1_ax.legend()
    _save(fig, path)


def confusion_matrix(counts: dict[str, int], title: str, path: Path) -> None:
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["closed", "open"], yticklabels=["closed", "open"])
    ax.set(xlabel="predicted", ylabel="true", title=title)
    _save(fig, path)


def roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """`curves`: name -> (labels, probs)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for name, (labels, probs) in curves.items():
        fpr, tpr = roc_curve(labels, probs)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false open rate", ylabel="true open rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    _save(fig, path)


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for name, (labels, probs) in curves.items():
        r = reliability(labels, probs)
        ax.plot(r["mean_prob_open"], r["frac_open"], "o-", label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="mean predicted P(open)", ylabel="fraction open", title="calibration")
    ax.legend(loc="upper left")
    _save(fig, path)


def threshold_sweep(sweeps: dict[str, list[dict]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, rows in sweeps.items():
        ax.plot([r["threshold"] for r in rows], [r["f1"] for r in rows], label=f"{name} F1")
        ax.plot([r["threshold"] for r in rows], [r["accuracy"] for r in rows], "--", label=f"{name} accuracy")
    ax.set(xlabel="threshold on P(open)", ylabel="score", title="threshold sweep")
    ax.legend()
    _save(fig, path)


def image_grid(grid: np.ndarray, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(grid.shape[1] / 32, grid.shape[0] / 32))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255)
    ax.axis("off")
    _save(fig, path)
