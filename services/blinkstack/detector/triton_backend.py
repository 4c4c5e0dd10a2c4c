"""A face model on a Triton server (the same repository entry the embedded backend reads)."""

from __future__ import annotations

import numpy as np

from blinkstack.common.triton_client import TritonModelBackend


class TritonBackend(TritonModelBackend):
    async def infer(self, inputs: dict[str, np.ndarray], timeout: float | None = None) -> dict[str, np.ndarray]:
        return await self.model.infer(inputs, self.model.deadline(timeout))
