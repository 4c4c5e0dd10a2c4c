"""Detector speed on the real webcam video (640x480, one face): per-stage split in-process, and the gRPC service,
for each front end.

    .venv/bin/python bench/bench_detector.py [--frames 600] [--detect-every 3] [--json runs/bench_detector.json]

1. The models alone, one ONNX Runtime thread: the face landmark model on one face region and CenterFace on one
   frame (p50/p99 ms per call).
2. In-process, per frame, each front end as one camera's stream: JPEG decode -> faces (prepare: the face region
   warped upright or the frame scaled; infer: the models on embedded ONNX Runtime; decode: outputs -> faces, eye
   crops) -> crop (both eye crops cut and preprocessed for the eye-state model). Prints frames/s, p50/p99 ms for
   the whole frame and each stage, and how many frames ran the face detector.
3. Through `blinkstack serve detector` (its own process, loopback), JPEG frames, for the landmark front end,
   CenterFace on every frame, and CenterFace every Nth frame with optical flow: one StreamDetectEyes stream with
   frames back to back (throughput) and one paced at 30 frames/s like a camera (per-frame latency).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import numpy as np

from blinkstack.client import Client
from blinkstack.common.images import box_message, crop
from blinkstack.common.model_repository import FACE_DETECTOR_MODEL, FACE_LANDMARK_MODEL, resolve_model_file
from blinkstack.common.onnx_runtime import create_session
from blinkstack.common.preprocess import decode_image, preprocess_batch
from blinkstack.detector.front_end import embedded_models
from blinkstack.local.processes import service_process
from blinkstack.services import DETECTOR
from blinkstack.tools.reports import write_json
from blinkstack.tools.watch import FrameEncoding, read_video
from blinkstack.v1 import detector_pb2, detector_pb2_grpc, types_pb2
from blinkstack_train.data import DEFAULT_DATA_DIR

ROOT = Path(__file__).resolve().parents[1]
VIDEO = DEFAULT_DATA_DIR / "video" / "eyeblink8_v8_windows.mp4"


def read_jpegs(count: int) -> list[bytes]:
    """The video's first `count` frames as the cameras send them (JPEG at the watch quality)."""
    return [FrameEncoding().jpeg(frame) for frame in read_video(VIDEO, count)]


def stats(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def models_alone(repository: Path, runs: int = 300) -> dict:
    """Each model's session.run on one input, one thread."""
    rng = np.random.default_rng(0)
    inputs = {
        FACE_LANDMARK_MODEL: {"images": rng.random((1, 192, 192, 3), dtype=np.float32)},
        FACE_DETECTOR_MODEL: {"images": rng.uniform(0, 255, (1, 3, 256, 320)).astype(np.float32)},
    }
    result = {}
    for name, feed in inputs.items():
        session = create_session(resolve_model_file(repository / name)[0], intra_op_threads=1)
        for _ in range(20):
            session.run(None, feed)
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feed)
            seconds.append(time.perf_counter() - start)
        result[name] = stats(seconds)
    return result


async def in_process(jpegs: list[bytes], front_end: str, detect_every: int) -> dict:
    models = embedded_models(ROOT / "model_repository", front_end, detect_every=detect_every)
    await models.start()
    stream = models.stream()
    stages: dict[str, list[float]] = {
        k: [] for k in ("decode", "prepare", "infer", "decode_out", "flow", "crop", "total")
    }
    detected_frames = 0
    for jpeg in jpegs:
        start = time.perf_counter()
        frame = decode_image(jpeg, gray=True)  # as the detector service decodes frames
        decoded = time.perf_counter()
        faces, times, followed = await stream.faces(frame)
        found = time.perf_counter()
        eyes = [e for face in faces for e in (face.left_eye, face.right_eye)]
        crops = [crop(frame, box_message(*e.crop.box, e.crop.angle_deg), "eye") for e in eyes]
        if crops:
            preprocess_batch(crops)
        end = time.perf_counter()
        detected_frames += not followed
        stages["decode"].append(decoded - start)
        stages["prepare"].append(times.prepare)
        stages["infer"].append(times.infer)
        stages["decode_out"].append(times.decode)
        stages["flow"].append(times.flow)
        stages["crop"].append(end - found)
        stages["total"].append(end - start)
    await models.close()
    total = stages["total"]
    return {
        "frames_per_s": len(total) / sum(total),
        "frames_running_the_face_detector": detected_frames,
        **{k: stats(v) for k, v in stages.items()},
    }


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


def through_service(jpegs: list[bytes], front_end: str, detect_every: int = 0) -> dict:
    """The two streams against a fresh server with this front end."""
    env = {"BLINKSTACK_DETECTOR_FRONT_END": front_end, "BLINKSTACK_DETECTOR_DETECT_EVERY": str(detect_every)}
    with service_process(DETECTOR, env) as server, Client(server.address) as client:
        stub = client.detector
        requests = [
            detector_pb2.DetectEyesRequest(
                frame=types_pb2.Frame(stream_id="bench", seq=i, image=types_pb2.Image(encoded=jpeg)), eye_crops=True
            )
            for i, jpeg in enumerate(jpegs)
        ]
        stub.DetectEyes(requests[0], timeout=30)  # warm-up
        return {
            name: stream(stub, requests, fps) for name, fps in (("stream_back_to_back", 0.0), ("stream_at_30fps", 30.0))
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--detect-every", type=int, default=3, help="for the CenterFace landmark-flow runs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    jpegs = read_jpegs(args.frames)
    variants = {
        "landmarks": ("landmarks", 0),
        "centerface": ("centerface", 1),
        f"centerface_every_{args.detect_every}": ("centerface", args.detect_every),
    }
    result = {
        "frames": len(jpegs),
        "frame_size": "640x480",
        "cores": len(os.sched_getaffinity(0)),
        "models_alone": models_alone(ROOT / "model_repository"),
        "in_process": {name: asyncio.run(in_process(jpegs, *v)) for name, v in variants.items()},
        "service": {name: through_service(jpegs, *v) for name, v in variants.items()},
    }
    for name, s in result["models_alone"].items():
        print(f"{name} alone, one thread: p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms per call")
    for name, p in result["in_process"].items():
        print(
            f"in-process {name}, {len(jpegs)} frames 640x480: {p['frames_per_s']:.1f} frames/s, face detector on "
            f"{p['frames_running_the_face_detector']} frames"
        )
        for stage in ("decode", "prepare", "infer", "decode_out", "flow", "crop", "total"):
            print(f"  {stage:12s} p50 {p[stage]['p50_ms']:6.2f} ms   p99 {p[stage]['p99_ms']:6.2f} ms   "
                  f"mean {p[stage]['mean_ms']:6.2f} ms")  # fmt: skip
    for label, runs in result["service"].items():
        for name, s in runs.items():
            latency = f", p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms" if "p50_ms" in s else ""
            print(f"service {label} {name}: {s['frames_per_s']:.1f} frames/s{latency}")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
