"""The aggregator's Redis writes at fleet scale: camera frames/s one Redis (or a local Redis Cluster) commits.

    .venv/bin/python bench/bench_redis.py [--cameras 1 16 64 256] [--seconds 5] [--cluster-masters 3]
                                          [--json runs/bench_redis.json]

Each simulated camera commits what TrackFrames commits per frame with one face: one transaction holding the
camera stream's hash (tracker state) and the track's hash (engine state), a blink event every 30 frames, through
the aggregator's own `RedisStore` (the Lua script, AOF with `appendfsync always`). The cameras run back to back
in one asyncio process, so the figures are Redis' capacity, not a camera's pace; each camera commits on its own
(`RedisStore.apply`, as TrackFrames did) and then through the aggregator's `GroupCommit`. Prints frame commits/s,
commit p50/p99 and the cores redis-server used, first on one Redis, then on a local Redis Cluster with that many
masters (all on this machine: it shows the cluster path's cost, not a scale-out; the masters share its cores).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import psutil

from blinkstack.aggregator.engine import TrackState
from blinkstack.aggregator.ingest import GroupCommit
from blinkstack.aggregator.store import RedisStore, StoreSettings, Write
from blinkstack.local.processes import free_port
from blinkstack.local.redis_cluster import LocalRedisCluster
from blinkstack.local.redis_server import RedisServer
from blinkstack.tools.reports import write_json

Commit = Callable[[list[Write]], Awaitable[list]]
STATE = TrackState().to_json()  # the engine state's size as stored
EVENT = {"stream_id": "cam", "track_id": "1", "type": "BLINK", "phase": "ENDED", "start_us": "0", "end_us": "1"}


async def camera(store: RedisStore, commit: Commit, name: str, end: float, latencies: list[float]) -> None:
    seq = 0
    while time.perf_counter() < end:
        seq += 1
        events = [EVENT] if seq % 30 == 0 else []
        writes = [
            Write(store.keys.stream(name), name, seq, {"timestamp_us": str(seq * 33_333), "tracker": "{}"}),
            Write(store.keys.track(name, 1), name, seq, {"state": STATE}, events),
        ]
        start = time.perf_counter()
        await commit(writes)
        latencies.append(time.perf_counter() - start)


async def measure(url: str, cluster: bool, cameras: int, seconds: float, shards: int, grouped: bool) -> dict:
    store = RedisStore(
        StoreSettings(url, redis_prefix=f"bench{cameras}{grouped}", event_shards=shards, redis_cluster=cluster)
    )
    commit = GroupCommit(store).commit if grouped else store.apply
    latencies: list[float] = []
    try:
        end = time.perf_counter() + seconds
        await asyncio.gather(*(camera(store, commit, f"cam-{i}", end, latencies) for i in range(cameras)))
    finally:
        await store.close()
    values = np.array(latencies) * 1e3
    return {
        "commits_per_s": len(latencies) / seconds,
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
    }


def run(label: str, url: str, pids: list[int], cluster: bool, args: argparse.Namespace) -> list[dict]:
    processes = [psutil.Process(pid) for pid in pids]
    rows = []
    for grouped in (False, True):
        for cameras in args.cameras:
            before, start = sum(sum(p.cpu_times()[:2]) for p in processes), time.perf_counter()
            row = asyncio.run(measure(url, cluster, cameras, args.seconds, args.shards, grouped))
            redis_cores = (sum(sum(p.cpu_times()[:2]) for p in processes) - before) / (time.perf_counter() - start)
            commits = "group commit" if grouped else "per camera"
            rows.append({"redis": label, "commits": commits, "cameras": cameras, **row, "redis_cores": redis_cores})
            print(
                f"{label:<20} {commits:<13}{cameras:>5} cameras: {row['commits_per_s']:8,.0f} frames/s, "
                f"p50 {row['p50_ms']:6.2f} ms, p99 {row['p99_ms']:6.2f} ms, redis cores {redis_cores:.2f}"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cluster-masters", type=int, default=3, help="0: skip the cluster")
    parser.add_argument("--shards", type=int, default=12, help="event shards on the cluster")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with RedisServer(free_port(), Path(tmp) / "single") as redis:
            shards, args.shards = args.shards, 1
            rows += run("one Redis", redis.url, [redis.process.pid], False, args)
            args.shards = shards
        if args.cluster_masters:
            cluster = LocalRedisCluster(Path(tmp) / "cluster", args.cluster_masters)
            cluster.start()
            try:
                pids = [node.process.pid for node in cluster.nodes]
                rows += run(f"cluster, {args.cluster_masters} masters", cluster.url, pids, True, args)
            finally:
                cluster.stop()
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
