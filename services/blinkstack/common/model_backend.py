"""What every model backend (eye-state, face detector; embedded or Triton) reports and raises."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from blinkstack.common.errors import Unavailable

log = logging.getLogger(__name__)


class BackendUnavailable(Unavailable):
    """The backend cannot answer now (not ready, down, or out of time); the caller may retry later."""


class _Startable(Protocol):
    async def start(self) -> None: ...


async def start_or_await_ready(backend: _Startable) -> None:
    """Start a model backend; one that is not there yet (Triton may come up later) is only logged: the service
    serves anyway, its health NOT_SERVING until the backend's readiness check passes."""
    try:
        await backend.start()
    except BackendUnavailable as exc:
        log.warning("%s; health stays NOT_SERVING until it is ready", exc)


@dataclass(frozen=True)
class BackendInfo:
    name: str  # "onnxruntime" or "triton"
    model_name: str
    model_version: str
    max_batch_size: int
    sha256: str = ""
