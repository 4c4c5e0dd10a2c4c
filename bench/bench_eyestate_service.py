"""Eye-state service throughput and latency, both backends, next to raw ONNX Runtime in the same run.

    .venv/bin/python bench/bench_eyestate_service.py [--seconds 3] [--backends onnxruntime,triton]

Each server runs in its own process (`blinkstack serve eyestate`, and a local `tritonserver` for the triton
backend) on loopback; the load generator is an asyncio gRPC client keeping `concurrency` requests in flight,
each carrying `batch` real-sized PNG eye crops. Prints crops/s and p50/p99 request latency per cell.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from blinkstack.common.local import free_port
from blinkstack.common.model_repository import EYE_STATE_MODEL, resolve_model_file
from blinkstack.common.onnx_runtime import create_session
from blinkstack.common.preprocess import preprocess_encoded
from blinkstack.triton_launcher import TritonServer
from blinkstack.v1 import eyestate_pb2, eyestate_pb2_grpc, types_pb2

ROOT = Path(__file__).resolve().parents[1]
BATCHES, CONCURRENCY = (1, 8, 64), (1, 8, 32)


def sample_crops(n: int) -> list[bytes]:
    """Eye-crop-like 48x48 PNGs (the size a detector cuts at 640x480); content does not change the cost."""
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(n):
        image = cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (5, 5), 0)
        crops.append(cv2.imencode(".png", image)[1].tobytes())
    return crops


def percentiles(latencies: list[float]) -> tuple[float, float]:
    values = np.array(latencies) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def raw_onnxruntime(crops: list[bytes], seconds: float) -> list[dict]:
    """Preprocessing + session.run in-process: the floor under the service numbers."""
    session = create_session(resolve_model_file(ROOT / "model_repository" / EYE_STATE_MODEL)[0])
    rows = []
    for batch in BATCHES:
        blobs, latencies = crops[:batch], []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            session.run(None, {"images": preprocess_encoded(blobs)})
            latencies.append(time.perf_counter() - start)
        p50, p99 = percentiles(latencies)
        rows.append(
            {
                "backend": "raw onnxruntime",
                "batch": batch,
                "concurrency": 1,
                "crops_per_s": batch * len(latencies) / seconds,
                "p50_ms": p50,
                "p99_ms": p99,
            }
        )
    return rows


async def load(address: str, crops: list[bytes], batch: int, concurrency: int, seconds: float) -> dict:
    request = eyestate_pb2.ClassifyEyesRequest(
        crops=eyestate_pb2.CropBatch(crops=[types_pb2.Image(encoded=c) for c in crops[:batch]])
    )
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = eyestate_pb2_grpc.EyeStateServiceStub(channel)
        for _ in range(20):  # warm-up
            await stub.ClassifyEyes(request)
        end = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < end:
                start = time.perf_counter()
                await stub.ClassifyEyes(request, timeout=30)
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    p50, p99 = percentiles(latencies)
    return {
        "batch": batch,
        "concurrency": concurrency,
        "crops_per_s": batch * len(latencies) / seconds,
        "p50_ms": p50,
        "p99_ms": p99,
    }


def wait_serving(address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"{address} never became SERVING")


def bench_backend(backend: str, crops: list[bytes], seconds: float) -> list[dict]:
    port = free_port()
    triton = None
    args = [
        sys.executable,
        "-m",
        "blinkstack.cli",
        "serve",
        "eyestate",
        "--port",
        str(port),
        "--metrics-port",
        "0",
        "--backend",
        backend,
    ]
    if backend == "triton":
        triton = TritonServer(ROOT / "model_repository", free_port(), free_port(), free_port())
        triton.start()
        args += ["--triton-url", triton.grpc_url]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        wait_serving(f"127.0.0.1:{port}")
        return [
            {"backend": backend, **asyncio.run(load(f"127.0.0.1:{port}", crops, batch, concurrency, seconds))}
            for batch in BATCHES
            for concurrency in CONCURRENCY
        ]
    finally:
        server.terminate()
        server.wait(30)
        if triton is not None:
            triton.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="per cell")
    parser.add_argument("--backends", default="onnxruntime,triton")
    args = parser.parse_args()
    crops = sample_crops(max(BATCHES))
    rows = raw_onnxruntime(crops, args.seconds)
    for backend in args.backends.split(","):
        rows += bench_backend(backend, crops, args.seconds)
    print(f"{'backend':<16}{'batch':>6}{'conc':>6}{'crops/s':>12}{'p50 ms':>9}{'p99 ms':>9}")
    for r in rows:
        print(
            f"{r['backend']:<16}{r['batch']:>6}{r['concurrency']:>6}{r['crops_per_s']:>12,.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
        )


if __name__ == "__main__":
    main()
