"""Eye-crop data preparation: load, de-duplicate, split by person, decode.

Splits are fixed and documented here, never drawn at random per run:

* MRL is split by subject. Test and validation subjects all contain both classes; the test subjects cover
  all three sensors (s0014 is one of only two subjects recorded with sensor 03), both genders and people
  with and without glasses. Everyone else trains.
* CEW is split by face (`group_id`), so the left and right eye of one face never straddle two splits:
  sha1(group_id) mod 100 < 60 -> train, < 70 -> val, else test (the cross-domain hold-out).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from blinkstack.common import paths
from blinkstack.common.preprocess import crop_to_gray_input, decode_image
from blinkstack.tools.progress import progress

# ../shared/data from the checkout's root, unless BLINKSTACK_DATA_DIR says otherwise.
DEFAULT_DATA_DIR = paths.data_dir()

MRL_TEST_SUBJECTS = ("s0001", "s0010", "s0014", "s0015", "s0017", "s0022", "s0031")
MRL_VAL_SUBJECTS = ("s0003", "s0018", "s0026", "s0027", "s0034")
CEW_TRAIN_PERCENT = 60
CEW_VAL_PERCENT = 10

SPLITS = ("train", "val", "test")
COLUMNS = ["image_png", "class_id", "dataset", "person", "sensor", "glasses", "content_sha1"]


@dataclass(frozen=True)
class DedupReport:
    rows_in: int
    duplicate_groups: int
    duplicate_rows_removed: int
    conflicting_groups: int
    conflicting_rows_dropped: int
    rows_out: int


def load_eyes(data_dir: Path = DEFAULT_DATA_DIR) -> pd.DataFrame:
    """Both eye datasets in one frame; `person` is the unit of splitting (MRL subject, CEW face)."""
    eyes = Path(data_dir) / "eyes"
    mrl = pd.read_parquet(eyes / "mrl.parquet", columns=["image_png", "class_id", "subject_id", "sensor", "glasses"])
    mrl = mrl.rename(columns={"subject_id": "person"}).assign(dataset="mrl", sensor="mrl-" + mrl["sensor"])
    cew = pd.read_parquet(eyes / "cew_dev.parquet", columns=["image_png", "class_id", "group_id"])
    # CEW carries no glasses annotation: -1 keeps it out of the with/without-glasses breakdown.
    cew = cew.rename(columns={"group_id": "person"}).assign(dataset="cew", sensor="cew-visible", glasses=-1)
    frame = pd.concat([mrl, cew], ignore_index=True)
    frame["content_sha1"] = [hashlib.sha1(blob).hexdigest() for blob in frame["image_png"]]
    frame["glasses"] = frame["glasses"].astype(int)
    frame["class_id"] = frame["class_id"].astype(int)
    return frame[COLUMNS]


def deduplicate(frame: pd.DataFrame) -> tuple[pd.DataFrame, DedupReport]:
    """Keep one copy of byte-identical images; drop every copy of an image whose copies disagree on the label."""
    groups = frame.groupby("content_sha1")["class_id"].agg(["size", "nunique"])
    duplicated = groups[groups["size"] > 1]
    conflicting = duplicated.index[duplicated["nunique"] > 1]
    is_conflict = frame["content_sha1"].isin(conflicting)
    kept = frame[~is_conflict].drop_duplicates("content_sha1", keep="first").reset_index(drop=True)
    agreeing = duplicated[duplicated["nunique"] == 1]
    report = DedupReport(
        rows_in=len(frame),
        duplicate_groups=len(duplicated),
        duplicate_rows_removed=int((agreeing["size"] - 1).sum()),
        conflicting_groups=len(conflicting),
        conflicting_rows_dropped=int(is_conflict.sum()),
        rows_out=len(kept),
    )
    return kept, report


def _cew_split(group_id: str) -> str:
    bucket = int(hashlib.sha1(group_id.encode()).hexdigest(), 16) % 100
    if bucket < CEW_TRAIN_PERCENT:
        return "train"
    return "val" if bucket < CEW_TRAIN_PERCENT + CEW_VAL_PERCENT else "test"


def _mrl_split(subject: str) -> str:
    if subject in MRL_TEST_SUBJECTS:
        return "test"
    return "val" if subject in MRL_VAL_SUBJECTS else "train"


def assign_splits(frame: pd.DataFrame) -> pd.DataFrame:
    split = [
        _mrl_split(person) if dataset == "mrl" else _cew_split(person)
        for dataset, person in zip(frame["dataset"], frame["person"], strict=True)
    ]
    return frame.assign(split=pd.Categorical(split, categories=SPLITS))


def prepare(data_dir: Path = DEFAULT_DATA_DIR) -> tuple[pd.DataFrame, DedupReport]:
    """Load, de-duplicate and split: the one entry point training and evaluation use."""
    frame, report = deduplicate(load_eyes(data_dir))
    return assign_splits(frame), report


def split_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows, classes, persons and sensors per (split, dataset)."""
    return (
        frame.groupby(["split", "dataset"], observed=True)
        .agg(
            rows=("class_id", "size"),
            open=("class_id", "sum"),
            closed=("class_id", lambda c: int((c == 0).sum())),
            persons=("person", "nunique"),
            sensors=("sensor", lambda s: ",".join(sorted(set(s)))),
        )
        .reset_index()
    )


def decode_crops(blobs: pd.Series | list[bytes], desc: str = "decoding crops") -> np.ndarray:
    """PNG bytes -> [N, H, W] uint8 at the model input size (the shared preprocessing, before normalisation)."""
    return np.stack([crop_to_gray_input(decode_image(blob)) for blob in progress(blobs, desc=desc, unit="crop")])


def describe(frame: pd.DataFrame, report: DedupReport) -> dict:
    return {
        "dedup": asdict(report),
        "mrl_test_subjects": list(MRL_TEST_SUBJECTS),
        "mrl_val_subjects": list(MRL_VAL_SUBJECTS),
        "cew_rule": f"sha1(group_id) % 100: <{CEW_TRAIN_PERCENT} train, "
        f"<{CEW_TRAIN_PERCENT + CEW_VAL_PERCENT} val, else test",
        "summary": split_summary(frame).to_dict(orient="records"),
    }
