"""The committed model, evaluated for real: through the shared preprocessing, on people it never saw."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from blinkstack_train.evaluate import evaluate, predict_rows, report, resolve_model
from tests.helpers import MODEL_REPOSITORY

# Floors a little under the numbers in the model card, so a broken or swapped model fails CI.
MRL_TEST_F1_FLOOR = 0.975
CEW_TEST_F1_FLOOR = 0.97  # the served model: 0.9753; the issue 13 bar for the hidden-style cross-dataset check


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return evaluate(resolve_model(MODEL_REPOSITORY / "eye_state"), out), out


def test_f1_on_unseen_mrl_subjects_and_cew_faces(evaluation):
    result, _ = evaluation
    assert result["mrl_test"]["n"] > 10_000 and result["cew_test"]["n"] > 700
    assert result["mrl_test"]["f1"] >= MRL_TEST_F1_FLOOR
    assert result["cew_test"]["f1"] >= CEW_TEST_F1_FLOOR
    assert result["mrl_test"]["roc_auc"] >= 0.99
    assert set(result["mrl_per_sensor"]) == {"mrl-01", "mrl-02", "mrl-03"}
    assert set(result["mrl_per_glasses"]) == {"with", "without"}


def test_evaluation_writes_json_and_plots(evaluation):
    result, out = evaluation
    assert json.loads((out / "eval.json").read_text())["mrl_test"] == result["mrl_test"]
    for plot in ("roc.png", "reliability.png", "threshold_sweep.png", "confusion_mrl.png", "confusion_cew.png"):
        assert (out / plot).stat().st_size > 1000


def test_model_card_metrics_are_reproduced(evaluation):
    result, _ = evaluation
    card = json.loads((MODEL_REPOSITORY / "eye_state" / "model_card.json").read_text())
    for split in ("mrl_test", "cew_test"):
        assert result[split]["f1"] == pytest.approx(card["metrics"][split]["f1"], abs=1e-6)


def test_a_fixed_slice_per_subject_is_classified_well(prepared):
    """A small, fixed slice: up to 40 crops of each class per MRL test subject, and 200 CEW hold-out crops."""
    frame, _ = prepared
    test = frame[frame["split"] == "test"].sort_values("content_sha1")
    mrl = test[test["dataset"] == "mrl"].groupby(["person", "class_id"]).head(40)
    rows = pd.concat([mrl, test[test["dataset"] == "cew"].head(200)]).reset_index(drop=True)
    result = report(rows, predict_rows(resolve_model(MODEL_REPOSITORY / "eye_state"), rows))
    assert result["mrl_test"]["n"] == len(mrl) and result["cew_test"]["n"] == 200
    assert result["mrl_test"]["macro_f1"] >= 0.93  # measured 0.948: balanced per subject, so s0022 weighs more
    assert result["cew_test"]["macro_f1"] >= 0.93  # measured 0.960
