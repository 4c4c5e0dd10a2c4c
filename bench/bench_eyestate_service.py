"""Eye-state service throughput and latency, both backends, next to raw ONNX Runtime in the same run.

    .venv/bin/python bench/bench_eyestate_service.py [--seconds 3] [--backends onnxruntime,triton]
                                                     [--encodings raw,png]

Each server runs in its own process (`blinkstack serve eyestate`, and a local `tritonserver` for the triton
backend) on loopback; the load generator is an asyncio gRPC client keeping `concurrency` requests in flight,
each carrying `batch` eye crops of the size a detector cuts from 640x480 video (48x48), either as raw gray8
pixels (what a client that already holds decoded frames sends) or PNG-encoded (which adds a PNG decode per
crop on the server). Prints crops/s, p50/p99 request latency and the cores the load generator itself used
(on a small machine it competes with the server) per cell, with two floors in the same run:
`raw onnxruntime`, the service's work done in-process (decode + preprocessing + session.run), and
`grpc echo`, a grpc.aio server that answers ClassifyEyes without looking at the crops: what the Python gRPC
round trip alone costs on this machine.
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
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from blinkstack.client import aio_stubs
from blinkstack.common import images
from blinkstack.common.model_repository import EYE_STATE_MODEL, resolve_model_file
from blinkstack.common.onnx_runtime import create_session
from blinkstack.common.preprocess import preprocess_batch
from blinkstack.local import stack
from blinkstack.local.processes import free_port
from blinkstack.local.triton_server import TritonServer
from blinkstack.v1 import eyestate_pb2, eyestate_pb2_grpc, types_pb2

ROOT = Path(__file__).resolve().parents[1]
BATCHES, CONCURRENCY = (1, 8, 64), (1, 8, 32)


def sample_crops(n: int, encoding: str) -> list[types_pb2.Image]:
    """Eye-crop-like 48x48 gray crops; content does not change the cost."""
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(n):
        image = cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (5, 5), 0)
        if encoding == "png":
            crops.append(types_pb2.Image(encoded=cv2.imencode(".png", image)[1].tobytes()))
        else:
            raw = types_pb2.RawImage(pixels=image.tobytes(), width=48, height=48, format=types_pb2.PIXEL_FORMAT_GRAY8)
            crops.append(types_pb2.Image(raw=raw))
    return crops


def percentiles(latencies: list[float]) -> tuple[float, float]:
    values = np.array(latencies) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def raw_onnxruntime(crops: list[types_pb2.Image], seconds: float) -> list[dict]:
    """Decoding + preprocessing + session.run in-process: the floor under the service numbers."""
    session = create_session(resolve_model_file(ROOT / "model_repository" / EYE_STATE_MODEL)[0])
    rows = []
    for batch in BATCHES:
        messages, latencies = crops[:batch], []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            decoded = [images.decode(message, "crop") for message in messages]
            session.run(None, {"images": preprocess_batch(decoded)})
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


async def load(address: str, crops: list[types_pb2.Image], batch: int, concurrency: int, seconds: float) -> dict:
    request = eyestate_pb2.ClassifyEyesRequest(crops=eyestate_pb2.CropBatch(crops=crops[:batch]))
    latencies: list[float] = []
    stubs = aio_stubs(address)
    try:
        stub = stubs.eyestate
        for _ in range(20):  # warm-up
            await stub.ClassifyEyes(request)
        end = time.perf_counter() + seconds
        cpu_start = time.process_time()

        async def worker() -> None:
            while time.perf_counter() < end:
                start = time.perf_counter()
                await stub.ClassifyEyes(request, timeout=30)
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        client_cores = (time.process_time() - cpu_start) / seconds
    finally:
        await stubs.close()
    p50, p99 = percentiles(latencies)
    return {
        "batch": batch,
        "concurrency": concurrency,
        "crops_per_s": batch * len(latencies) / seconds,
        "p50_ms": p50,
        "p99_ms": p99,
        "client_cores": client_cores,
    }


def wait_serving(address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.health(address) == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{address} never became SERVING")


class EchoServicer(eyestate_pb2_grpc.EyeStateServiceServicer):
    async def ClassifyEyes(
        self, request: eyestate_pb2.ClassifyEyesRequest, context: grpc.aio.ServicerContext
    ) -> eyestate_pb2.ClassifyEyesResponse:
        result = eyestate_pb2.EyeStateResult(prob_open=1.0, state=types_pb2.EYE_STATE_OPEN)
        return eyestate_pb2.ClassifyEyesResponse(results=[result] * len(request.crops.crops))


async def serve_echo(port: int) -> None:
    server = grpc.aio.server()
    eyestate_pb2_grpc.add_EyeStateServiceServicer_to_server(EchoServicer(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def bench_backend(backend: str, crops: dict[str, list[types_pb2.Image]], seconds: float) -> list[dict]:
    port = free_port()
    triton = None
    if backend == "grpc echo":
        args = [sys.executable, __file__, "--serve-echo", str(port)]
    else:
        args = [sys.executable, "-m", "blinkstack.cli", "serve", "eyestate", "--port", str(port)]
        args += ["--metrics-port", "0", "--backend", backend]
    if backend == "triton":
        triton = TritonServer(ROOT / "model_repository", free_port(), free_port(), free_port())
        triton.start()
        args += ["--triton-url", triton.grpc_url]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        wait_serving(f"127.0.0.1:{port}")
        return [
            {
                "backend": backend,
                "encoding": encoding,
                **asyncio.run(load(f"127.0.0.1:{port}", messages, batch, concurrency, seconds)),
            }
            for encoding, messages in crops.items()
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
    parser.add_argument("--backends", default="onnxruntime,triton,grpc echo")
    parser.add_argument("--encodings", default="raw,png", help="crop encodings to send: raw (gray8), png")
    parser.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        asyncio.run(serve_echo(args.serve_echo))
        return
    crops = {encoding: sample_crops(max(BATCHES), encoding) for encoding in args.encodings.split(",")}
    rows = [
        {"encoding": encoding, **row}
        for encoding, messages in crops.items()
        for row in raw_onnxruntime(messages, args.seconds)
    ]
    for backend in args.backends.split(","):
        rows += bench_backend(backend, crops, args.seconds)
    print(f"{'backend':<16}{'crops':>6}{'batch':>6}{'conc':>6}{'crops/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'client':>8}")
    for r in rows:
        print(
            f"{r['backend']:<16}{r['encoding']:>6}{r['batch']:>6}{r['concurrency']:>6}{r['crops_per_s']:>12,.0f}"
            f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r.get('client_cores', 0):>8.2f}"
        )
    print_ratios(rows)


def print_ratios(rows: list[dict]) -> None:
    """The two service-overhead figures, from raw crops: one crop's p50 over the gRPC echo floor, and the best
    batched crops/s over the same batches done in-process."""

    def cell(backend: str, batch: int) -> list[dict]:
        return [r for r in rows if r["backend"] == backend and r["encoding"] == "raw" and r["batch"] == batch]

    single, echo = cell("onnxruntime", 1), cell("grpc echo", 1)
    if single and echo:
        service_p50 = min(r["p50_ms"] for r in single if r["concurrency"] == 1)
        echo_p50 = min(r["p50_ms"] for r in echo if r["concurrency"] == 1)
        print(f"single crop: p50 {service_p50:.2f} ms = {service_p50 / echo_p50:.2f}x the echo floor {echo_p50:.2f} ms")
    batch = max(BATCHES)
    served, in_process = cell("onnxruntime", batch), cell("raw onnxruntime", batch)
    if served and in_process:
        best = max(served, key=lambda r: r["crops_per_s"])
        floor = in_process[0]["crops_per_s"]
        print(
            f"batches of {batch}: {best['crops_per_s']:,.0f} crops/s = {best['crops_per_s'] / floor:.2f}x in-process "
            f"({floor:,.0f} crops/s), while the load generator itself used {best['client_cores']:.2f} cores"
        )


if __name__ == "__main__":
    main()
