"""The whole stack on one machine: Redis, eye-state, detector and aggregator as real processes (`blinkstack up`).

Each service runs as its own `blinkstack serve <service>` process (so they use every core), configured through
the same environment variables a deployment would set, with its log in `<data dir>/logs/`. Startup checks every
port first and names the one that is taken; then starts Redis, optionally Triton, the eye-state service, the
detector and the aggregator, waiting until each health check says SERVING. Shutdown goes the other way round:
SIGTERM (the services drain), SIGKILL only after a grace period, and no process is left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpc_health.v1 import health_pb2

from blinkstack.aggregator.store import redacted
from blinkstack.client import health
from blinkstack.common import paths
from blinkstack.local.processes import LocalServer, free_port, port_in_use, stop_process
from blinkstack.local.redis_server import RedisError, RedisServer
from blinkstack.services import AGGREGATOR, DETECTOR, EYESTATE, ServiceSpec

if TYPE_CHECKING:  # imported only when Triton is asked for: its client is an optional extra
    from blinkstack.local.triton_server import TritonServer

DEFAULT_DATA_DIR = Path(".blinkstack")


RESTART_WINDOW_S = 120.0  # deaths within this long of each other back off further
MAX_BACKOFF_S = 30.0


class StackError(RuntimeError):
    """A component could not start; the message says which and why."""


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    detector_port: int = DETECTOR.port
    eyestate_port: int = EYESTATE.port
    aggregator_port: int = AGGREGATOR.port
    redis_port: int = 6379
    metrics: bool = True  # Prometheus on each service's metrics port
    metrics_ports: dict[str, int] = field(default_factory=dict)  # by service name; default: the service's own
    data_dir: Path = DEFAULT_DATA_DIR
    triton_url: str = ""  # use an existing Triton for the eye-state service
    with_triton: bool = False  # start a local Triton (the tests' launcher) and use it
    triton_ports: tuple[int, int, int] = (8001, 8000, 8002)
    extra_env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 90.0

    def address(self, port: int) -> str:
        return f"{self.host}:{port}"

    def metrics_port(self, spec: ServiceSpec) -> int:
        """The service's Prometheus port (0: none)."""
        return self.metrics_ports.get(spec.name, spec.metrics_port) if self.metrics else 0

    @classmethod
    def on_free_ports(cls, data_dir: Path, **overrides: object) -> StackConfig:
        """Free loopback ports and no metrics ports: a tool's or benchmark's own stack beside a running `up`."""
        ports = {f"{name}_port": free_port() for name in ("detector", "eyestate", "aggregator", "redis")}
        settings: dict[str, Any] = {**ports, "metrics": False, "data_dir": Path(data_dir), **overrides}
        return cls(**settings)


@dataclass
class _Service:
    name: str
    spec: ServiceSpec
    port: int
    env: dict[str, str]
    process: subprocess.Popen
    log: Path
    restarts: list[float] = field(default_factory=list)  # monotonic times of recent restarts


class Stack(LocalServer):
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.redis: RedisServer | None = None
        self.triton: TritonServer | None = None
        self.services: list[_Service] = []

    # --- start ---
    def _check_ports(self) -> None:
        c = self.config
        wanted = {
            "redis": c.redis_port,
            "eye-state": c.eyestate_port,
            "detector": c.detector_port,
            "aggregator": c.aggregator_port,
        }
        if c.metrics:
            wanted.update({f"{spec.name} metrics": c.metrics_port(spec) for spec in (DETECTOR, EYESTATE, AGGREGATOR)})
        if c.with_triton:
            wanted.update(dict(zip(("triton grpc", "triton http", "triton metrics"), c.triton_ports, strict=True)))
        taken = [f"{name} port {port}" for name, port in wanted.items() if port_in_use(c.host, port)]
        if taken:
            raise StackError(
                f"cannot start: {', '.join(taken)} already in use on {c.host} (another `blinkstack up`?); "
                "stop it or choose other ports (--*-port)"
            )

    def _spawn(self, name: str, spec: ServiceSpec, port: int, env: dict[str, str]) -> None:
        self.services.append(_Service(name, spec, port, env, *self._launch(name, spec, port, env)))

    def _launch(self, name: str, spec: ServiceSpec, port: int, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
        logs = self.config.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        full_env = {
            **os.environ,
            **self.config.extra_env,
            **env,
            spec.host_env: self.config.host,
            spec.port_env: str(port),
            spec.metrics_port_env: str(self.config.metrics_port(spec)),
        }
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "blinkstack.cli", "serve", spec.name],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches `up`, which stops the services in order
            )
        return process, log_path

    def _wait_serving(self, service: _Service) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        address = self.config.address(service.port)
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                tail = service.log.read_text(errors="replace")[-1500:]
                raise StackError(f"{service.name} exited with code {service.process.returncode}:\n{tail}")
            if health(address) == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.1)
        raise StackError(f"{service.name} on {address} was not SERVING after {self.config.start_timeout_s:.0f} s")

    def start(self) -> None:
        c = self.config
        self._check_ports()
        try:
            self.redis = RedisServer(c.redis_port, c.data_dir / "redis", c.host, c.data_dir / "logs" / "redis.log")
            (c.data_dir / "logs").mkdir(parents=True, exist_ok=True)
            self.redis.start()
            triton_url = c.triton_url
            if c.with_triton:
                from blinkstack.local.triton_server import TritonServer

                self.triton = TritonServer(
                    paths.model_repository(), *c.triton_ports, log_path=c.data_dir / "logs" / "triton.log"
                )
                self.triton.start()
                triton_url = self.triton.grpc_url
            eyestate_env = (
                {"BLINKSTACK_EYESTATE_BACKEND": "triton", "BLINKSTACK_TRITON_URL": triton_url} if triton_url else {}
            )
            self._spawn("eye-state", EYESTATE, c.eyestate_port, eyestate_env)
            self._spawn("detector", DETECTOR, c.detector_port, {})
            for service in self.services:
                self._wait_serving(service)
            aggregator_env = {
                "BLINKSTACK_REDIS_URL": self.redis.url,
                DETECTOR.address_env: c.address(c.detector_port),
                EYESTATE.address_env: c.address(c.eyestate_port),
            }
            self._spawn("aggregator", AGGREGATOR, c.aggregator_port, aggregator_env)
            self._wait_serving(self.services[-1])
        except (StackError, RedisError, OSError) as exc:
            self.stop()
            raise StackError(str(exc)) from None
        except Exception:
            self.stop()
            raise

    # --- supervise ---
    def supervise(self, report: Callable[[str], None]) -> None:
        """Restart what has exited (Redis first, then the services), each waiting until SERVING again.

        Like Kubernetes, a component that comes back SERVING is restarted however often it dies (something may be
        killing it; the stack it serves stays up): the wait before a restart doubles from 0.5 s with each death
        within RESTART_WINDOW_S of the last, up to MAX_BACKOFF_S, so a crash loop does not spin. A restart that
        does not reach SERVING stops the stack: StackError (its log tail says why).
        """
        if self.redis is not None and self.redis.process is not None and self.redis.process.poll() is not None:
            report(f"redis exited with code {self.redis.process.returncode}; restarting")
            self.redis.process = None
            self.redis.start()  # same port, password and AOF: nothing acknowledged is lost
        for service in self.services:
            if service.process.poll() is None:
                continue
            now = time.monotonic()
            service.restarts = [t for t in service.restarts if now - t < RESTART_WINDOW_S]
            delay = min(0.5 * 2 ** len(service.restarts), MAX_BACKOFF_S)
            report(
                f"{service.name} exited with code {service.process.returncode}; restarting in {delay:.1f} s "
                f"({len(service.restarts) + 1} restarts within {RESTART_WINDOW_S:.0f} s)"
            )
            time.sleep(delay)
            service.restarts.append(time.monotonic())
            service.process, service.log = self._launch(service.name, service.spec, service.port, service.env)
            self._wait_serving(service)
            report(f"{service.name} is SERVING again")

    def endpoints(self) -> dict[str, str]:
        c = self.config
        found = {s.name: c.address(s.port) for s in self.services}
        if self.redis is not None:
            found["redis"] = redacted(self.redis.url)  # the password is in <data dir>/redis/redis-auth.conf
        if self.triton is not None:
            found["triton"] = self.triton.grpc_url
        return found

    # --- stop ---
    def stop(self, grace_s: float = 10.0) -> None:
        """Aggregator first (it uses the others), then detector and eye-state, then Triton and Redis."""
        for service in reversed(self.services):
            stop_process(service.process, grace_s, group=True)
        self.services = []
        if self.triton is not None:
            self.triton.stop()
            self.triton = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
