"""Hostile requests against the real services: how fast each is refused, what it costs in memory, and whether
health checks keep being answered meanwhile.

    .venv/bin/python bench/bench_hostile.py [--fuzz-cases 1200] [--json runs/bench_hostile.json]

Starts Redis and the three services as processes (like `blinkstack up`), then sends each attack while a thread
polls grpc.health every 20 ms and another samples the target's RSS every 5 ms. Prints, per attack: status
codes (an attack may be several requests at once), time to the last answer, the RSS increase and the RSS at its
peak, and the longest health answer meanwhile. Then a fuzz run (mutated messages to every RPC): the status codes
seen, and whether any process died.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import grpc
import numpy as np
import psutil

from blinkstack.client import Client, channel
from blinkstack.local.processes import ServiceProcess, free_port, service_process
from blinkstack.local.redis_server import RedisServer
from blinkstack.services import AGGREGATOR, DETECTOR, EYESTATE
from blinkstack.tools.hostile import jpeg_claiming, mutations, png_bomb, scan_bomb
from blinkstack.tools.reports import write_json
from blinkstack.v1 import aggregator_pb2, detector_pb2, eyestate_pb2, types_pb2


class Watcher:
    """Peak RSS of a process and the slowest health answer of a service while an attack runs."""

    def __init__(self, pid: int, address: str) -> None:
        self.process, self.address = psutil.Process(pid), address
        self.stop = threading.Event()
        self.base = self.peak = self.process.memory_info().rss
        self.slowest_health = 0.0

    def _memory(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def _health(self) -> None:
        with Client(self.address, timeout_s=30) as client:
            while not self.stop.wait(0.02):
                start = time.perf_counter()
                client.health()
                self.slowest_health = max(self.slowest_health, time.perf_counter() - start)

    def __enter__(self) -> Watcher:
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._memory, self._health)]
        for thread in self.threads:
            thread.start()
        time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.1)
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def attacks(addresses: dict[str, str]) -> dict[str, tuple[str, str, object, int]]:
    """name -> (service, method, request, how many at once)."""
    png, jpeg = types_pb2.Image(encoded=png_bomb()), types_pb2.Image(encoded=jpeg_claiming(20000, 20000))
    tiny = types_pb2.Image(raw=types_pb2.RawImage(pixels=b"\x00", width=1, height=1, format=1))
    huge_boxes = [types_pb2.Box(x=-4094.5, y=-4094.5, width=8190, height=8190)] * 256
    big_crop = types_pb2.Image(encoded=cv2.imencode(".png", np.zeros((1024, 1024), np.uint8))[1].tobytes())
    gradient = np.add.outer(np.arange(4096), np.arange(4096)) % 256  # compresses to well under 4 MB
    large_frame = types_pb2.Image(encoded=cv2.imencode(".jpg", gradient.astype(np.uint8))[1].tobytes())
    scans = types_pb2.Image(encoded=scan_bomb())
    worst_legal = types_pb2.Image(encoded=scan_bomb(repeats=32 - 6))  # 32 scans: the most accepted
    zero_frame = types_pb2.Image(encoded=cv2.imencode(".png", np.zeros((4096, 4096), np.uint8))[1].tobytes())
    edge_boxes = [types_pb2.Box(x=-500, y=-500, width=1024, height=1024)] * 256
    box_bomb = eyestate_pb2.ClassifyEyesRequest(
        frame=eyestate_pb2.FrameWithBoxes(frame=zero_frame, eye_boxes=edge_boxes)
    )
    classify, detect = "/blinkstack.v1.EyeStateService/ClassifyEyes", "/blinkstack.v1.DetectorService/DetectEyes"
    return {
        "PNG 30000x30000 (ClassifyEyes)": ("eyestate", "/blinkstack.v1.EyeStateService/ClassifyEyes",
            eyestate_pb2.ClassifyEyesRequest(crops=eyestate_pb2.CropBatch(crops=[png]))),
        "PNG 30000x30000 (DetectEyes)": ("detector", "/blinkstack.v1.DetectorService/DetectEyes",
            detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(image=png))),
        "JPEG SOF 20000x20000 (DetectEyes)": ("detector", "/blinkstack.v1.DetectorService/DetectEyes",
            detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(image=jpeg))),
        "1x1 frame, 256 boxes of 8190 px": ("eyestate", "/blinkstack.v1.EyeStateService/ClassifyEyes",
            eyestate_pb2.ClassifyEyesRequest(frame=eyestate_pb2.FrameWithBoxes(frame=tiny, eye_boxes=huge_boxes))),
        "17 crops of 1024x1024": ("eyestate", "/blinkstack.v1.EyeStateService/ClassifyEyes",
            eyestate_pb2.ClassifyEyesRequest(crops=eyestate_pb2.CropBatch(crops=[big_crop] * 17))),
        "legal 4096x4096 JPEG (DetectEyes)": ("detector", "/blinkstack.v1.DetectorService/DetectEyes",
            detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(image=large_frame))),
        "garbage bytes (GetStats)": ("aggregator", "/blinkstack.v1.AggregatorService/GetStats", b"\x0a\x02\xc3\x28"),
        "JPEG of 1,006 scans (DetectEyes)": ("detector", detect,
            detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(image=scans))),
        "JPEG of 1,006 scans (ClassifyEyes)": ("eyestate", classify,
            eyestate_pb2.ClassifyEyesRequest(crops=eyestate_pb2.CropBatch(crops=[scans]))),
        "worst legal: 4096^2 JPEG, 32 scans": ("detector", detect,
            detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(image=worst_legal))),
        "4096^2 PNG + 256 edge boxes of 1024": ("eyestate", classify, box_bomb),
        "8 x (4096^2 + 256 edge boxes)": ("eyestate", classify, box_bomb, 8),
        "16 x legal 4096x4096 JPEG": ("detector", detect,
            detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(image=large_frame)), 16),
    }  # fmt: skip


def fuzz(addresses: dict[str, str], per_rpc: int) -> Counter:
    crop = types_pb2.Image(encoded=cv2.imencode(".png", np.ones((24, 24), np.uint8))[1].tobytes())
    raw = types_pb2.Image(raw=types_pb2.RawImage(pixels=b"\x10" * 64, width=8, height=8, format=1))
    valid = {
        ("eyestate", "/blinkstack.v1.EyeStateService/ClassifyEyes", False): eyestate_pb2.ClassifyEyesRequest(
            crops=eyestate_pb2.CropBatch(crops=[crop])
        ),
        ("detector", "/blinkstack.v1.DetectorService/DetectEyes", False): detector_pb2.DetectEyesRequest(
            frame=types_pb2.Frame(image=raw)
        ),
        ("aggregator", "/blinkstack.v1.AggregatorService/PublishEyeStates", True): aggregator_pb2.EyeObservation(
            stream_id="fuzz", track_id=1, seq=1, timestamp_us=1_000_000, left_prob_open=0.5
        ),
        ("aggregator", "/blinkstack.v1.AggregatorService/GetStats", False): aggregator_pb2.GetStatsRequest(
            stream_id="fuzz", track_id=1
        ),
    }  # fmt: skip
    codes: Counter = Counter()
    rng = random.Random(7)
    for (service, method, streaming), message in valid.items():
        with channel(addresses[service]) as ch:
            call = ch.stream_unary(method) if streaming else ch.unary_unary(method)
            for case in mutations(message.SerializeToString(), rng, per_rpc):
                try:
                    call(iter([case]) if streaming else case, timeout=5)
                    codes["OK"] += 1
                except grpc.RpcError as exc:
                    codes[exc.code().name] += 1
    return codes


def attack(server: ServiceProcess, method: str, request: object, at_once: int = 1) -> dict:
    payload = request if isinstance(request, bytes) else request.SerializeToString()
    codes: Counter = Counter()

    def send(ch: grpc.Channel) -> None:
        try:
            ch.unary_unary(method)(payload, timeout=60)
            codes["OK"] += 1
        except grpc.RpcError as exc:
            codes[exc.code().name] += 1

    with channel(server.address) as ch, Watcher(server.process.pid, server.address) as watcher:
        start = time.perf_counter()
        senders = [threading.Thread(target=send, args=(ch,)) for _ in range(at_once)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        elapsed = time.perf_counter() - start
    return {
        "code": ", ".join(f"{n}x {code}" if at_once > 1 else code for code, n in sorted(codes.items())),
        "ms": elapsed * 1e3,
        "rss_increase_mb": (watcher.peak - watcher.base) / 2**20,
        "rss_peak_mb": watcher.peak / 2**20,
        "slowest_health_ms": watcher.slowest_health * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fuzz-cases", type=int, default=2500, help="per fuzzed RPC (4 RPCs)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer(free_port(), Path(tmp)) as redis,
        service_process(EYESTATE) as eyestate,
        service_process(DETECTOR) as detector,
        service_process(
            AGGREGATOR,
            {
                "BLINKSTACK_REDIS_URL": redis.url,
                DETECTOR.address_env: detector.address,
                EYESTATE.address_env: eyestate.address,
            },
        ) as aggregator,
    ):
        servers = {"eyestate": eyestate, "detector": detector, "aggregator": aggregator}
        addresses = {name: s.address for name, s in servers.items()}
        for name, (service, method, request, *at_once) in attacks(addresses).items():
            rows[name] = attack(servers[service], method, request, *at_once)
            r = rows[name]
            print(f"{name:36s} {r['code']:30s} {r['ms']:8.1f} ms  RSS +{r['rss_increase_mb']:6.1f} MB "
                  f"(peak {r['rss_peak_mb']:6.1f} MB)  slowest health {r['slowest_health_ms']:6.1f} ms")  # fmt: skip
        codes = fuzz(addresses, args.fuzz_cases)
        alive = {name: s.process.poll() is None for name, s in servers.items()}
    print(f"fuzz: {sum(codes.values()):,} mutated requests, codes {dict(codes)}; processes alive {alive}")
    write_json(args.json, {"attacks": rows, "fuzz": dict(codes), "alive": alive})


if __name__ == "__main__":
    main()
