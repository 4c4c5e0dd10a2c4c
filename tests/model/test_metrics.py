from __future__ import annotations

import numpy as np
import pytest

from blinkstack_train.metrics import classification_report, expected_calibration_error, roc_auc, threshold_sweep


def test_auc_extremes_and_ties():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(labels, np.full(4, 0.5)) == 0.5


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    probs = np.round(rng.random(300), 2)  # with ties
    pos, neg = probs[labels == 1], probs[labels == 0]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg)
    )
    assert roc_auc(labels, probs) == pytest.approx(pairwise, abs=1e-12)


def test_report_counts_and_scores():
    labels = np.array([1, 1, 1, 0, 0, 0])
    probs = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1])
    r = classification_report(labels, probs, threshold=0.5)
    assert r["confusion"] == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3) and r["accuracy"] == pytest.approx(4 / 6)


def test_ece_zero_when_calibrated_and_large_when_not():
    labels = np.array([1] * 7 + [0] * 3)
    assert expected_calibration_error(labels, np.full(10, 0.7)) == pytest.approx(0.0)
    assert expected_calibration_error(labels, np.full(10, 0.1)) == pytest.approx(0.6)


def test_threshold_sweep_spans_thresholds():
    rows = threshold_sweep(np.array([0, 1, 1, 0]), np.array([0.2, 0.7, 0.9, 0.4]))
    assert rows[0]["threshold"] == pytest.approx(0.05) and rows[-1]["threshold"] == pytest.approx(0.95)
    assert max(r["f1"] for r in rows) == 1.0
