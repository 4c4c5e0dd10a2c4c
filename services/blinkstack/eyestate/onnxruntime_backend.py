"""Embedded backend: ONNX Runtime in-process, reading the Triton model repository, with micro-batching.

Concurrent requests are merged into one session run: a single worker takes the first queued job, adds every
job already waiting (and, with `max_delay_s` > 0, those arriving within that delay) up to `max_batch` crops,
and runs them together on an executor thread, so the event loop keeps accepting requests meanwhile. The
session sees the micro-batch in chunks of `run_batch` crops: on a CPU, 32 crops keep the activations in
cache and classify about 1.7x more crops/s than one run of 256 (bench/bench_eye_state_models.py). With the
default delay of 0 a lone request never waits, while a busy server still batches whatever queued up during
the previous run. The queue is bounded: when it is full, callers wait (backpressure) instead of piling up work.

Each run also scores the crops with the eye gate (`<repository>/eye_gate`, when present): P(this is an eye).

Idle fast path: a request of at most `inline_max_crops` crops that arrives while no inference is queued or
running runs at once on the event-loop thread, on a second, single-threaded session. Handing a few crops to a
worker thread and back, and splitting a ~0.05 ms run across intra-op threads, costs more than the run itself,
and with nothing pending there is nothing to batch them with. Larger requests, and everything that arrives
while a batch is pending, take the batching path.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from blinkstack.common import metrics
from blinkstack.common.model_backend import BackendInfo, BackendUnavailable
from blinkstack.common.model_repository import (
    EYE_GATE_MODEL,
    EYE_STATE_MODEL,
    file_sha256,
    read_config,
    resolve_model_file,
)
from blinkstack.common.onnx_runtime import CPU_PROVIDER, create_session, run_readings

log = logging.getLogger(__name__)


@dataclass
class _Job:
    images: np.ndarray
    result: asyncio.Future


class OnnxRuntimeBackend:
    def __init__(
        self,
        repository: Path,
        model_name: str = EYE_STATE_MODEL,
        version: int | None = None,
        threads: int = 0,
        max_batch: int = 256,
        max_delay_s: float = 0.0,
        queue_size: int = 1024,
        providers: list[str] | None = None,
        inline_max_crops: int = 4,
        run_batch: int = 32,
        gate: bool = True,
    ) -> None:
        for name, value, lowest in (
            ("max_batch", max_batch, 1),
            ("run_batch", run_batch, 1),
            ("inline_max_crops", inline_max_crops, 0),
            ("max_delay_s", max_delay_s, 0),
            ("threads", threads, 0),
        ):
            if value < lowest:
                raise ValueError(f"{name} must be >= {lowest} (got {value})")
        self._model_dir = Path(repository) / model_name
        self._model_name, self._version, self._threads = model_name, version, threads
        self._max_batch, self._max_delay_s, self._queue_size = max_batch, max_delay_s, queue_size
        self._providers = providers
        self._inline_max_crops, self._run_batch = inline_max_crops, run_batch
        self._session: ort.InferenceSession | None = None
        self._inline_session: ort.InferenceSession | None = None
        self._gate_dir = Path(repository) / EYE_GATE_MODEL if gate else None
        self._gate: ort.InferenceSession | None = None
        self._inline_gate: ort.InferenceSession | None = None
        self._worker: asyncio.Task | None = None
        self._batch_sizes = metrics.EYESTATE_BATCH_SIZE.labels("onnxruntime")
        self._in_flight = 0  # infer calls on the batching path: queued, running or awaiting their result
        self.info = BackendInfo("onnxruntime", model_name, "", max_batch)

    async def start(self) -> None:
        model_file, version = resolve_model_file(self._model_dir, self._version)
        config = read_config(self._model_dir)
        self._session = session = await asyncio.to_thread(create_session, model_file, self._threads, self._providers)
        # CPU only: a GPU session is no faster for one crop, and must not block the event loop.
        if self._inline_max_crops > 0 and (self._providers or [CPU_PROVIDER]) == [CPU_PROVIDER]:
            if session.get_session_options().intra_op_num_threads == 1:
                self._inline_session = self._session
            else:
                self._inline_session = await asyncio.to_thread(create_session, model_file, 1, self._providers)
        await self._start_gate()
        max_batch = min(self._max_batch, int(config.get("max_batch_size", self._max_batch)) or self._max_batch)
        self.info = BackendInfo("onnxruntime", self._model_name, str(version), max_batch, file_sha256(model_file))
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(self._queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime")
        self._worker = asyncio.create_task(self._batch_loop(), name="onnxruntime-batcher")

    async def _start_gate(self) -> None:
        if self._gate_dir is None:
            return
        if not self._gate_dir.is_dir():
            log.warning(
                "no eye gate model at %s: crops that are not eyes get OPEN/CLOSED, never UNKNOWN", self._gate_dir
            )
            return
        gate_file, _ = resolve_model_file(self._gate_dir)
        self._gate = await asyncio.to_thread(create_session, gate_file, self._threads, self._providers)
        if self._inline_session is self._session:
            self._inline_gate = self._gate
        elif self._inline_session is not None:
            self._inline_gate = await asyncio.to_thread(create_session, gate_file, 1, self._providers)

    async def ready(self) -> bool:
        return self._session is not None and self._worker is not None and not self._worker.done()

    async def infer(self, images: np.ndarray, timeout: float | None = None) -> np.ndarray:
        if not await self.ready():
            raise BackendUnavailable("the ONNX Runtime backend is not running")
        if self._inline_session is not None and self._in_flight == 0 and len(images) <= self._inline_max_crops:
            self._batch_sizes.observe(len(images))
            return run_readings(self._inline_session, self._inline_gate, images)
        job = _Job(images, asyncio.get_running_loop().create_future())
        self._in_flight += 1
        try:
            try:
                self._queue.put_nowait(job)
            except asyncio.QueueFull:
                await asyncio.wait_for(self._queue.put(job), timeout)
            return await job.result
        except TimeoutError:
            raise BackendUnavailable("the inference queue stayed full until the deadline") from None
        finally:
            self._in_flight -= 1

    async def _collect(self, first: _Job) -> list[_Job]:
        jobs, crops = [first], len(first.images)
        deadline = asyncio.get_running_loop().time() + self._max_delay_s
        while crops < self._max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            jobs.append(job)
            crops += len(job.images)
        return jobs

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect(await self._queue.get())
            # Jobs whose caller gave up (deadline, cancellation) are dropped before running.
            jobs = [job for job in jobs if not job.result.done()]
            if not jobs:
                continue
            batch = jobs[0].images if len(jobs) == 1 else np.concatenate([job.images for job in jobs])
            self._batch_sizes.observe(len(batch))
            try:
                probs = await loop.run_in_executor(
                    self._executor, run_readings, self._session, self._gate, batch, self._run_batch
                )
            except Exception as exc:  # the session failed: every caller in the batch learns why
                for job in jobs:
                    if not job.result.done():
                        job.result.set_exception(exc)
                continue
            offset = 0
            for job in jobs:
                if not job.result.done():
                    job.result.set_result(probs[offset : offset + len(job.images)])
                offset += len(job.images)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._executor.shutdown(wait=True)
            self._worker = None
