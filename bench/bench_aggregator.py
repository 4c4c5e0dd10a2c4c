"""Aggregator speed: observations/s into the engine with Redis, and event latency to a subscriber.

    .venv/bin/python bench/bench_aggregator.py [--tracks 200] [--per-track 300] [--blinks 100]

A real redis-server (AOF, appendfsync always) and `blinkstack serve aggregator` run in their own processes on
loopback.
1. engine only: `step()` in-process, no Redis (the CPU floor).
2. ingestion: one PublishEyeStateBatches stream carrying `tracks` x `per_track` observations (blink
   timelines at 30 frames/s), one message per time step with every track's observation (like a hub of many
   cameras); observations/s from the first send to the summary.
3. event latency: a subscriber follows SubscribeBlinks while a publisher sends one track's frames paced at
   30 frames/s over PublishEyeStates (one observation per message); latency is the time from sending the
   observation that closes a blink (the eyes reopen) to receiving its BLINK event.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from blinkstack.aggregator.engine import EngineConfig, Observation, TrackState, step
from blinkstack.client import Client
from blinkstack.local.processes import free_port, service_process
from blinkstack.local.redis_server import RedisServer
from blinkstack.services import AGGREGATOR
from blinkstack.tools.reports import write_json
from blinkstack.v1 import aggregator_pb2, aggregator_pb2_grpc

OPEN_P, CLOSED_P = 1 - 2**-10, 2**-10  # confident readings as the webcam model gives them (as in the tests)
FRAME_US = 33_333


def probs(frame: int) -> float:
    """A blink of 6 frames every 30 frames."""
    return CLOSED_P if frame % 30 in range(20, 26) else OPEN_P


def engine_only(count: int) -> float:
    config, state = EngineConfig(), TrackState()
    start = time.perf_counter()
    for i in range(count):
        p = probs(i)
        state, _ = step(state, Observation(1_000_000 + i * FRAME_US, p, p), config)
    return count / (time.perf_counter() - start)


def ingestion(stub: aggregator_pb2_grpc.AggregatorServiceStub, tracks: int, per_track: int) -> dict:
    def requests():
        for i in range(per_track):  # one message per time step: every track's observation of that frame
            p = probs(i)
            yield aggregator_pb2.PublishEyeStatesRequest(
                observations=[
                    aggregator_pb2.EyeObservation(
                        stream_id=f"bench-{track % 8}",
                        track_id=track,
                        seq=i,
                        timestamp_us=1_000_000 + i * FRAME_US,
                        left_prob_open=p,
                        right_prob_open=p,
                    )
                    for track in range(1, tracks + 1)
                ]
            )

    start = time.perf_counter()
    summary = stub.PublishEyeStateBatches(requests(), timeout=600)
    elapsed = time.perf_counter() - start
    return {"observations": summary.accepted, "events": summary.events, "per_s": summary.accepted / elapsed}


def event_latency(stub: aggregator_pb2_grpc.AggregatorServiceStub, blinks: int) -> dict:
    closing_sent: dict[int, float] = {}  # blink end timestamp -> when its closing observation was sent
    latencies: list[float] = []
    ready = threading.Event()

    def subscribe() -> None:
        call = stub.SubscribeBlinks(aggregator_pb2.SubscribeBlinksRequest(stream_ids=["latency"]), timeout=600)
        ready.set()
        for event in call:
            latencies.append(time.perf_counter() - closing_sent[event.end_us])
            if len(latencies) == blinks:
                call.cancel()
                return

    listener = threading.Thread(target=subscribe, daemon=True)
    listener.start()
    ready.wait(10)
    time.sleep(0.5)

    def paced():
        start = time.perf_counter()
        for i in range(30 * blinks + 10):
            time.sleep(max(0.0, start + i * FRAME_US / 1e6 - time.perf_counter()))
            p = probs(i)
            timestamp = 1_000_000 + i * FRAME_US
            if i % 30 == 26:
                closing_sent[timestamp] = time.perf_counter()
            yield aggregator_pb2.EyeObservation(
                stream_id="latency", track_id=1, seq=i, timestamp_us=timestamp, left_prob_open=p, right_prob_open=p
            )

    stub.PublishEyeStates(paced(), timeout=600)
    listener.join(30)
    ms = np.array(latencies) * 1e3
    return {"events": len(latencies), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=200)
    parser.add_argument("--per-track", type=int, default=300)
    parser.add_argument("--blinks", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(free_port(), Path(tmp)) as redis:
        env = {"BLINKSTACK_REDIS_URL": redis.url}
        with service_process(AGGREGATOR, env) as server, Client(server.address) as client:
            stub = client.aggregator
            result = {
                "cores": len(os.sched_getaffinity(0)),
                "engine_only_per_s": engine_only(args.tracks * args.per_track // 4),
                "ingestion": ingestion(stub, args.tracks, args.per_track),
                "event_latency": event_latency(stub, args.blinks),
            }
    ingest, latency = result["ingestion"], result["event_latency"]
    print(f"engine only (no Redis): {result['engine_only_per_s']:,.0f} observations/s")
    print(
        f"PublishEyeStateBatches -> engine -> Redis (AOF, fsync always): {ingest['per_s']:,.0f} observations/s "
        f"({ingest['observations']:,} observations of {args.tracks} tracks, {ingest['events']:,} events)"
    )
    print(
        f"event latency, closing observation -> subscriber: p50 {latency['p50_ms']:.2f} ms, "
        f"p99 {latency['p99_ms']:.2f} ms ({latency['events']} blinks at 30 frames/s)"
    )
    write_json(args.json, result)


if __name__ == "__main__":
    main()
