"""Triton backend: the eye-state model (and the eye gate, when Triton serves it) on a Triton Inference Server.

Batches larger than the model's `max_batch_size` are split and sent concurrently under one deadline; each chunk
goes to both models at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Self

import numpy as np

from blinkstack.common import metrics
from blinkstack.common.backend_options import BackendOptions
from blinkstack.common.model_repository import EYE_GATE_MODEL
from blinkstack.common.triton_client import TritonModel, TritonModelBackend

log = logging.getLogger(__name__)


class TritonBackend(TritonModelBackend):
    gate: TritonModel | None = None

    @classmethod
    def from_options(cls, options: BackendOptions) -> Self:
        backend = super().from_options(options)
        backend.gate = TritonModel(
            options.triton_url,
            EYE_GATE_MODEL,
            timeout_s=options.triton_timeout_s,
            retries=options.triton_retries,
            tls=options.triton_tls,
        )
        return backend

    async def start(self) -> None:
        await super().start()
        if self.gate is not None and not await self.gate.ready():
            log.warning(
                "Triton serves no %r model: crops that are not eyes get OPEN/CLOSED, never UNKNOWN", EYE_GATE_MODEL
            )
            self.gate = None

    async def _run(self, model: TritonModel, chunk: np.ndarray, deadline: float) -> np.ndarray:
        outputs = await model.infer({model.inputs[0]: chunk}, deadline)
        # Triton reports the configured dims ([N, 1] for a per-crop scalar); flatten to [N].
        return outputs[model.outputs[0]].reshape(-1)

    async def _infer_chunk(self, chunk: np.ndarray, deadline: float) -> np.ndarray:
        readings = np.full((len(chunk), 2), np.nan, dtype=np.float32)
        if self.gate is None:
            readings[:, 0] = await self._run(self.model, chunk, deadline)
        else:
            readings[:, 0], readings[:, 1] = await asyncio.gather(
                self._run(self.model, chunk, deadline), self._run(self.gate, chunk, deadline)
            )
        return readings

    async def infer(self, images: np.ndarray, timeout: float | None = None) -> np.ndarray:
        deadline = self.model.deadline(timeout)
        if not self.model.inputs:
            await self.model.start()
        step = self.info.max_batch_size or len(images)
        chunks = [images[i : i + step] for i in range(0, len(images), step)]
        for chunk in chunks:
            metrics.EYESTATE_BATCH_SIZE.labels("triton").observe(len(chunk))
        return np.concatenate(await asyncio.gather(*(self._infer_chunk(c, deadline) for c in chunks)))

    async def close(self) -> None:
        if self.gate is not None:
            await self.gate.close()
        await super().close()
