"""Real-video blink evaluation: the data card's scoring rule, the ZJU folder reader, and a slice of
`blinkstack-train evaluate-video` through a real stack (Redis and three service processes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blinkstack_train import data, zju
from blinkstack_train.video_crops import eye_labels
from blinkstack_train.video_eval import evaluate_video
from tests.helpers import MODEL_REPOSITORY

ZJU_DEV = data.DEFAULT_DATA_DIR / "video" / "zju_dev"


def test_matching_follows_the_data_cards_rule_one_to_one():
    truth = [(10, 20), (40, 50)]
    # [a, b] matches [s, e] when a <= e + 1 and b >= s - 1: touching by one frame still counts.
    assert zju.match_blinks([(21, 25)], truth, 100).matched == 1
    assert zju.match_blinks([(22, 25)], truth, 100).matched == 0
    assert zju.match_blinks([(5, 9)], truth, 100).matched == 1
    # Two detections inside one blink: one match, one false detection.
    split = zju.match_blinks([(10, 12), (15, 20)], truth, 100)
    assert (split.matched, split.detected, split.truth) == (1, 2, 2)
    assert split.precision == 0.5 and split.recall == 0.5
    # A detection wholly after the annotated frames is ignored.
    assert zju.match_blinks([(40, 50), (120, 125)], truth, 100).detected == 1


def test_the_dev_folder_reads_as_its_data_card_says():
    clips = zju.load_clips(ZJU_DEV)
    assert len(clips) == 40 and len({c.subject for c in clips}) == 10
    assert sum(len(c.blinks) for c in clips) == 118
    assert sum(int((c.closed["le"] & c.closed["re"]).sum()) for c in clips) == 584
    folds = zju.subject_folds(clips, 2)
    assert folds[0].isdisjoint(folds[1]) and folds[0] | folds[1] == {c.subject for c in clips}
    assert {c.condition for c in clips} == set(zju.CONDITIONS)
    with pytest.raises(FileNotFoundError, match="not a ZJU-format folder"):
        zju.load_clips(ZJU_DEV / "videos")


def test_eye_labels_map_the_annotators_image_sides_to_the_subjects_eyes():
    clips = zju.load_clips(ZJU_DEV)
    # The annotation's image-right eye ("re") is the subject's left eye: where it alone is closed, the
    # subject's left eye is labelled closed and the right one is not labelled open (a blink is going on).
    one_sided = [(c, i) for c in clips for i in np.flatnonzero(c.closed["re"] & ~c.closed["le"])]
    assert one_sided, "the dev half has frames with only the image-right eye closed"
    for clip, frame in one_sided[:20]:
        assert eye_labels(clip, int(frame))[0] == 0 and eye_labels(clip, int(frame))[1] != 0
    clip = clips[0]
    assert eye_labels(clip, int(np.flatnonzero(clip.closed["re"] & clip.closed["le"])[0])) == (0, 0)
    assert eye_labels(clip, int(np.flatnonzero(~clip.in_blink)[0])) == (1, 1)
    assert eye_labels(clip, clip.annotated_frames + 5) == (-1, -1)


def test_evaluate_video_runs_real_clips_through_the_stack(tmp_path):
    # Subject 9's clips include s09_FBN, whose stream used to abort on a spurious edge face.
    report = evaluate_video(ZJU_DEV, MODEL_REPOSITORY, tmp_path, subjects={9}, progress=lambda x, **_: x)
    assert report["failed_streams"] == {}
    assert report["blink"]["truth"] == 14
    assert report["blink"]["recall"] >= 0.7 and report["blink"]["precision"] >= 0.9
    assert set(report["blink_by_condition"]) == set(zju.CONDITIONS.values())
    assert report["both_open_agreement"] >= 0.98
    assert report["frames"]["closed_frames"] > 0
    saved = json.loads((tmp_path / "video_eval.json").read_text())
    assert saved["blink"] == report["blink"] and saved["people"]["subjects"] == [9]
    assert (tmp_path / "timelines.png").stat().st_size > 10_000
    runs = json.loads((tmp_path / "video_runs.json").read_text())
    assert sorted(r["clip"] for r in runs) == ["s09_FBN", "s09_FNN", "s09_FTN", "s09_UNN"]


def test_evaluate_video_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(ValueError, match="at least two models"):
        evaluate_video(ZJU_DEV, MODEL_REPOSITORY, tmp_path, cv_models=[tmp_path / "a.onnx"])
    with pytest.raises(ValueError, match="no such model file"):
        evaluate_video(ZJU_DEV, MODEL_REPOSITORY, tmp_path, cv_models=[tmp_path / "a.onnx", tmp_path / "b.onnx"])
    with pytest.raises(ValueError, match="no clips"):
        evaluate_video(ZJU_DEV, MODEL_REPOSITORY, tmp_path, subjects={2})
    with pytest.raises(FileNotFoundError, match="not a ZJU-format folder"):
        evaluate_video(tmp_path, MODEL_REPOSITORY, tmp_path)
