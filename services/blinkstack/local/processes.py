"""Local processes and loopback ports: what the launchers, `blinkstack up`, the benchmarks and the tests share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Self

from blinkstack.client import wait_until_connectable
from blinkstack.services import ServiceSpec


class LocalServer:
    """A server this machine runs for the stack: `with` starts it and stops it (`start`/`stop` in the subclass)."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A loopback port that is free right now (for servers the caller starts next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def stop_process(process: subprocess.Popen, grace_s: float, group: bool = False) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace_s`.

    `group=True` signals the process group, for processes started with `start_new_session=True` (never for a
    process in the caller's own group).
    """
    if process.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)

    send(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()


@dataclass
class ServiceProcess:
    address: str
    process: subprocess.Popen


@contextmanager
def service_process(
    spec: ServiceSpec, env: dict[str, str] | None = None, cpus: set[int] | None = None
) -> Iterator[ServiceProcess]:
    """`blinkstack serve <service>` as a child process on a free loopback port, without a metrics port and with
    `env` on top of this process's environment, once it accepts connections; stopped afterwards. With `cpus`,
    it runs on those CPUs only (benchmarks: the load generator must not take the server's)."""
    port = free_port()
    full_env = {**os.environ, spec.port_env: str(port), spec.metrics_port_env: "0", **(env or {})}
    command = [sys.executable, "-m", "blinkstack.cli", "serve", spec.name]
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    process = subprocess.Popen(command, env=full_env, stdout=subprocess.DEVNULL, preexec_fn=pin)
    address = f"127.0.0.1:{port}"
    try:
        wait_until_connectable(address, 60)
        yield ServiceProcess(address, process)
    finally:
        stop_process(process, 30)
