"""Prometheus metrics of all blinkstack services (one registry per process, scraped on the metrics port)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

RPC_REQUESTS = Counter(
    "blinkstack_rpc_requests_total", "RPCs handled, by service, method and status code", ["service", "method", "code"]
)
RPC_LATENCY = Histogram(
    "blinkstack_rpc_latency_seconds",
    "Server-side RPC latency",
    ["service", "method"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
EYESTATE_CROPS = Counter("blinkstack_eyestate_crops_total", "Eye crops classified (rate() gives crops/s)", ["backend"])
EYESTATE_BATCH_SIZE = Histogram(
    "blinkstack_eyestate_batch_size",
    "Crops per backend inference call (after micro-batching)",
    ["backend"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)

DETECTOR_FRAMES = Counter("blinkstack_detector_frames_total", "Frames run through the face detector (both RPCs)")
DETECTOR_FACES = Histogram(
    "blinkstack_detector_faces_per_frame", "Faces found per frame", buckets=(0, 1, 2, 3, 4, 6, 8, 16, 32)
)
DETECTOR_STAGE_SECONDS = Histogram(
    "blinkstack_detector_stage_seconds",
    "Time per detector stage and frame: prepare (colour, resize), infer (face model), decode (maps -> faces); "
    "flow (landmark optical flow, on frames tracked between detections)",
    ["stage"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
)

AGGREGATOR_OBSERVATIONS = Counter(
    "blinkstack_aggregator_observations_total", "Eye observations fed to the blink engine (accepted, not duplicates)"
)
AGGREGATOR_EVENTS = Counter("blinkstack_aggregator_events_total", "Events emitted", ["type", "phase"])
AGGREGATOR_COMMIT_SECONDS = Histogram(
    "blinkstack_aggregator_commit_seconds",
    "Time to write one batch of state and events to Redis",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0),
)


def instrumented(service: str) -> Callable:
    """Decorator for unary async servicer methods: counts calls by status code and records latency."""

    def wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        # Labelled children resolved once, not per call: `labels()` costs microseconds on every request.
        latency = RPC_LATENCY.labels(service, method.__name__)
        requests_by_code: dict[str, Any] = {}

        @functools.wraps(method)
        async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            start, code = time.perf_counter(), "OK"
            try:
                return await method(self, request, context)
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except Exception:
                status = context.code()
                code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                counter = requests_by_code.get(code)
                if counter is None:
                    counter = requests_by_code[code] = RPC_REQUESTS.labels(service, method.__name__, code)
                counter.inc()
                latency.observe(time.perf_counter() - start)

        return handler

    return wrap
