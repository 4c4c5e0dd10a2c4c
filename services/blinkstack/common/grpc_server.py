"""What every blinkstack gRPC server has: grpc.health.v1, server reflection, Prometheus metrics, the error and
metrics boundary, message size limits, readiness polling, and a graceful drain on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from blinkstack.common import images
from blinkstack.common.config import env_option, from_flags, parse_bool
from blinkstack.common.rpc_boundary import RpcBoundary
from blinkstack.common.security import TokenTable, server_credentials
from blinkstack.services import AGGREGATOR, ServiceSpec

log = logging.getLogger(__name__)
READINESS_TIMEOUT_S = 5.0
# The health "service" a liveness probe asks for: SERVING while the process runs, whatever its dependencies do.
LIVENESS_SERVICE = "blinkstack.liveness"


# Dead peers (a camera that lost power, an idle subscriber behind a vanished NAT) are found by pings and their
# calls ended; connections are recycled every half hour (their streams go on until they end) so load spreads
# over new replicas.
KEEPALIVE = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_connection_age_ms", 30 * 60_000),
)


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (tests)
    metrics_port: int = 0  # 0: no metrics endpoint
    max_message_bytes: int = 16 * 1024 * 1024
    grace_s: float = 5.0
    health_poll_s: float = field(default=1.0, init=False)  # how often readiness is asked (tests poll faster)
    max_concurrent_rpcs: int = 64  # 0: no limit
    credentials: grpc.ServerCredentials | None = None  # None: plaintext
    tokens: TokenTable | None = None  # None: no bearer tokens checked
    reflection: bool = True
    health_port: int = 0  # 0: health only on the main port
    decode_budget_pixels: int = images.DECODE_BUDGET_PIXELS
    peer_share: float = 0.5  # of any admission limit, one peer (token, else IP address) may hold
    stream_idle_s: float = 30.0  # a client stream silent this long is ended (0: never)
    max_pending_rpcs: int = 128  # calls arrived but not yet started, beyond which gRPC core refuses new ones


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
    env_option(
        group,
        "--grace",
        "BLINKSTACK_GRACE_S",
        5.0,
        float,
        help="seconds to drain in-flight RPCs on shutdown",
        dest="grace_s",
    )
    env_option(group, "--tls-cert", "BLINKSTACK_TLS_CERT", "", help="PEM certificate chain: serve TLS")
    env_option(group, "--tls-key", "BLINKSTACK_TLS_KEY", "", help="PEM private key of --tls-cert")
    env_option(
        group, "--tls-client-ca", "BLINKSTACK_TLS_CLIENT_CA", "", help="PEM CA: require client certificates it signed"
    )
    env_option(
        group,
        "--tokens-file",
        "BLINKSTACK_TOKENS_FILE",
        "",
        help="JSON tokens with scopes: every call needs a bearer token (needs TLS, or --allow-plaintext-tokens)",
    )
    env_option(
        group,
        "--allow-plaintext-tokens",
        "BLINKSTACK_ALLOW_PLAINTEXT_TOKENS",
        False,
        parse_bool,
        help="accept bearer tokens without TLS (only where something else, e.g. a service mesh, encrypts the hop)",
    )
    env_option(group, "--reflection", "BLINKSTACK_REFLECTION", True, parse_bool, help="gRPC server reflection")
    env_option(
        group,
        "--health-port",
        "BLINKSTACK_HEALTH_PORT",
        0,
        int,
        help="also answer grpc.health.v1 alone, in plaintext, on this port: for probes that cannot speak TLS (0: off)",
    )
    env_option(
        group,
        "--max-concurrent-rpcs",
        "BLINKSTACK_MAX_CONCURRENT_RPCS",
        64,
        int,
        help="calls in progress at once before new ones get RESOURCE_EXHAUSTED (0: no limit); about throughput x "
        "the latency you accept: a deeper queue only turns overload into missed deadlines",
        at_least=0,
    )
    env_option(
        group,
        "--max-pending-rpcs",
        "BLINKSTACK_MAX_PENDING_RPCS",
        spec.max_pending_rpcs,
        int,
        help="calls that have arrived but not yet started; beyond it gRPC core refuses new calls before they cost "
        "any Python work (clients see CANCELLED), refusing all of them at twice this. Bounds the queue in front "
        "of admission: a flood of cheap calls is refused instead of aging past every deadline. The aggregator's "
        f"default is {AGGREGATOR.max_pending_rpcs}: every subscriber may reconnect at once",
        at_least=1,
    )
    env_option(
        group,
        "--peer-share",
        "BLINKSTACK_PEER_SHARE",
        0.5,
        float,
        help="share of --max-concurrent-rpcs (and of a method's own limit) one peer may hold: its token's name with "
        "--tokens-file, else its IP address (behind a proxy every client has the proxy's; use tokens). 1: no "
        "per-peer limit",
    )
    env_option(
        group,
        "--stream-idle-s",
        "BLINKSTACK_STREAM_IDLE_S",
        30.0,
        float,
        help="a client stream (PublishEyeStates, TrackFrames, StreamDetectEyes...) that sends nothing this long is "
        "ended with DEADLINE_EXCEEDED, so it holds no slot (0: never)",
        at_least=0,
    )
    env_option(
        group,
        "--decode-budget-pixels",
        "BLINKSTACK_DECODE_BUDGET_PIXELS",
        images.DECODE_BUDGET_PIXELS,
        int,
        help="pixels all calls may hold decoded at once; a call beyond it gets RESOURCE_EXHAUSTED (memory: about "
        "4 bytes a pixel). At least one largest image (4096x4096)",
        at_least=images.MAX_PIXELS_PER_REQUEST,
    )


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """The parsed server flags, with the TLS and token files read now: a bad one stops the service at start."""
    if not 0 < args.peer_share <= 1:
        raise ValueError(f"--peer-share must be in (0, 1] (got {args.peer_share})")
    credentials = server_credentials(args.tls_cert, args.tls_key, args.tls_client_ca)
    if args.tokens_file and credentials is None and not args.allow_plaintext_tokens:
        raise ValueError(
            "--tokens-file without --tls-cert/--tls-key: bearer tokens would cross the network in the clear; "
            "serve TLS, or say --allow-plaintext-tokens (BLINKSTACK_ALLOW_PLAINTEXT_TOKENS=1) where the hop is "
            "encrypted by something else"
        )
    return from_flags(
        ServerSettings,
        args,
        credentials=credentials,
        tokens=TokenTable.load(args.tokens_file) if args.tokens_file else None,
    )


class ServiceHost:
    """One gRPC server: `await start()` binds and serves, `await stop()` drains."""

    def __init__(
        self,
        settings: ServerSettings,
        spec: ServiceSpec,
        register: Callable[[grpc.aio.Server], None],
        ready: Callable[[], Awaitable[bool]],
        limits: dict[str, int] | None = None,
    ) -> None:
        self.settings, self.spec, self._register, self._ready = settings, spec, register, ready
        self.limits = limits or {}  # methods with their own concurrency limit (see RpcBoundary)
        self.service_names = [spec.grpc_service]
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self._watcher: asyncio.Task | None = None

    async def start(self) -> int:
        s = self.settings
        images.DECODE_BUDGET.limit = s.decode_budget_pixels
        server = grpc.aio.server(
            interceptors=[
                RpcBoundary(self.spec.name, s.max_concurrent_rpcs, self.limits, s.tokens, s.peer_share, s.stream_idle_s)
            ],
            options=[
                ("grpc.max_receive_message_length", s.max_message_bytes),
                ("grpc.max_send_message_length", s.max_message_bytes),
                ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
                *KEEPALIVE,
                # Python takes calls from gRPC core one at a time, and a flood of cheap calls outruns it: they
                # queue in core, unseen by admission, until each has waited past its deadline. Core refuses
                # beyond this backlog (with rising probability up to twice it), at C cost.
                ("grpc.server.max_pending_requests", s.max_pending_rpcs),
                ("grpc.server.max_pending_requests_hard_limit", 2 * s.max_pending_rpcs),
            ],
        )
        self._register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if s.reflection:
            names = [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
            reflection.enable_server_reflection(names, server)
        address = f"{s.host}:{s.port}"
        try:
            if s.credentials is None:
                self.port = server.add_insecure_port(address)
            else:
                self.port = server.add_secure_port(address, s.credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {s.host}:{s.port}: {exc}") from None
        if self.port == 0:
            raise OSError(f"cannot listen on {s.host}:{s.port} (address in use?)")
        if s.health_port:
            self._health_server = await self._serve_health_alone(f"{s.host}:{s.health_port}")
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

    async def _serve_health_alone(self, address: str) -> grpc.aio.Server:
        """Kubernetes' gRPC probes speak plaintext only: with TLS on the main port they ask here. Health and
        nothing else, so no call of ours is reachable without TLS."""
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if server.add_insecure_port(address) == 0:
            raise OSError(f"cannot listen on {address} (health port in use?)")
        await server.start()
        return server

    async def _set_all(self, status: int) -> None:
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def _watch_readiness(self) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        while True:
            try:  # bounded: a backend that hangs is as unready as one that answers no
                ok = await asyncio.wait_for(self._ready(), READINESS_TIMEOUT_S)
            except TimeoutError:
                log.warning("readiness check took over %.0f s", READINESS_TIMEOUT_S)
                ok = False
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
        if self._health_server is not None:
            await self._health_server.stop(0)
            self._health_server = None


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
