"""ONNX Runtime latency and throughput of the eye-state model family on this machine.

    .venv/bin/python bench/bench_eye_state_models.py runs/tiny/model.onnx runs/small/model.onnx ... \
        [--json runs/bench_family.json]

Per model: latency per crop at batch 1 on a single thread (p50/p99 over many calls), crops/s at batch 256
with one thread per core, and crops/s per batch size (--sweep): on a CPU a mid-sized batch is fastest, because
a large one's activations no longer fit in cache; the eye-state service runs its micro-batches in chunks of
the best size (--run-batch). Inputs are real-shaped random crops; the cost does not depend on content.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from blinkstack.common.onnx_runtime import create_session
from blinkstack.common.preprocess import INPUT_SHAPE
from blinkstack.tools.reports import write_json


def latency_batch1(model: Path, calls: int) -> dict[str, float]:
    session = create_session(model, intra_op_threads=1)
    x = np.random.default_rng(0).standard_normal((1, *INPUT_SHAPE)).astype(np.float32)
    for _ in range(100):
        session.run(None, {"images": x})
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        session.run(None, {"images": x})
        times[i] = time.perf_counter() - start
    return {"p50_ms": float(np.percentile(times, 50) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3)}


def throughput(model: Path, batch: int, seconds: float) -> float:
    session = create_session(model)
    x = np.random.default_rng(0).standard_normal((batch, *INPUT_SHAPE)).astype(np.float32)
    for _ in range(5):
        session.run(None, {"images": x})
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, {"images": x})
        done += batch
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="ONNX files; the parent folder names the size")
    parser.add_argument("--calls", type=int, default=3000, help="batch-1 calls per model")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per throughput measurement")
    parser.add_argument("--sweep", default="1,8,16,32,64,128,256", help="batch sizes for the crops/s sweep")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    sweep = [int(b) for b in args.sweep.split(",")]
    rows = []
    for model in args.models:
        b1 = latency_batch1(model, args.calls)
        rows.append(
            {
                "model": model.parent.name,
                "path": str(model),
                "bytes": model.stat().st_size,
                "batch1_single_thread_p50_ms": b1["p50_ms"],
                "batch1_single_thread_p99_ms": b1["p99_ms"],
                f"batch{args.batch}_crops_per_s": throughput(model, args.batch, args.seconds),
                "crops_per_s_by_batch": {b: throughput(model, b, args.seconds / 3) for b in sweep},
            }
        )
    print(f"{'model':<10}{'KB':>8}{'b1 p50 ms':>11}{'b1 p99 ms':>11}{f'b{args.batch} crops/s':>16}")
    for r in rows:
        print(
            f"{r['model']:<10}{r['bytes'] / 1024:>8.0f}{r['batch1_single_thread_p50_ms']:>11.3f}"
            f"{r['batch1_single_thread_p99_ms']:>11.3f}{r[f'batch{args.batch}_crops_per_s']:>16,.0f}"
        )
    print(f"\ncrops/s by batch size (one thread per core)\n{'model':<10}" + "".join(f"{b:>9}" for b in sweep))
    for r in rows:
        print(f"{r['model']:<10}" + "".join(f"{r['crops_per_s_by_batch'][b]:>9,.0f}" for b in sweep))
    machine = {"cpus": len(os.sched_getaffinity(0)), "processor": platform.processor() or platform.machine()}
    write_json(args.json, {"machine": machine, "batch": args.batch, "models": rows})


if __name__ == "__main__":
    main()
