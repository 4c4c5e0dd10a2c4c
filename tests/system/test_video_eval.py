"""Real-video blink evaluation: the data card's scoring rule, the ZJU folder reader, and a slice of
`blinkstack-train evaluate-video` through a real stack (Redis and three service processes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blinkstack.tools.watch import FrameEncoding
from blinkstack_train import data, engine_replay, landmark_recipe, zju
from blinkstack_train.video_crops import eye_labels
from blinkstack_train.video_eval import ClipRun, bootstrap_f1_interval, evaluate_video, score_runs
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
    # Subject 9's clips include s09_FBN, whose stream used to abort on a spurious edge face. Sent twice: as
    # JPEG at quality 75 and as raw pixels.
    encodings = [FrameEncoding.parse("jpeg75"), FrameEncoding.parse("raw")]
    report = evaluate_video(
        ZJU_DEV,
        MODEL_REPOSITORY,
        tmp_path,
        subjects={9},
        progress=lambda x, **_: x,
        encodings=encodings,
        lopo_grid={"blink_min_ms": [50.0, 30.0]},
    )
    assert set(report["by_encoding"]) == {"jpeg75", "raw"}
    f1s = {name: score["blink"]["f1"] for name, score in report["by_encoding"].items()}
    assert report["encoding"] == min(f1s, key=f1s.get) and report["blink"]["f1"] == min(f1s.values())
    for score in report["by_encoding"].values():
        low, high = score["blink_f1_ci95"]
        assert score["failed_streams"] == {} and score["blink"]["truth"] == 14
        # One person: every resample is that person, so the interval is the point.
        assert low == high == score["blink"]["f1"]
    assert report["failed_streams"] == {}
    # The engine replayed on the recorded readings gives the stack's own events, clip for clip; with one person
    # there is no one else to choose on, so the defaults (the grid's first values) judge them.
    for name, score in report["lopo"]["by_encoding"].items():
        assert score["replay_matches_stack"] == "4/4 clips"
        assert score["constants_by_person"] == {"9": {"blink_min_ms": 50.0}}
        assert score["blink"] == report["by_encoding"][name]["blink"]
    assert report["blink"]["truth"] == 14
    assert report["blink"]["recall"] >= 0.7 and report["blink"]["precision"] >= 0.9
    assert set(report["blink_by_condition"]) == set(zju.CONDITIONS.values())
    assert report["both_open_agreement"] >= 0.98
    assert report["frames"]["closed_frames"] > 0
    saved = json.loads((tmp_path / "video_eval.json").read_text())
    assert saved["blink"] == report["blink"] and saved["people"]["subjects"] == [9]
    assert (tmp_path / "timelines.png").stat().st_size > 10_000
    runs = json.loads((tmp_path / "video_runs.json").read_text())
    assert sorted((r["encoding"], r["clip"]) for r in runs) == [
        (e, c) for e in ("jpeg75", "raw") for c in ("s09_FBN", "s09_FNN", "s09_FTN", "s09_UNN")
    ]
    # Each face of each frame carries both eyes' lid apertures from the landmark front end.
    apertures = [f[5] for r in runs for frame in r["faces"] for f in frame] + [
        f[6] for r in runs for frame in r["faces"] for f in frame
    ]
    assert apertures and np.isfinite(apertures).mean() > 0.9 and 0.05 < np.nanmedian(apertures) < 0.6


def test_bootstrap_interval_resamples_people_and_folds_report_their_own_f1():
    by_subject = {1: zju.Match(10, 10, 10), 3: zju.Match(10, 10, 5)}  # F1 1.0 and 0.5
    low, high = bootstrap_f1_interval(by_subject)
    assert low == 0.5 and high == 1.0  # resamples of only one person happen at both ends
    assert bootstrap_f1_interval(by_subject) == [low, high]  # seeded: the same report twice
    # Person 1's blinks all found, person 3's none: each fold's F1 is its own.
    clips = zju.load_clips(ZJU_DEV, {1, 3})
    runs = [
        ClipRun(c.name, c.subject, c.condition, 30.0, events=[("BLINK", "ENDED", 1, s, e) for s, e in c.blinks])
        if c.subject == 1
        else ClipRun(c.name, c.subject, c.condition, 30.0)
        for c in clips
    ]
    scores = score_runs(clips, runs, [{1}, {3}])
    assert scores["blink_f1_by_fold"] == [1.0, 0.0] and scores["blink_f1_fold_spread"] == 1.0
    assert scores["blink_f1_ci95"][0] == 0.0 and scores["blink_f1_ci95"][1] == 1.0


def test_evaluate_video_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(ValueError, match="not an engine setting"):
        engine_replay.parse_grid(["blink_min=30"])
    with pytest.raises(ValueError, match="expected NAME=V1,V2"):
        engine_replay.parse_grid(["blink_min_ms=fast"])
    assert engine_replay.parse_grid(["blink_min_ms=50,30"]) == {"blink_min_ms": [50.0, 30.0]}
    with pytest.raises(ValueError, match="named twice"):
        evaluate_video(ZJU_DEV, MODEL_REPOSITORY, tmp_path, encodings=[FrameEncoding(75), FrameEncoding(75)])
    with pytest.raises(ValueError, match="at least two models"):
        evaluate_video(ZJU_DEV, MODEL_REPOSITORY, tmp_path, cv_models=[tmp_path / "a.onnx"])
    with pytest.raises(ValueError, match="no such model file"):
        evaluate_video(ZJU_DEV, MODEL_REPOSITORY, tmp_path, cv_models=[tmp_path / "a.onnx", tmp_path / "b.onnx"])
    with pytest.raises(ValueError, match="no clips"):
        evaluate_video(ZJU_DEV, MODEL_REPOSITORY, tmp_path, subjects={2})
    with pytest.raises(FileNotFoundError, match="not a ZJU-format folder"):
        evaluate_video(tmp_path, MODEL_REPOSITORY, tmp_path)


def test_the_landmark_recipe_reads_eye_aspect_ratios_and_runs_below_its_threshold():
    mesh = np.zeros((1, 468, 2))
    for eye, shift in ((landmark_recipe.RIGHT_EYE, 0), (landmark_recipe.LEFT_EYE, 40)):
        # p1..p6: corners 10 apart, each lid pair 2 apart: EAR (2 + 2) / (2 * 10) = 0.2.
        mesh[0, list(eye)] = [(0, 0), (3, -1), (7, -1), (10, 0), (7, 1), (3, 1)]
        mesh[0, list(eye), 0] += shift
    assert landmark_recipe.eye_aspect_ratio(mesh)[0] == pytest.approx(0.2)
    ear = np.array([0.3, 0.1, 0.1, 0.3, 0.1, 0.3, 0.1, np.nan, 0.1, 0.1])
    # A single low frame is no blink; a missing face ends a run.
    assert landmark_recipe.runs_below(ear, 0.21) == [(1, 2), (8, 9)]
    reading = landmark_recipe.read_clip(ear)
    assert reading.blinks["fixed"] == [(1, 2), (8, 9)]
    # Adaptive: below 0.75 of the clip's median (0.1 here), so nothing is below it.
    assert reading.blinks["adaptive"] == [] and not reading.closed["adaptive"].any()
