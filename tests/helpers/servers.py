"""Real servers for tests: gRPC services on an asyncio loop in a background thread, free loopback ports."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from blinkstack.common.model_backend import BackendUnavailable
from blinkstack.services import AGGREGATOR, DETECTOR, EYESTATE, ServiceSpec
from blinkstack.v1 import aggregator_pb2_grpc, detector_pb2_grpc, eyestate_pb2_grpc
from tests.helpers import MODEL_REPOSITORY, SERVING

MAX_MESSAGE_BYTES = 1024 * 1024


class EventLoopThread:
    """An asyncio loop running in a daemon thread; `run(coro)` executes there and returns the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def health_status(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        return (
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
        )


def wait_for_health(address: str, status: int, service: str = "", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = health_status(address, service)
            if last == status:
                return
        except grpc.RpcError as exc:
            last = exc.code()
        time.sleep(0.1)
    raise AssertionError(f"{address} health stayed {last}, expected {status}")


def service_args(spec: ServiceSpec, model_repository: str, **overrides: Any) -> argparse.Namespace:
    """A service's parsed defaults, on any free port, no metrics port, a 1 MiB message limit, then `overrides`."""
    parser = argparse.ArgumentParser()
    spec.options().add_arguments(parser)
    args = parser.parse_args([])
    args.port, args.metrics_port, args.max_message_bytes = 0, 0, MAX_MESSAGE_BYTES
    args.model_repository = model_repository
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


class RunningService:
    """A blinkstack service (its `build_backend`/`build_host`) in this process, on its own event loop thread."""

    def __init__(self, spec: ServiceSpec, args: argparse.Namespace, stub: Callable[[grpc.Channel], Any]):
        server_module, options = spec.server(), spec.options().from_args(args)
        self.loop = EventLoopThread()
        self.backend = server_module.build_backend(options)
        with contextlib.suppress(BackendUnavailable):  # Triton may come up later; health says so
            self.loop.run(self.backend.start())
        self.host = server_module.build_host(options, self.backend)
        self.host.settings.health_poll_s = 0.2
        self.port = self.loop.run(self.host.start())
        self.address = f"127.0.0.1:{self.port}"
        self.channel = grpc.insecure_channel(self.address)
        self.stub = stub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.loop.run(self.host.stop())
        self.loop.run(self.backend.close())
        self.loop.close()


def detector_service(**overrides: Any) -> RunningService:
    args = service_args(DETECTOR, str(MODEL_REPOSITORY), **overrides)
    return RunningService(DETECTOR, args, detector_pb2_grpc.DetectorServiceStub)


def eyestate_args(**overrides: Any) -> argparse.Namespace:
    return service_args(EYESTATE, str(MODEL_REPOSITORY), **overrides)


def eyestate_service(args: argparse.Namespace) -> RunningService:
    return RunningService(EYESTATE, args, eyestate_pb2_grpc.EyeStateServiceStub)


def aggregator_service(redis_url: str, **overrides: Any) -> RunningService:
    args = service_args(AGGREGATOR, "", redis_url=redis_url, **overrides)
    return RunningService(AGGREGATOR, args, aggregator_pb2_grpc.AggregatorServiceStub)


def serving(running: RunningService) -> RunningService:
    """`running`, once its health says SERVING."""
    wait_for_health(running.address, SERVING)
    return running
