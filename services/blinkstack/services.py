"""The service contract: each blinkstack service's name, ports, environment names and entry module, declared once.

`blinkstack serve`, `blinkstack up`, the tests and the manifests' consistency test read this table; nothing
else spells a default port or builds an environment name. The names are literal so that `grep` finds them.
Each service package has the same shape: in `options`, `add_arguments(parser)` (its flags) and `from_args(args)`
(its options dataclass, built from the flags once); in `server`, the servicer, `build_backend(options)`,
`build_host(options, backend)` and `serve(options)`, which never see a flag.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class BackendEnv:
    """The environment names of a model-serving service's backend settings."""

    backend: str
    model: str
    model_version: str
    threads: str


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # `blinkstack serve <name>`, the metrics label, the Kubernetes Deployment
    grpc_service: str  # the full protobuf service name
    port: int
    metrics_port: int
    host_env: str
    port_env: str
    metrics_port_env: str
    address_env: str  # where clients (and the aggregator) find it
    package: str
    summary: str
    backend_env: BackendEnv | None = None  # the services that run a model
    # Calls arrived but not yet started that gRPC core holds before refusing (`--max-pending-rpcs`): small where
    # calls are short, large where many long-lived streams may open at once (every subscriber reconnecting).
    max_pending_rpcs: int = 128

    def options(self) -> ModuleType:
        """The service's flags (`add_arguments`) and options (`from_args`); imported only when needed."""
        return importlib.import_module(f"{self.package}.options")

    def server(self) -> ModuleType:
        """The servicer, builders and `serve`; imported only when this service is served or built."""
        return importlib.import_module(f"{self.package}.server")

    def default_address(self, host: str = "127.0.0.1") -> str:
        return f"{host}:{self.port}"


DETECTOR = ServiceSpec(
    name="detector",
    grpc_service="blinkstack.v1.DetectorService",
    port=50051,
    metrics_port=9101,
    host_env="BLINKSTACK_DETECTOR_HOST",
    port_env="BLINKSTACK_DETECTOR_PORT",
    metrics_port_env="BLINKSTACK_DETECTOR_METRICS_PORT",
    address_env="BLINKSTACK_DETECTOR_ADDR",
    package="blinkstack.detector",
    summary="DetectEyes: faces, eye boxes with corners, lids and aperture, track ids",
    backend_env=BackendEnv(
        backend="BLINKSTACK_DETECTOR_BACKEND",
        model="BLINKSTACK_DETECTOR_MODEL",
        model_version="BLINKSTACK_DETECTOR_MODEL_VERSION",
        threads="BLINKSTACK_DETECTOR_THREADS",
    ),
)
EYESTATE = ServiceSpec(
    name="eyestate",
    grpc_service="blinkstack.v1.EyeStateService",
    port=50052,
    metrics_port=9102,
    host_env="BLINKSTACK_EYESTATE_HOST",
    port_env="BLINKSTACK_EYESTATE_PORT",
    metrics_port_env="BLINKSTACK_EYESTATE_METRICS_PORT",
    address_env="BLINKSTACK_EYESTATE_ADDR",
    package="blinkstack.eyestate",
    summary="ClassifyEyes over ONNX Runtime (embedded) or Triton",
    backend_env=BackendEnv(
        backend="BLINKSTACK_EYESTATE_BACKEND",
        model="BLINKSTACK_EYESTATE_MODEL",
        model_version="BLINKSTACK_EYESTATE_MODEL_VERSION",
        threads="BLINKSTACK_EYESTATE_THREADS",
    ),
)
AGGREGATOR = ServiceSpec(
    name="aggregator",
    grpc_service="blinkstack.v1.AggregatorService",
    port=50053,
    metrics_port=9103,
    host_env="BLINKSTACK_AGGREGATOR_HOST",
    port_env="BLINKSTACK_AGGREGATOR_PORT",
    metrics_port_env="BLINKSTACK_AGGREGATOR_METRICS_PORT",
    address_env="BLINKSTACK_AGGREGATOR_ADDR",
    package="blinkstack.aggregator",
    summary="blink events per subject, in Redis; TrackFrames, PublishEyeStates, SubscribeBlinks, GetStats",
    max_pending_rpcs=2048,
)
SERVICES = {spec.name: spec for spec in (DETECTOR, EYESTATE, AGGREGATOR)}
