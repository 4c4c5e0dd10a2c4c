"""One model on a Triton Inference Server over KServe v2 gRPC (asyncio client), as the backends use it.

The model's config (input/output names, `max_batch_size`) is read from the server once the model is ready.
Calls carry a deadline; UNAVAILABLE answers are retried with exponential backoff while the deadline allows;
running out of time or retries raises `BackendUnavailable`. The client connects lazily, inside the serving event
loop, so a service started before Triton reports NOT_SERVING until Triton and the model are ready.
"""

from __future__ import annotations

import asyncio
import time
from typing import Self

import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException

from blinkstack.common.backend_options import BackendOptions, TritonTls
from blinkstack.common.model_backend import BackendInfo, BackendUnavailable

_UNAVAILABLE = "StatusCode.UNAVAILABLE"
_DEADLINE_EXCEEDED = "StatusCode.DEADLINE_EXCEEDED"


class TritonModel:
    def __init__(
        self,
        url: str,
        model_name: str,
        version: str = "",
        timeout_s: float = 2.0,
        retries: int = 3,
        backoff_s: float = 0.05,
        tls: TritonTls | None = None,
    ) -> None:
        self.url, self.model_name, self._version, self.tls = url, model_name, version, tls
        self.timeout_s, self._retries, self._backoff_s = timeout_s, retries, backoff_s
        self._client: triton.InferenceServerClient | None = None
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.info = BackendInfo("triton", model_name, version, 0)

    @property
    def client(self) -> triton.InferenceServerClient:
        if self._client is None:
            tls = {}
            if self.tls is not None:  # tritonclient reads the PEM files itself
                tls = {"ssl": True, "root_certificates": self.tls.ca}
                tls |= {"private_key": self.tls.key or None, "certificate_chain": self.tls.cert or None}
            self._client = triton.InferenceServerClient(self.url, **tls)
        return self._client

    async def _load(self) -> None:
        config = (
            await self.client.get_model_config(
                self.model_name, self._version, as_json=True, client_timeout=self.timeout_s
            )
        )["config"]
        metadata = await self.client.get_model_metadata(
            self.model_name, self._version, as_json=True, client_timeout=self.timeout_s
        )
        self.inputs = [entry["name"] for entry in config["input"]]
        self.outputs = [entry["name"] for entry in config["output"]]
        version = self._version or max(metadata.get("versions", ["0"]), key=int)
        self.info = BackendInfo("triton", self.model_name, version, int(config.get("max_batch_size", 0)))

    async def ready(self) -> bool:
        try:
            if not await self.client.is_model_ready(self.model_name, self._version, client_timeout=self.timeout_s):
                return False
            if not self.inputs:
                await self._load()
            return True
        except InferenceServerException:
            return False

    async def start(self) -> None:
        if not await self.ready():
            raise BackendUnavailable(f"Triton at {self.url} has no ready model {self.model_name!r}")

    def deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (timeout if timeout is not None else self.timeout_s)

    async def infer(self, arrays: dict[str, np.ndarray], deadline: float) -> dict[str, np.ndarray]:
        """One inference call with FP32 inputs by name -> every output by name, retried until `deadline`."""
        if not self.inputs and not await self.ready():
            raise BackendUnavailable(f"Triton at {self.url} has no ready model {self.model_name!r}")
        for attempt in range(self._retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            requests = []
            for name, array in arrays.items():
                request = triton.InferInput(name, list(array.shape), "FP32")
                request.set_data_from_numpy(array)
                requests.append(request)
            try:
                result = await self.client.infer(
                    self.model_name,
                    requests,
                    model_version=self._version,
                    outputs=[triton.InferRequestedOutput(name) for name in self.outputs],
                    client_timeout=remaining,
                )
                return {name: result.as_numpy(name) for name in self.outputs}
            except InferenceServerException as exc:
                if exc.status() == _UNAVAILABLE and attempt < self._retries:
                    await asyncio.sleep(min(self._backoff_s * 2**attempt, max(0.0, deadline - time.monotonic())))
                    continue
                if exc.status() in (_UNAVAILABLE, _DEADLINE_EXCEEDED):
                    raise BackendUnavailable(f"Triton at {self.url}: {exc.message()}") from None
                raise
        raise BackendUnavailable(f"Triton at {self.url}: deadline exceeded")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


class TritonModelBackend:
    """What every Triton-backed model backend shares: its TritonModel's lifecycle and info.

    Subclasses add only `infer`, shaping requests and results for their model.
    """

    def __init__(self, model: TritonModel) -> None:
        self.model = model

    @classmethod
    def from_options(cls, options: BackendOptions) -> Self:
        model = TritonModel(
            options.triton_url,
            options.model_name,
            options.version,
            options.triton_timeout_s,
            options.triton_retries,
            tls=options.triton_tls,
        )
        return cls(model)

    @property
    def info(self) -> BackendInfo:
        return self.model.info

    async def start(self) -> None:
        await self.model.start()

    async def ready(self) -> bool:
        return await self.model.ready()

    async def close(self) -> None:
        await self.model.close()
