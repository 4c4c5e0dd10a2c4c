"""Triton backend: the same model served by a Triton Inference Server over KServe v2 gRPC (asyncio client).

The model's config (input/output names, `max_batch_size`) is read from the server, so batches larger than the
model accepts are split and sent concurrently. Calls carry a deadline; UNAVAILABLE answers are retried with
exponential backoff while the deadline allows. The backend connects lazily: a service started before Triton
reports NOT_SERVING until Triton and the model are ready.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException

from blinkstack.common import metrics
from blinkstack.common.model_repository import EYE_STATE_MODEL
from blinkstack.eyestate.backend import BackendInfo, BackendUnavailable

_UNAVAILABLE = "StatusCode.UNAVAILABLE"
_DEADLINE_EXCEEDED = "StatusCode.DEADLINE_EXCEEDED"


class TritonBackend:
    def __init__(
        self,
        url: str,
        model_name: str = EYE_STATE_MODEL,
        version: str = "",
        timeout_s: float = 2.0,
        retries: int = 3,
        backoff_s: float = 0.05,
    ) -> None:
        self._url, self._model, self._version = url, model_name, version
        self._timeout_s, self._retries, self._backoff_s = timeout_s, retries, backoff_s
        self._client: triton.InferenceServerClient | None = None  # made inside the serving event loop
        self._input = self._output = ""
        self.info = BackendInfo("triton", model_name, version, 0)

    @property
    def client(self) -> triton.InferenceServerClient:
        if self._client is None:
            self._client = triton.InferenceServerClient(self._url)
        return self._client

    async def _load(self) -> None:
        response = await self.client.get_model_config(
            self._model, self._version, as_json=True, client_timeout=self._timeout_s
        )
        config = response["config"]
        metadata = await self.client.get_model_metadata(
            self._model, self._version, as_json=True, client_timeout=self._timeout_s
        )
        self._input, self._output = config["input"][0]["name"], config["output"][0]["name"]
        version = self._version or max(metadata.get("versions", ["0"]), key=int)
        self.info = BackendInfo("triton", self._model, version, int(config.get("max_batch_size", 0)))

    async def start(self) -> None:
        if not await self.ready():
            raise BackendUnavailable(f"Triton at {self._url} has no ready model {self._model!r}")

    async def ready(self) -> bool:
        try:
            if not await self.client.is_model_ready(self._model, self._version, client_timeout=self._timeout_s):
                return False
            if not self._input:
                await self._load()
            return True
        except InferenceServerException:
            return False

    async def _infer_chunk(self, chunk: np.ndarray, deadline: float) -> np.ndarray:
        for attempt in range(self._retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            request = triton.InferInput(self._input, list(chunk.shape), "FP32")
            request.set_data_from_numpy(chunk)
            try:
                result = await self.client.infer(
                    self._model,
                    [request],
                    model_version=self._version,
                    outputs=[triton.InferRequestedOutput(self._output)],
                    client_timeout=remaining,
                )
                # Triton reports the configured dims ([N, 1] for a per-crop scalar); flatten to [N].
                return result.as_numpy(self._output).reshape(-1)
            except InferenceServerException as exc:
                if exc.status() == _UNAVAILABLE and attempt < self._retries:
                    await asyncio.sleep(min(self._backoff_s * 2**attempt, max(0.0, deadline - time.monotonic())))
                    continue
                if exc.status() in (_UNAVAILABLE, _DEADLINE_EXCEEDED):
                    raise BackendUnavailable(f"Triton at {self._url}: {exc.message()}") from None
                raise
        raise BackendUnavailable(f"Triton at {self._url}: deadline exceeded")

    async def infer(self, images: np.ndarray, timeout: float | None = None) -> np.ndarray:
        if not self._input and not await self.ready():
            raise BackendUnavailable(f"Triton at {self._url} has no ready model {self._model!r}")
        deadline = time.monotonic() + (timeout if timeout is not None else self._timeout_s)
        step = self.info.max_batch_size or len(images)
        chunks = [images[i : i + step] for i in range(0, len(images), step)]
        for chunk in chunks:
            metrics.EYESTATE_BATCH_SIZE.labels("triton").observe(len(chunk))
        return np.concatenate(await asyncio.gather(*(self._infer_chunk(c, deadline) for c in chunks)))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
