"""A face model on embedded ONNX Runtime, read from the Triton model repository (the detector's default)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from blinkstack.common.model_backend import BackendInfo, BackendUnavailable
from blinkstack.common.model_repository import file_sha256, resolve_model_file
from blinkstack.common.onnx_runtime import create_session


class OnnxRuntimeBackend:
    """One session, one inference thread: frames from all streams queue for it, so CPU use stays bounded.

    At most `max_pending` calls wait; a call that cannot get a slot within its deadline fails with
    BackendUnavailable rather than piling up latency for every stream.
    """

    def __init__(
        self,
        repository: Path,
        model_name: str,
        version: int | None = None,
        threads: int = 0,
        providers: list[str] | None = None,
        max_pending: int = 64,
    ) -> None:
        self._model_dir = Path(repository) / model_name
        self._version, self._threads, self._providers = version, threads, providers
        self._pending = asyncio.Semaphore(max_pending)
        self._session: ort.InferenceSession | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._info = BackendInfo("onnxruntime", model_name, "", 1)

    @property
    def info(self) -> BackendInfo:
        return self._info

    async def start(self) -> None:
        model_file, version = resolve_model_file(self._model_dir, self._version)
        self._session = session = await asyncio.to_thread(create_session, model_file, self._threads, self._providers)
        self._outputs = [o.name for o in session.get_outputs()]
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._info.model_name)
        self._info = BackendInfo("onnxruntime", self._info.model_name, str(version), 1, file_sha256(model_file))

    async def ready(self) -> bool:
        return self._session is not None and self._executor is not None

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._session is not None, "infer before start"
        return dict(zip(self._outputs, self._session.run(self._outputs, inputs), strict=True))

    async def infer(self, inputs: dict[str, np.ndarray], timeout: float | None = None) -> dict[str, np.ndarray]:
        if not await self.ready():
            raise BackendUnavailable(f"the {self._info.model_name} model is not loaded")
        try:
            await asyncio.wait_for(self._pending.acquire(), timeout)
        except TimeoutError:
            raise BackendUnavailable(f"the {self._info.model_name} model stayed busy until the deadline") from None
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, inputs)
        finally:
            self._pending.release()

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._session = None
