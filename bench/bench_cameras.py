"""Many cameras: K concurrent TrackFrames streams, each the real webcam video paced at 30 frames/s.

    .venv/bin/python bench/bench_cameras.py [--cameras 1 2 4 8] [--seconds 10] [--json runs/bench_cameras.json]

Starts the stack like `blinkstack up` and, for each K, runs K `watch` streams at once (each its own stream id,
paced like a camera), then one stream unpaced (the single-stream maximum). Per K: frames/s delivered per
stream, end-to-end p50/p99 over all frames, the share of frames answered later than 100 ms, and the CPU each
component used (cores, from its process's CPU time over the run; "cameras" is this process, which decodes the
video and JPEG-encodes the frames as the cameras would).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from blinkstack.common import paths
from blinkstack.local.stack import Stack, StackConfig
from blinkstack.tools.watch import WatchResult, watch

VIDEO = paths.data_dir() / "video" / "eyeblink8_v8_windows.mp4"
LATE_S = 0.1


def cpu_seconds(processes: dict[str, psutil.Process]) -> dict[str, float]:
    return {name: sum(p.cpu_times()[:2]) for name, p in processes.items()}


def run(target: str, cameras: int, frames: int, realtime: bool, label: str) -> tuple[list[WatchResult], float]:
    results: list[WatchResult] = [None] * cameras  # type: ignore[list-item]

    def one(i: int) -> None:
        results[i] = watch(str(VIDEO), target, f"{label}-{i}", realtime=realtime, max_frames=frames, progress=False)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(cameras)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=10.0, help="video seconds per camera")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    frames = int(args.seconds * 30)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Stack(StackConfig.on_free_ports(Path(tmp))) as stack:
        target = stack.config.address(stack.config.aggregator_port)
        processes = {s.name: psutil.Process(s.process.pid) for s in stack.services}
        processes["redis"] = psutil.Process(stack.redis.process.pid)
        processes["cameras"] = psutil.Process()  # this process: the K clients decoding and sending the video
        for cameras, realtime in [(k, True) for k in args.cameras] + [(1, False)]:
            before = cpu_seconds(processes)
            results, wall = run(target, cameras, frames, realtime, f"k{cameras}-{'paced' if realtime else 'max'}")
            after = cpu_seconds(processes)
            latencies = np.array([f.latency_s for r in results for f in r.frames])
            rows.append({
                "cameras": cameras,
                "paced": realtime,
                "frames_per_s_per_stream": float(np.mean([len(r.frames) / r.elapsed_s for r in results])),
                "p50_ms": float(np.percentile(latencies, 50) * 1e3),
                "p99_ms": float(np.percentile(latencies, 99) * 1e3),
                "late_share": float(np.mean(latencies > LATE_S)),
                "errors": [r.error for r in results if r.error],
                "cores": {name: (after[name] - before[name]) / wall for name in processes},
            })  # fmt: skip
            r = rows[-1]
            cores = ", ".join(f"{name} {c:.2f}" for name, c in r["cores"].items())
            print(
                f"{cameras} camera(s) {'at 30 fps' if realtime else 'unpaced  '}: "
                f"{r['frames_per_s_per_stream']:6.1f} frames/s each, p50 {r['p50_ms']:7.1f} ms, "
                f"p99 {r['p99_ms']:7.1f} ms, late {r['late_share']:.0%} | cores: {cores}"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
