"""The small interface both eye-state backends implement."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from blinkstack.common.model_backend import BackendInfo


class EyeStateBackend(Protocol):
    @property
    def info(self) -> BackendInfo:
        """What is loaded: read-only to the service (a backend may replace it when it starts)."""

    async def start(self) -> None:
        """Load or connect; may raise BackendUnavailable when the backend is not there yet."""

    async def ready(self) -> bool:
        """Cheap readiness check used by the health service."""

    async def infer(self, images: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """[N, 1, H, W] float32 (the shared preprocessing's output) -> [N, 2] float32: P(open), and the eye
        gate's P(eye) (NaN when the backend has no gate model)."""

    async def close(self) -> None: ...
