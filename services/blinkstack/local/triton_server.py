"""Start a real local `tritonserver` on the project's model repository (CPU stand-in for development and tests).

The binary comes from the PyPI wheel `nvidia-pytriton`, installed in its own environment (default
`.venv/triton`, made by `make triton-env`) because it pins numpy < 2. That build has only the Python backend,
so `deploy/triton/backends/onnxruntime/model.py` stands in for Triton's ONNX Runtime backend (see its
docstring). Production uses the official Triton container with the real backends and the same repository.

    python -m blinkstack.local.triton_server [--repository model_repository] [--grpc-port 8001]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

from blinkstack.common import paths
from blinkstack.local.processes import LocalServer, stop_process

# A checkout's tool: the environment `make triton-env` builds and the stand-in backend in deploy/, both found
# from the checkout's root (the working directory) unless set.
DEFAULT_ENV = Path(os.environ.get("BLINKSTACK_TRITON_ENV", ".venv/triton"))
STANDIN_BACKEND = Path("deploy/triton/backends/onnxruntime/model.py")


class TritonError(RuntimeError):
    pass


def _site_packages(env: Path) -> Path:
    found = sorted(env.glob("lib/python3*/site-packages"))
    if not found or not (found[0] / "pytriton" / "tritonserver" / "bin" / "tritonserver").exists():
        raise TritonError(f"no nvidia-pytriton in {env}; create it with `make triton-env`")
    return found[0]


class TritonServer(LocalServer):
    def __init__(
        self,
        repository: Path,
        grpc_port: int,
        http_port: int,
        metrics_port: int,
        env: Path = DEFAULT_ENV,
        log_path: Path | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """`tls`: (certificate, key, client CA): gRPC over TLS, clients must show a certificate the CA signed."""
        self.repository, self.env = Path(repository).resolve(), Path(env).resolve()
        self.tls = tls
        self.grpc_port, self.http_port, self.metrics_port = grpc_port, http_port, metrics_port
        self.log_path = log_path
        self._process: subprocess.Popen | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _backend_dir(self, site: Path) -> Path:
        """Copies, not links: Triton refuses backend libraries that resolve outside the backend directory."""
        assert self._workdir is not None
        root = Path(self._workdir.name) / "backends"
        server = site / "pytriton" / "tritonserver"
        python = root / "python"
        python.mkdir(parents=True)
        shutil.copy2(server / "backends" / "python" / "libtriton_python.so", python)
        shutil.copy2(server / "backends" / "python" / "triton_python_backend_utils.py", python)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        shutil.copy2(server / "python_backend_stubs" / version / "triton_python_backend_stub", python)
        (root / "onnxruntime").mkdir()
        shutil.copy2(STANDIN_BACKEND, root / "onnxruntime" / "model.py")
        return root

    def start(self, timeout_s: float = 60.0) -> None:
        site = _site_packages(self.env)
        self._workdir = tempfile.TemporaryDirectory(prefix="blinkstack-triton-")
        backends = self._backend_dir(site)
        env = dict(os.environ)
        # The Python backend's stub embeds the base interpreter; its shared library and the wheel's bundled
        # libraries must be found.
        libdir = sysconfig.get_config_var("LIBDIR") or str(Path(sys.base_prefix) / "lib")
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [libdir, str(site / "nvidia_pytriton.libs"), env.get("LD_LIBRARY_PATH")])
        )
        log = open(self.log_path or Path(self._workdir.name) / "triton.log", "wb")  # noqa: SIM115 - lives with the process
        command = [
            str(site / "pytriton" / "tritonserver" / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--exit-timeout-secs=5",
        ]
        if self.tls is not None:
            cert, key, ca = (Path(p).resolve() for p in self.tls)
            command += ["--grpc-use-ssl=true", f"--grpc-server-cert={cert}", f"--grpc-server-key={key}"]
            command += [f"--grpc-root-cert={ca}", "--grpc-use-ssl-mutual=true"]
        # cwd: the stub's isolated interpreter puts its working directory first on sys.path (see model.py).
        self._process = subprocess.Popen(
            command, cwd=site, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready(timeout_s)

    def _log_tail(self) -> str:
        path = self.log_path or (Path(self._workdir.name) / "triton.log" if self._workdir else None)
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.http_port}/v2/health/ready"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise TritonError(f"tritonserver exited with {self._process.returncode}:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TritonError(f"tritonserver not ready after {timeout_s:.0f} s:\n{self._log_tail()}")

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, 15.0, group=True)
        self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=paths.model_repository())
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    args = parser.parse_args()
    server = TritonServer(args.repository, args.grpc_port, args.http_port, args.metrics_port)
    server.start()
    print(f"Triton ready: gRPC {server.grpc_url}, HTTP 127.0.0.1:{args.http_port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
