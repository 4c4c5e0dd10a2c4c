from __future__ import annotations

from blinkstack_train import data


def test_no_person_in_two_splits(prepared):
    frame, _ = prepared
    splits_per_person = frame.groupby(["dataset", "person"])["split"].nunique()
    assert splits_per_person.max() == 1


def test_fixed_subject_lists_are_disjoint_and_real(prepared):
    frame, _ = prepared
    test, val = set(data.MRL_TEST_SUBJECTS), set(data.MRL_VAL_SUBJECTS)
    assert not test & val
    mrl_subjects = set(frame.loc[frame["dataset"] == "mrl", "person"])
    assert test | val <= mrl_subjects
    assert set(frame.loc[frame["split"] == "test", "person"]) & mrl_subjects == test


def test_every_val_and_test_subject_has_both_classes(prepared):
    frame, _ = prepared
    held_out = frame[(frame["dataset"] == "mrl") & (frame["split"] != "train")]
    assert (held_out.groupby("person")["class_id"].nunique() == 2).all()
    for split in ("val", "test"):
        cew = frame[(frame["dataset"] == "cew") & (frame["split"] == split)]
        assert set(cew["class_id"]) == {0, 1}


def test_test_subjects_cover_every_sensor(prepared):
    frame, _ = prepared
    assert set(frame.loc[(frame["dataset"] == "mrl") & (frame["split"] == "test"), "sensor"]) == {
        "mrl-01",
        "mrl-02",
        "mrl-03",
    }


def test_duplicates_removed_and_conflicts_dropped(prepared):
    frame, report = prepared
    raw = data.load_eyes()
    assert frame["content_sha1"].is_unique
    labels_per_image = raw.groupby("content_sha1")["class_id"].nunique()
    conflicting = set(labels_per_image[labels_per_image > 1].index)
    # As documented for MRL: 13 byte-identical pairs, 11 of them with opposite labels.
    assert (report.duplicate_groups, report.conflicting_groups) == (13, 11)
    assert report.conflicting_rows_dropped == 22 and report.duplicate_rows_removed == 2
    assert not conflicting & set(frame["content_sha1"])
    assert report.rows_out == len(frame) == len(raw) - 24


def test_split_summary_counts_add_up(prepared):
    frame, _ = prepared
    summary = data.split_summary(frame)
    assert summary["rows"].sum() == len(frame)
    assert (summary["open"] + summary["closed"] == summary["rows"]).all()
