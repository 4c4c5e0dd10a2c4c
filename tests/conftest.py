from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from training import data

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"


@pytest.fixture(scope="session")
def prepared() -> tuple[pd.DataFrame, data.DedupReport]:
    """The real eye data from ../shared/data, de-duplicated and split (CI has it beside the clone)."""
    assert (data.DEFAULT_DATA_DIR / "eyes" / "mrl.parquet").exists(), f"missing data in {data.DEFAULT_DATA_DIR}"
    return data.prepare()


@pytest.fixture(scope="session")
def real_crops(prepared) -> list[bytes]:
    """96 real PNG eye crops from held-out people: 24 per (dataset, class), a fixed choice."""
    frame, _ = prepared
    test = frame[frame["split"] == "test"].sort_values("content_sha1")
    return test.groupby(["dataset", "class_id"]).head(24)["image_png"].tolist()
