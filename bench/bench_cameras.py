"""Many cameras: K concurrent TrackFrames streams, each the real webcam video paced at 30 frames/s, then one
stream unpaced; and the landmark recipe (MediaPipe Face Mesh) on the same frames, for the CPU ratio.

    .venv/bin/python bench/bench_cameras.py [--cameras 1 2 4 8] [--seconds 10] [--json runs/bench_cameras.json]

Starts the stack like `blinkstack up` (embedded ONNX Runtime, the detector's default front end) and, for each
K, runs K `watch` streams at once (each its own stream id, paced like a camera, JPEG-encoding its frames in this
process as a camera would), then one stream unpaced (the single-stream maximum). Per run: frames/s delivered per
stream, end-to-end p50/p99 over all frames, the share answered later than 100 ms and later than 50 ms, and the CPU
time per delivered frame of each component (from its process's CPU time over the run): the three services and
Redis make the stack's server side; "cameras" is this process (video decoding, JPEG encoding, the gRPC clients).

The baseline is what a user would run instead: MediaPipe's own Face Mesh (in `.venv/mediapipe`, `make
mediapipe-env`) on the same JPEG frames in one process, decoding each and following the face in video mode, with
and without `refine_landmarks` (the attention model that refines the eyelids, as the detector's landmark model
does). The stack's server-side CPU per frame is printed as a ratio to each. Without that environment the baseline
is skipped with a note.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from blinkstack.common import paths
from blinkstack.local.stack import Stack, StackConfig
from blinkstack.tools.reports import write_json
from blinkstack.tools.watch import FrameEncoding, WatchResult, read_video, watch

ROOT = Path(__file__).resolve().parents[1]
VIDEO = paths.data_dir() / "video" / "eyeblink8_v8_windows.mp4"
MEDIAPIPE_ENV = ROOT / ".venv" / "mediapipe"
RUNNER = ROOT / "training" / "blinkstack_train" / "face_mesh_runner.py"
SERVER_SIDE = ("detector", "eye-state", "aggregator", "redis")


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


def measure(target: str, processes: dict[str, psutil.Process], cameras: int, frames: int, realtime: bool) -> dict:
    before = cpu_seconds(processes)
    results, wall = run(target, cameras, frames, realtime, f"k{cameras}-{'paced' if realtime else 'max'}")
    after = cpu_seconds(processes)
    delivered = sum(len(r.frames) for r in results)
    latencies = np.array([f.latency_s for r in results for f in r.frames])
    per_frame_ms = {name: (after[name] - before[name]) / max(delivered, 1) * 1e3 for name in processes}
    return {
        "cameras": cameras,
        "paced": realtime,
        "frames_per_s_per_stream": float(np.mean([len(r.frames) / r.elapsed_s for r in results])),
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "late_100ms_share": float(np.mean(latencies > 0.1)),
        "late_50ms_share": float(np.mean(latencies > 0.05)),
        "errors": [r.error for r in results if r.error],
        "cores": {name: (after[name] - before[name]) / wall for name in processes},
        "cpu_ms_per_frame": per_frame_ms,
        "server_cpu_ms_per_frame": sum(per_frame_ms[name] for name in SERVER_SIDE),
    }


def camera_frames(count: int) -> list[bytes]:
    """The video's first `count` frames as the cameras send them (JPEG at the watch quality)."""
    return [FrameEncoding().jpeg(frame) for frame in read_video(VIDEO, count)]


def landmark_recipe(frames: int) -> dict[str, float] | None:
    """MediaPipe Face Mesh's CPU ms per frame on the same frames, plain and with refine_landmarks."""
    python = MEDIAPIPE_ENV / "bin" / "python"
    if not python.exists():
        return None
    jpegs = camera_frames(frames)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "frames.npz"
        np.savez(source, jpeg=np.array(jpegs, dtype=object), stream=np.array(["video"] * len(jpegs)))
        for name, flags in (("face_mesh", []), ("face_mesh_refined", ["--refine"])):
            out = Path(tmp) / f"{name}.npz"
            subprocess.run([str(python), str(RUNNER), str(source), str(out), *flags], check=True, capture_output=True)
            result[name] = float(np.load(out)["cpu_s"]) / len(jpegs) * 1e3
    return result


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
        measure(target, processes, 1, 60, False)  # warm-up: sessions, connections, first detections
        for cameras, realtime in [(k, True) for k in args.cameras] + [(1, False)]:
            r = measure(target, processes, cameras, frames, realtime)
            rows.append(r)
            parts = ", ".join(f"{name} {ms:.2f}" for name, ms in r["cpu_ms_per_frame"].items())
            print(
                f"{cameras} camera(s) {'at 30 fps' if realtime else 'unpaced  '}: "
                f"{r['frames_per_s_per_stream']:6.1f} frames/s each, p50 {r['p50_ms']:6.1f} ms, "
                f"p99 {r['p99_ms']:6.1f} ms, later than 50 ms {r['late_50ms_share']:.1%} | CPU ms per frame: "
                f"server {r['server_cpu_ms_per_frame']:.2f} ({parts})"
                + (f" | errors {r['errors']}" if r["errors"] else "")
            )
    baseline = landmark_recipe(frames)
    report = {"runs": rows, "landmark_recipe_cpu_ms_per_frame": baseline}
    if baseline is None:
        print(f"landmark recipe: skipped (no {MEDIAPIPE_ENV}; `make mediapipe-env`)")
    else:
        stack_ms = float(np.median([r["server_cpu_ms_per_frame"] for r in rows]))
        report["stack_server_cpu_ms_per_frame_median"] = stack_ms
        report["ratio_to_landmark_recipe"] = {name: stack_ms / ms for name, ms in baseline.items()}
        for name, ms in baseline.items():
            print(
                f"landmark recipe, MediaPipe {name} (decode + landmarks, one process): {ms:.2f} ms CPU per frame; "
                f"the stack's server side (median over the runs above, {stack_ms:.2f} ms): {stack_ms / ms:.2f}x"
            )
    write_json(args.json, report)


if __name__ == "__main__":
    main()
