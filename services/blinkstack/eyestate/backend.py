"""The small interface both eye-state backends implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class BackendUnavailable(RuntimeError):
    """The backend cannot answer now (not ready, down, or out of time); the caller may retry later."""


@dataclass(frozen=True)
class BackendInfo:
    name: str  # "onnxruntime" or "triton"
    model_name: str
    model_version: str
    max_batch_size: int
    sha256: str = ""


class EyeStateBackend(Protocol):
    info: BackendInfo

    async def start(self) -> None:
        """Load or connect; may raise BackendUnavailable when the backend is not there yet."""

    async def ready(self) -> bool:
        """Cheap readiness check used by the health service."""

    async def infer(self, images: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """[N, 1, H, W] float32 (the shared preprocessing's output) -> P(open) [N] float32."""

    async def close(self) -> None: ...
