"""Event accuracy: the scoring tool, and the blink engine on timelines of real crops through the real model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from blinkstack.tools.scoring import Span, load_spans, score
from blinkstack_train.event_eval import evaluate_events
from tests.helpers import MODEL_REPOSITORY


def test_matching_is_one_to_one_by_temporal_overlap():
    truth = [Span("BLINK", 0, 200), Span("BLINK", 1000, 1200), Span("LONG_CLOSURE", 5000, 7000)]
    detected = [
        Span("BLINK", 50, 230),  # matches the first
        Span("BLINK", 60, 190),  # a second detection of the same blink: a false positive
        Span("BLINK", 1190, 1400),  # overlaps the second by 10 of 200: below the 30 % needed
        Span("WINK_LEFT", 3000, 3100),  # nothing to match
    ]
    report = score(detected, truth)
    assert report["BLINK"] == {"matched": 1, "detected": 3, "truth": 2, "precision": 1 / 3, "recall": 0.5}
    assert report["LONG_CLOSURE"]["recall"] == 0.0 and report["LONG_CLOSURE"]["precision"] == 1.0
    assert report["WINK_LEFT"]["precision"] == 0.0


def test_spans_load_from_blink_event_json(tmp_path):
    path = tmp_path / "events.json"
    path.write_text(json.dumps([{"type": "EVENT_TYPE_BLINK", "start_us": "10", "end_us": 20, "id": "1-0"}]))
    assert load_spans(path) == [Span("BLINK", 10, 20)]


@pytest.fixture(scope="module")
def report():
    return evaluate_events(MODEL_REPOSITORY)


def test_blinks_on_real_crop_timelines_of_unseen_people(report):
    blink = report["overall"]["BLINK"]
    assert report["timelines"] == 7 and blink["truth"] >= 80
    assert blink["precision"] >= 0.95 and blink["recall"] >= 0.95, blink


def test_long_closures_are_found_and_never_invented(report):
    assert report["long_closures_where_none_was_made"] == 0
    assert report["overall"]["LONG_CLOSURE"]["recall"] == 1.0


def test_score_events_cli(tmp_path):
    truth, detected = tmp_path / "truth.json", tmp_path / "detected.json"
    truth.write_text(json.dumps([{"type": "BLINK", "start_us": 0, "end_us": 200}]))
    detected.write_text(json.dumps([{"type": "EVENT_TYPE_BLINK", "start_us": 20, "end_us": 210, "id": "1-0"}]))
    out = subprocess.run(
        [sys.executable, "-m", "blinkstack.cli", "score-events", str(truth), str(detected)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "BLINK" in out and "precision 1.000  recall 1.000" in out
