"""The model-backend flags that the eye-state and detector services share (embedded ONNX Runtime or Triton)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from blinkstack.common import paths
from blinkstack.common.config import env_option
from blinkstack.services import ServiceSpec


def add_backend_options(
    parser: argparse.ArgumentParser, spec: ServiceSpec, default_model: str, default_threads: int = 0
) -> None:
    """--backend, --model-*, --threads, --providers, --triton-* with BLINKSTACK_* environment defaults."""
    env = spec.backend_env
    assert env is not None, f"{spec.name} runs no model"
    group = parser.add_argument_group("model backend")
    env_option(
        group,
        "--backend",
        env.backend,
        "onnxruntime",
        help="onnxruntime (embedded) | triton",
        choices=["onnxruntime", "triton"],
    )
    env_option(
        group,
        "--model-repository",
        "BLINKSTACK_MODEL_REPOSITORY",
        paths.DEFAULT_MODEL_REPOSITORY,
        help="Triton model repository (onnxruntime backend)",
    )
    env_option(group, "--model-name", env.model, default_model, help="model name in the repository")
    env_option(group, "--model-version", env.model_version, "", help="pinned version (empty: newest)")
    env_option(
        group,
        "--threads",
        env.threads,
        default_threads,
        int,
        help="ONNX Runtime intra-op threads per model (0: one per core)",
        at_least=0,
    )
    env_option(
        group,
        "--providers",
        "BLINKSTACK_ORT_PROVIDERS",
        "CPUExecutionProvider",
        help="ONNX Runtime execution providers in order; GPU nodes (onnxruntime-gpu): "
        "TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider",
    )
    env_option(
        group, "--triton-url", "BLINKSTACK_TRITON_URL", "127.0.0.1:8001", help="Triton gRPC address (triton backend)"
    )
    env_option(
        group,
        "--triton-timeout",
        "BLINKSTACK_TRITON_TIMEOUT_S",
        2.0,
        float,
        help="deadline per Triton call when the client sets none",
    )
    env_option(group, "--triton-retries", "BLINKSTACK_TRITON_RETRIES", 3, int, help="retries on UNAVAILABLE")
    env_option(group, "--triton-ca", "BLINKSTACK_TRITON_CA", "", help="PEM CA that signed Triton's certificate: TLS")
    env_option(
        group, "--triton-client-cert", "BLINKSTACK_TRITON_CLIENT_CERT", "", help="PEM client certificate for Triton"
    )
    env_option(group, "--triton-client-key", "BLINKSTACK_TRITON_CLIENT_KEY", "", help="PEM key of that certificate")


@dataclass(frozen=True)
class TritonTls:
    """Files for TLS to Triton: its CA, and a client certificate and key when Triton requires one (mTLS)."""

    ca: str
    cert: str = ""
    key: str = ""


@dataclass(frozen=True)
class BackendOptions:
    backend: str
    repository: Path
    model_name: str
    version: str  # empty: newest
    threads: int
    providers: list[str]
    triton_url: str
    triton_timeout_s: float
    triton_retries: int
    triton_tls: TritonTls | None = None  # None: plaintext

    @property
    def pinned_version(self) -> int | None:
        return int(self.version) if self.version else None


def backend_options(args: argparse.Namespace) -> BackendOptions:
    """The parsed settings; the embedded backend's model repository must exist (a ValueError says how)."""
    repository = paths.located(args.model_repository)
    if args.backend == "onnxruntime":
        paths.require(repository, "model repository", "pass --model-repository or set BLINKSTACK_MODEL_REPOSITORY")
    if (args.triton_client_cert or args.triton_client_key) and not args.triton_ca:
        raise ValueError("--triton-client-cert/--triton-client-key need --triton-ca: a client certificate is for TLS")
    tls = TritonTls(args.triton_ca, args.triton_client_cert, args.triton_client_key) if args.triton_ca else None
    return BackendOptions(
        backend=args.backend,
        repository=repository,
        model_name=args.model_name,
        version=args.model_version,
        threads=args.threads,
        providers=[p.strip() for p in args.providers.split(",") if p.strip()],
        triton_url=args.triton_url,
        triton_timeout_s=args.triton_timeout,
        triton_retries=args.triton_retries,
        triton_tls=tls,
    )
