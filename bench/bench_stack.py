"""End to end through the whole stack on the real webcam video: frames/s, per-frame latency, where time goes.

    .venv/bin/python bench/bench_stack.py [--frames 1956] [--json runs/bench_stack.json]

Starts the stack like `blinkstack up` (Redis, eye-state, detector, aggregator as separate processes on
loopback, embedded ONNX Runtime) and streams the video through TrackFrames twice: as fast as the stack answers
(throughput) and paced at the video's 30 frames/s like a camera (latency). Latency is frame sent -> its result
back at the client; the stage split comes from the aggregator's per-frame timings.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from blinkstack.local.stack import Stack, StackConfig
from blinkstack.tools.reports import summarize, write_json
from blinkstack.tools.watch import watch
from blinkstack_train.data import DEFAULT_DATA_DIR

VIDEO = DEFAULT_DATA_DIR / "video" / "eyeblink8_v8_windows.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1956)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig.on_free_ports(Path(tmp))
        with Stack(config) as stack:
            target = stack.config.address(config.aggregator_port)
            results = {}
            for mode, realtime in (("max_speed", False), ("realtime_30fps", True)):
                run = watch(str(VIDEO), target, f"bench-{mode}", realtime=realtime, max_frames=args.frames)
                results[mode] = summarize(run)
    report = {"cores": len(os.sched_getaffinity(0)), "frames": args.frames, **results}
    for mode, summary in results.items():
        t = summary["timings"]
        print(
            f"{mode:15s} {summary['frames_per_s']:6.1f} frames/s  end-to-end p50 {t['end_to_end']['p50_ms']:6.1f} ms  "
            f"p99 {t['end_to_end']['p99_ms']:6.1f} ms | aggregator stages p50: detect {t['detect']['p50_ms']:.1f} ms, "
            f"classify {t['classify']['p50_ms']:.1f} ms, aggregate {t['aggregate']['p50_ms']:.1f} ms"
        )
    write_json(args.json, report)


if __name__ == "__main__":
    main()
