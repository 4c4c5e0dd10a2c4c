"""The interface of the detector's model backends: any face model of the repository, on embedded ONNX Runtime
(`onnxruntime_backend.py`, the default) or on a Triton server (`triton_backend.py`).

Both read the model from the same Triton model repository entry. A backend takes the model's inputs by name and
returns all its outputs by name; what the tensors mean is the model adapter's business (`adapters/`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from blinkstack.common.model_backend import BackendInfo


class ModelBackend(Protocol):
    @property
    def info(self) -> BackendInfo: ...

    async def start(self) -> None: ...

    async def ready(self) -> bool: ...

    async def infer(self, inputs: dict[str, np.ndarray], timeout: float | None = None) -> dict[str, np.ndarray]: ...

    async def close(self) -> None: ...
