"""What several test files share: paths, real servers, request builders and engine timelines.

Test files import from here, never from each other; fixtures live in the conftest.py of their tier.
"""

from __future__ import annotations

from pathlib import Path

from grpc_health.v1 import health_pb2

from blinkstack.common import paths

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
DATA_DIR = paths.data_dir()
VIDEO = DATA_DIR / "video" / "eyeblink8_v8_windows.mp4"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
