"""Detector speed on the real webcam video (640x480, one face): per-stage split in-process, and the gRPC service.

    .venv/bin/python bench/bench_detector.py [--frames 600] [--input-width 320] [--detect-every 3]
        [--json runs/bench_detector.json]

1. In-process, per frame: JPEG decode -> detect (prepare: colour + resize; infer: CenterFace on embedded ONNX
   Runtime; decode: maps -> faces, eye boxes) -> crop (both eye crops cut and preprocessed for the eye-state
   model). Prints frames/s and p50/p99 ms for the whole frame and for each stage.
2. Through `blinkstack serve detector` (its own process, loopback), JPEG frames: unary DetectEyes one at a
   time; one StreamDetectEyes stream with frames back to back (throughput); and one paced at 30 frames/s like
   a camera (per-frame latency). Prints frames/s and p50/p99 ms per frame.
3. The two streams again on a server started with `--detect-every N`: the face model on every Nth frame,
   landmark optical flow in between.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import cv2
import grpc
import numpy as np

from blinkstack.common.images import box_message, crop
from blinkstack.common.preprocess import decode_image, preprocess_batch
from blinkstack.detector.backend import OnnxRuntimeDetector
from blinkstack.detector.engine import DEFAULT_INPUT_WIDTH, FaceDetector
from blinkstack.local.processes import service_process
from blinkstack.services import DETECTOR
from blinkstack.v1 import detector_pb2, detector_pb2_grpc, types_pb2
from blinkstack_train.data import DEFAULT_DATA_DIR

ROOT = Path(__file__).resolve().parents[1]
VIDEO = DEFAULT_DATA_DIR / "video" / "eyeblink8_v8_windows.mp4"


def read_jpegs(count: int) -> list[bytes]:
    capture = cv2.VideoCapture(str(VIDEO))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return frames


def stats(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


async def in_process(jpegs: list[bytes], input_width: int) -> dict:
    backend = OnnxRuntimeDetector(ROOT / "model_repository")
    await backend.start()
    detector = FaceDetector(backend, input_width)
    stages: dict[str, list[float]] = {k: [] for k in ("decode", "prepare", "infer", "decode_maps", "crop", "total")}
    await detector.detect(decode_image(jpegs[0]))  # warm-up
    for jpeg in jpegs:
        start = time.perf_counter()
        frame = decode_image(jpeg)
        decoded = time.perf_counter()
        faces, times = await detector.detect(frame)
        detected = time.perf_counter()
        crops = [crop(frame, box_message(*e.box), "eye") for face in faces for e in (face.left_eye, face.right_eye)]
        if crops:
            preprocess_batch(crops)
        end = time.perf_counter()
        stages["decode"].append(decoded - start)
        stages["prepare"].append(times.prepare)
        stages["infer"].append(times.infer)
        stages["decode_maps"].append(times.decode)
        stages["crop"].append(end - detected)
        stages["total"].append(end - start)
    await backend.close()
    total = stages["total"]
    return {"frames_per_s": len(total) / sum(total), **{k: stats(v) for k, v in stages.items()}}


def stream(stub: detector_pb2_grpc.DetectorServiceStub, requests: list, fps: float) -> dict:
    """One StreamDetectEyes call; frames sent back to back (fps=0: throughput) or paced like a camera (latency)."""
    sent: dict[int, float] = {}

    def feed():
        start = time.perf_counter()
        for i, r in enumerate(requests):
            if fps:
                time.sleep(max(0.0, start + i / fps - time.perf_counter()))
            sent[r.frame.seq] = time.perf_counter()
            yield r

    start = time.perf_counter()
    latencies = [time.perf_counter() - sent[resp.seq] for resp in stub.StreamDetectEyes(feed(), timeout=600)]
    elapsed = time.perf_counter() - start
    # Back to back, frames queue in flow-control buffers, so only the throughput is meaningful there.
    return {"frames_per_s": len(latencies) / elapsed, **(stats(latencies) if fps else {})}


def through_service(jpegs: list[bytes], input_width: int, detect_every: int = 1) -> dict:
    """Unary (only with detect_every 1: it has no effect there) and the two streams, against a fresh server."""
    env = {"BLINKSTACK_DETECTOR_INPUT_WIDTH": str(input_width), "BLINKSTACK_DETECTOR_DETECT_EVERY": str(detect_every)}
    with service_process(DETECTOR, env) as server, grpc.insecure_channel(server.address) as channel:
        stub = detector_pb2_grpc.DetectorServiceStub(channel)
        requests = [
            detector_pb2.DetectEyesRequest(
                frame=types_pb2.Frame(stream_id="bench", seq=i, image=types_pb2.Image(encoded=jpeg))
            )
            for i, jpeg in enumerate(jpegs)
        ]
        stub.DetectEyes(requests[0], timeout=30)  # warm-up
        unary = []
        if detect_every == 1:  # unary calls always detect: measured once, on the plain server
            for r in requests:
                start = time.perf_counter()
                stub.DetectEyes(r, timeout=30)
                unary.append(time.perf_counter() - start)
        streams = {
            name: stream(stub, requests, fps) for name, fps in (("stream_back_to_back", 0.0), ("stream_at_30fps", 30.0))
        }
    if not unary:
        return streams
    return {"unary_one_at_a_time": {"frames_per_s": len(unary) / sum(unary), **stats(unary)}, **streams}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--input-width", type=int, default=DEFAULT_INPUT_WIDTH)
    parser.add_argument("--detect-every", type=int, default=3, help="for the landmark-flow streams")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    jpegs = read_jpegs(args.frames)
    result = {
        "frames": len(jpegs),
        "frame_size": "640x480",
        "input_width": args.input_width,
        "cores": len(os.sched_getaffinity(0)),
        "in_process": asyncio.run(in_process(jpegs, args.input_width)),
        "service": through_service(jpegs, args.input_width),
        f"service_detect_every_{args.detect_every}": through_service(jpegs, args.input_width, args.detect_every),
    }
    p = result["in_process"]
    print(f"in-process, {len(jpegs)} frames 640x480, input width {args.input_width}: {p['frames_per_s']:.1f} frames/s")
    for stage in ("decode", "prepare", "infer", "decode_maps", "crop", "total"):
        print(f"  {stage:12s} p50 {p[stage]['p50_ms']:6.2f} ms   p99 {p[stage]['p99_ms']:6.2f} ms")
    for label, key in (
        ("service", "service"),
        (f"--detect-every {args.detect_every}", f"service_detect_every_{args.detect_every}"),
    ):
        for name, s in result[key].items():
            latency = f", p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms" if "p50_ms" in s else ""
            print(f"{label} {name}: {s['frames_per_s']:.1f} frames/s{latency}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
