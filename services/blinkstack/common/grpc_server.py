"""What every blinkstack gRPC server has: grpc.health.v1, server reflection, Prometheus metrics, the error and
metrics boundary, message size limits, readiness polling, and a graceful drain on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from blinkstack.common.config import env_option
from blinkstack.common.rpc_boundary import RpcBoundary
from blinkstack.services import ServiceSpec

log = logging.getLogger(__name__)
# The health "service" a liveness probe asks for: SERVING while the process runs, whatever its dependencies do.
LIVENESS_SERVICE = "blinkstack.liveness"


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (tests)
    metrics_port: int = 0  # 0: no metrics endpoint
    max_message_bytes: int = 16 * 1024 * 1024
    grace_s: float = 5.0
    health_poll_s: float = 1.0


def add_server_options(parser: argparse.ArgumentParser, spec: ServiceSpec) -> None:
    """--host/--port/--metrics-port/... with defaults from the service's environment names."""
    group = parser.add_argument_group("server")
    env_option(group, "--host", spec.host_env, "127.0.0.1", help="address to listen on")
    env_option(group, "--port", spec.port_env, spec.port, int, help="gRPC port")
    env_option(group, "--metrics-port", spec.metrics_port_env, spec.metrics_port, int, help="Prometheus port (0: off)")
    env_option(
        group,
        "--max-message-bytes",
        "BLINKSTACK_MAX_MESSAGE_BYTES",
        16 * 1024 * 1024,
        int,
        help="largest request accepted",
    )
    env_option(group, "--grace", "BLINKSTACK_GRACE_S", 5.0, float, help="seconds to drain in-flight RPCs on shutdown")


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(args.host, args.port, args.metrics_port, args.max_message_bytes, args.grace)


class ServiceHost:
    """One gRPC server: `await start()` binds and serves, `await stop()` drains."""

    def __init__(
        self,
        settings: ServerSettings,
        spec: ServiceSpec,
        register: Callable[[grpc.aio.Server], None],
        ready: Callable[[], Awaitable[bool]],
    ) -> None:
        self.settings, self.spec, self._register, self._ready = settings, spec, register, ready
        self.service_names = [spec.grpc_service]
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._watcher: asyncio.Task | None = None

    async def start(self) -> int:
        s = self.settings
        server = grpc.aio.server(
            interceptors=[RpcBoundary(self.spec.name)],
            options=[
                ("grpc.max_receive_message_length", s.max_message_bytes),
                ("grpc.max_send_message_length", s.max_message_bytes),
                ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
            ],
        )
        self._register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection([*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
        try:
            self.port = server.add_insecure_port(f"{s.host}:{s.port}")
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {s.host}:{s.port}: {exc}") from None
        if self.port == 0:
            raise OSError(f"cannot listen on {s.host}:{s.port} (address in use?)")
        if s.metrics_port:
            start_http_server(s.metrics_port, addr=s.host)
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        # Liveness is not readiness: a service waiting for Triton or Redis is alive and must not be restarted.
        await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await server.start()
        self._server = server
        self._watcher = asyncio.create_task(self._watch_readiness(), name="readiness")
        log.info("serving %s on %s:%d", ", ".join(self.service_names), s.host, self.port)
        return self.port

    async def _set_all(self, status: int) -> None:
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def _watch_readiness(self) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        while True:
            try:
                ok = await self._ready()
            except Exception:
                log.exception("readiness check failed")
                ok = False
            await self._set_all(serving if ok else not_serving)
            await asyncio.sleep(self.settings.health_poll_s)

    async def stop(self) -> None:
        """Report NOT_SERVING, let in-flight RPCs finish within the grace period, then close."""
        if self._watcher is not None:
            self._watcher.cancel()
            # Bounded: a readiness check stuck on a dependency (Redis, Triton) must not hold up the shutdown.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._watcher, 2.0)
        if self._server is not None:
            await self.health.enter_graceful_shutdown()
            await self._server.stop(self.settings.grace_s)
            self._server = None


async def run_until_signal(host: ServiceHost, on_stop: Callable[[], Awaitable[None]]) -> None:
    """Serve until SIGTERM or SIGINT, then drain and call `on_stop`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await host.start()
    print(f"listening on {host.settings.host}:{host.port}", flush=True)
    await stop.wait()
    log.info("draining")
    await host.stop()
    await on_stop()
