"""What every model backend (eye-state, face detector; embedded or Triton) reports and raises."""

from __future__ import annotations

from dataclasses import dataclass


class BackendUnavailable(RuntimeError):
    """The backend cannot answer now (not ready, down, or out of time); the caller may retry later."""


@dataclass(frozen=True)
class BackendInfo:
    name: str  # "onnxruntime" or "triton"
    model_name: str
    model_version: str
    max_batch_size: int
    sha256: str = ""
