"""Soak: the whole stack at 30 frames/s for minutes; memory slope and latency drift per process.

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--json runs/bench_soak.json]

Starts the stack like `blinkstack up` and streams the real webcam video through TrackFrames paced at 30
frames/s, again and again (a new stream id per pass), while sampling each process's resident memory every
5 s. Prints, per process, the RSS slope (MB/min, least squares over the run after the first minute's warm-up,
and over its second half alone: a slope that levels off is warm-up, one that does not is a leak) and the
end-to-end latency p99 of the first and the last minute, and their drift.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from blinkstack.common import paths
from blinkstack.local.stack import Stack, StackConfig
from blinkstack.tools.reports import write_json
from blinkstack.tools.watch import watch

VIDEO = paths.data_dir() / "video" / "eyeblink8_v8_windows.mp4"


def sample_memory(processes: dict[str, psutil.Process], stop: threading.Event, every_s: float) -> dict[str, list]:
    samples: dict[str, list] = {name: [] for name in processes}
    start = time.monotonic()
    while not stop.wait(every_s):
        for name, process in processes.items():
            samples[name].append((time.monotonic() - start, process.memory_info().rss / 2**20))
    return samples


def slope_mb_per_min(points: list[tuple[float, float]], warmup_s: float = 60.0) -> float:
    """Least-squares RSS slope of the samples taken at or after `warmup_s` seconds."""
    kept = [(t, mb) for t, mb in points if t >= warmup_s] or points
    t, mb = np.array(kept).T
    return float(np.polyfit(t / 60.0, mb, 1)[0]) if len(t) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    latencies: list[tuple[float, float]] = []  # (seconds since start, end-to-end latency)
    with tempfile.TemporaryDirectory() as tmp, Stack(StackConfig.on_free_ports(Path(tmp))) as stack:
        processes = {s.name: psutil.Process(s.process.pid) for s in stack.services}
        processes["redis"] = psutil.Process(stack.redis.process.pid)
        stop = threading.Event()
        memory: dict[str, list] = {}
        sampler = threading.Thread(target=lambda: memory.update(sample_memory(processes, stop, 5.0)))
        sampler.start()
        start, run = time.monotonic(), 0
        while time.monotonic() - start < args.minutes * 60:
            remaining = int((args.minutes * 60 - (time.monotonic() - start)) * 30)
            result = watch(
                str(VIDEO), stack.config.address(stack.config.aggregator_port), f"soak-{run}", realtime=True,
                max_frames=max(1, min(1956, remaining)), progress=False,
            )  # fmt: skip
            offset = time.monotonic() - start - result.elapsed_s
            latencies += [(offset + f.timestamp_us / 1e6, f.latency_s) for f in result.frames]
            run += 1
        stop.set()
        sampler.join()
    first = [ms for t, ms in latencies if t < 60]
    last = [ms for t, ms in latencies if t >= latencies[-1][0] - 60]
    p99_first, p99_last = (float(np.percentile(np.array(x) * 1e3, 99)) for x in (first, last))
    report = {
        "minutes": args.minutes,
        "frames": len(latencies),
        "rss_slope_mb_per_min": {name: slope_mb_per_min(points) for name, points in memory.items()},
        "rss_slope_second_half_mb_per_min": {
            name: slope_mb_per_min(points, args.minutes * 30) for name, points in memory.items()
        },
        "rss_end_mb": {name: points[-1][1] for name, points in memory.items() if points},
        "p99_ms_first_minute": p99_first,
        "p99_ms_last_minute": p99_last,
        "p99_drift": p99_last / p99_first - 1.0,
    }
    for name, slope in report["rss_slope_mb_per_min"].items():
        second = report["rss_slope_second_half_mb_per_min"][name]
        print(
            f"{name:11s} RSS {report['rss_end_mb'].get(name, 0):7.1f} MB at the end, slope {slope:+.3f} MB/min "
            f"({second:+.3f} in the second half)"
        )
    print(
        f"{len(latencies)} frames at 30 frames/s; end-to-end p99 {p99_first:.1f} ms in the first minute, "
        f"{p99_last:.1f} ms in the last ({report['p99_drift']:+.1%})"
    )
    write_json(args.json, report)


if __name__ == "__main__":
    main()
