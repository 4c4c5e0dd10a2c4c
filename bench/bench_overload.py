"""Overload: does the eye-state service refuse what it cannot serve in time, and keep its goodput?

    .venv/bin/python bench/bench_overload.py [--limit 64] [--crops 8] [--overload 256] [--max-pending 128]
        [--seconds 10] [--json runs/bench_overload.json]

Starts the eye-state service with `--max-concurrent-rpcs LIMIT` and drives it with closed-loop callers (one
request of CROPS real-size crops at a time each, 0.5 s deadlines): first LIMIT callers (its capacity), then
OVERLOAD callers (default 4x LIMIT; the hostile probe used 2,048 callers of 2 crops, which run inline). A refused
caller waits 10 ms before it tries again, as a well-behaved client would: refused is RESOURCE_EXHAUSTED from
admission, or CANCELLED from gRPC core's backlog limit (`--max-pending-rpcs`), which refuses before any Python
runs. Goodput counts the answers that came back OK within their deadline. With two or more CPUs the service runs
on CPU 0 and the callers on the others, so that the load generator's own work is not counted against the service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import cv2
import grpc
import numpy as np

from blinkstack.client import aio_stubs
from blinkstack.local.processes import service_process
from blinkstack.services import EYESTATE
from blinkstack.tools.reports import write_json
from blinkstack.v1 import eyestate_pb2, types_pb2


async def drive(address: str, callers: int, seconds: float, crops: int) -> dict:
    crop = types_pb2.Image(
        encoded=cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (40, 40), np.uint8))[1].tobytes()
    )
    request = eyestate_pb2.ClassifyEyesRequest(crops=eyestate_pb2.CropBatch(crops=[crop] * crops))
    codes: Counter = Counter()
    stubs = aio_stubs(address)
    try:
        stub = stubs.eyestate
        await stub.ClassifyEyes(request, timeout=10)
        end = time.perf_counter() + seconds

        async def caller() -> None:
            while time.perf_counter() < end:
                try:
                    await stub.ClassifyEyes(request, timeout=0.5)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1
                    if exc.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED):
                        await asyncio.sleep(0.01)

        await asyncio.gather(*(caller() for _ in range(callers)))
    finally:
        await stubs.close()
    return {"callers": callers, "goodput_per_s": codes["OK"] / seconds, "codes": dict(codes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=64, help="--max-concurrent-rpcs of the service")
    parser.add_argument("--crops", type=int, default=8, help="crops per request (<= 4 run inline)")
    parser.add_argument("--overload", type=int, help="callers of the overload run (default 4x --limit)")
    parser.add_argument(
        "--max-pending", type=int, default=128, help="--max-pending-rpcs of the service (1000: gRPC's own default)"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    env = {"BLINKSTACK_MAX_CONCURRENT_RPCS": str(args.limit), "BLINKSTACK_MAX_PENDING_RPCS": str(args.max_pending)}
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = set(cpus[:1]) if len(cpus) > 1 else None
    if server_cpus:
        os.sched_setaffinity(0, set(cpus[1:]))
    with service_process(EYESTATE, env, server_cpus) as server:
        capacity = asyncio.run(drive(server.address, args.limit, args.seconds, args.crops))
        overload = asyncio.run(drive(server.address, args.overload or 4 * args.limit, args.seconds, args.crops))
    ratio = overload["goodput_per_s"] / capacity["goodput_per_s"]
    for name, run in (("at capacity", capacity), ("at 4x", overload)):
        print(f"{name:12s} {run['callers']:4d} callers: goodput {run['goodput_per_s']:7.1f} requests/s  {run['codes']}")
    print(f"goodput at {overload['callers']} callers: {ratio:.0%} of the goodput at capacity")
    write_json(args.json, {"capacity": capacity, "overload": overload, "ratio": ratio})


if __name__ == "__main__":
    main()
