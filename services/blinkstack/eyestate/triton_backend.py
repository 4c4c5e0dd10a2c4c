"""Triton backend: the eye-state model served by a Triton Inference Server.

Batches larger than the model's `max_batch_size` are split and sent concurrently under one deadline.
"""

from __future__ import annotations

import asyncio

import numpy as np

from blinkstack.common import metrics
from blinkstack.common.triton_client import TritonModelBackend


class TritonBackend(TritonModelBackend):
    async def _infer_chunk(self, chunk: np.ndarray, deadline: float) -> np.ndarray:
        outputs = await self.model.infer({self.model.inputs[0]: chunk}, deadline)
        # Triton reports the configured dims ([N, 1] for a per-crop scalar); flatten to [N].
        return outputs[self.model.outputs[0]].reshape(-1)

    async def infer(self, images: np.ndarray, timeout: float | None = None) -> np.ndarray:
        deadline = self.model.deadline(timeout)
        if not self.model.inputs:
            await self.model.start()
        step = self.info.max_batch_size or len(images)
        chunks = [images[i : i + step] for i in range(0, len(images), step)]
        for chunk in chunks:
            metrics.EYESTATE_BATCH_SIZE.labels("triton").observe(len(chunk))
        return np.concatenate(await asyncio.gather(*(self._infer_chunk(c, deadline) for c in chunks)))
