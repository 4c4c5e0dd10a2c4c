"""The whole stack as a user runs it: `blinkstack up`, `watch` on the real video, `events`, clean shutdown."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2

from blinkstack.local.processes import free_port, port_in_use, stop_process
from blinkstack.local.redis_server import RedisServer
from blinkstack.tools.frames_table import COLUMNS
from blinkstack.tools.watch import watch
from blinkstack.v1 import aggregator_pb2, aggregator_pb2_grpc
from tests.helpers import VIDEO
from tests.helpers.servers import health_status

CLI = (sys.executable, "-m", "blinkstack.cli")
SERVING = health_pb2.HealthCheckResponse.SERVING


class Up:
    """`blinkstack up` in a subprocess on free ports, run from `data_dir`: not the checkout, so every default
    path (the model repository above all) is found from the checkout blinkstack was installed from."""

    def __init__(self, data_dir, ports: dict[str, int]) -> None:
        self.ports, self.data_dir = ports, data_dir
        args = [f"--{name}-port={port}" for name, port in ports.items()]
        self.process = subprocess.Popen(
            [*CLI, "up", "--no-metrics", "--data-dir", str(data_dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=data_dir,
        )
        self.output: list[str] = []

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            self.output.append(line)
            if "stack ready" in line:
                return
            assert time.monotonic() < deadline, "".join(self.output)
        raise AssertionError("blinkstack up ended early:\n" + "".join(self.output))


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    ports = {name: free_port() for name in ("detector", "eyestate", "aggregator", "redis")}
    stack = Up(tmp_path_factory.mktemp("stack"), ports)
    stack.wait_ready()
    yield stack
    if stack.process.poll() is None:  # a test failed before the SIGTERM test: stop it the same way
        stop_process(stack.process, 30)


def test_up_serves_every_component(up):
    for name in ("detector", "eyestate", "aggregator"):
        assert health_status(f"127.0.0.1:{up.ports[name]}") == SERVING, name
    text = "".join(up.output)
    assert f"aggregator  127.0.0.1:{up.ports['aggregator']}" in text and "redis://:***@127.0.0.1" in text
    password = (up.data_dir / "redis" / "redis-auth.conf").read_text().split()[1]
    assert password not in text  # shown redacted; the password is in the file only this user can read
    logs = "".join(p.read_text() for p in (up.data_dir / "logs").glob("*.log"))
    assert password not in logs


def test_a_second_up_on_the_same_ports_fails_clearly(up, tmp_path):
    ports = [f"--{name}-port={port}" for name, port in up.ports.items()]
    second = subprocess.run(
        [*CLI, "up", "--no-metrics", "--data-dir", str(tmp_path), *ports],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert "already in use" in second.stderr and f"redis port {up.ports['redis']}" in second.stderr


def test_watch_processes_the_real_video_and_subscribers_see_the_same_events(up, tmp_path):
    target = f"127.0.0.1:{up.ports['aggregator']}"
    received: list[aggregator_pb2.BlinkEvent] = []
    channel = grpc.insecure_channel(target)
    call = aggregator_pb2_grpc.AggregatorServiceStub(channel).SubscribeBlinks(
        aggregator_pb2.SubscribeBlinksRequest(stream_ids=["video-e2e"], after_id=""), timeout=600
    )
    listener = threading.Thread(target=lambda: received.extend(e for e in _until_cancelled(call)), daemon=True)
    listener.start()
    time.sleep(0.5)
    out = tmp_path / "watch"
    watched = subprocess.run(
        [
            *CLI,
            "watch",
            "--video",
            str(VIDEO),
            "--target",
            target,
            "--stream-id",
            "video-e2e",
            "--max-speed",
            "--out",
            str(out),
            "--annotated",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert watched.returncode == 0, watched.stderr[-3000:]
    time.sleep(1.0)
    call.cancel()
    listener.join(10)
    channel.close()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == summary["frames_processed"] == 1956
    assert summary["frames_with_one_face"] == 1956 and summary["tracks"] == [1]
    assert summary["both_eyes_open_share"] > 0.8  # the subject looks at the camera, eyes open, most of the time
    assert (out / "timeline.png").stat().st_size > 10_000 and (out / "annotated.mp4").stat().st_size > 100_000
    printed = re.findall(r"\bid (\d+-\d+)", watched.stdout)
    assert printed, "watch printed no events"
    assert [e.id for e in received] == printed
    stored = json.loads((out / "events.json").read_text())
    assert [e["id"] for e in stored] == printed
    # The product's job on this video: its two certain blinks, no wink or long closure, and nothing while the
    # person looks down with lowered lids (frames 1153-1200, the classic confusion of gaze with closure).
    ended = [e for e in stored if e["phase"] == "ENDED" and e["type"] != "DROWSINESS"]
    assert {e["type"] for e in ended} == {"BLINK"}, ended
    for certain_s in (18.4, 37.2):
        assert any(e["start_us"] - 5e5 <= certain_s * 1e6 <= e["end_us"] + 5e5 for e in ended), certain_s
    assert not [e for e in ended if e["start_us"] <= 1200 / 30 * 1e6 and e["end_us"] >= 1153 / 30 * 1e6]
    with (out / "frames.csv").open() as table:
        rows = list(csv.DictReader(table))
    assert [name for name, _ in COLUMNS] == list(rows[0])
    assert [int(r["frame"]) for r in rows] == list(range(1956))  # one face in every frame: one row each
    assert {r["track_id"] for r in rows} == {"1"} and {r["status"] for r in rows} == {"PROCESSED"}
    assert {r["left_state"] for r in rows} <= {"open", "closed"}
    # One open/closed decision: the states a frame reports are the engine's, so they agree with the events. Each
    # blink shows both eyes closed, and both eyes closed for two frames or more (over the 50 ms minimum) is a blink.
    both_closed = [int(r["timestamp_us"]) for r in rows if r["left_state"] == r["right_state"] == "closed"]
    blinks = [(e["start_us"], e["end_us"]) for e in ended]
    assert all(any(start <= t <= end for t in both_closed) for start, end in blinks), blinks
    during = [r for r in rows if any(start <= int(r["timestamp_us"]) < end for start, end in blinks)]
    assert during and all("closed" in (r["left_state"], r["right_state"]) for r in during)  # open only after it
    runs: list[list[int]] = []
    for t in both_closed:
        if runs and t - runs[-1][-1] < 40_000:  # the next frame (33 ms)
            runs[-1].append(t)
        else:
            runs.append([t])
    long_runs = [run for run in runs if len(run) >= 2]
    assert long_runs and all(any(s <= run[0] <= e for s, e in blinks) for run in long_runs), (long_runs, blinks)


def _until_cancelled(call):
    try:
        yield from call
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.CANCELLED


def test_events_command_replays_what_is_stored(up):
    out = subprocess.run(
        [*CLI, "events", "--target", f"127.0.0.1:{up.ports['aggregator']}", "--stream-id", "video-e2e", "--idle", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "BLINK" in out.stdout
    text_ids = re.findall(r"\bid (\d+-\d+)", out.stdout)
    base = [*CLI, "events", "--target", f"127.0.0.1:{up.ports['aggregator']}", "--stream-id", "video-e2e"]
    for fmt in ("json", "csv"):
        scripted = subprocess.run(
            [*base, "--idle", "1", "--format", fmt],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert scripted.returncode == 0, scripted.stderr
        lines = scripted.stdout.splitlines()
        parsed = [json.loads(line) for line in lines] if fmt == "json" else list(csv.DictReader(lines))
        assert [e["id"] for e in parsed] == text_ids and {e["type"] for e in parsed} == {"BLINK"}


def test_stats_command(up):
    out = subprocess.run(
        [*CLI, "stats", "--target", f"127.0.0.1:{up.ports['aggregator']}", "--stream-id", "video-e2e"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "PERCLOS" in out.stdout and "blinks" in out.stdout


def test_up_restarts_a_killed_detector_and_watch_resumes_without_losing_or_repeating_a_frame(up):
    """The detector dies mid-stream: TrackFrames fails UNAVAILABLE, `up` restarts the detector, and `watch`
    re-sends the unanswered frames on the same stream: every frame has exactly one result, none is an error."""

    def detectors() -> list[psutil.Process]:
        return [
            p
            for p in psutil.Process(up.process.pid).children(recursive=True)
            if "detector" in p.cmdline() and "serve" in p.cmdline()
        ]

    (first,) = detectors()
    killed = threading.Event()

    def kill_once(response) -> None:
        if response.seq == 60 and not killed.is_set():
            killed.set()
            first.kill()

    result = watch(
        str(VIDEO),
        f"127.0.0.1:{up.ports['aggregator']}",
        "restart-test",
        max_frames=240,
        on_result=kill_once,
        progress=False,
    )
    assert killed.is_set() and not result.error, result.error
    assert sorted(f.seq for f in result.frames) == list(range(240))
    assert all(f.status == aggregator_pb2.FRAME_STATUS_PROCESSED for f in result.frames)
    (second,) = detectors()
    assert second.pid != first.pid
    assert health_status(f"127.0.0.1:{up.ports['detector']}") == SERVING
    # The camera process itself restarts on the same stream id, numbering frames from 0 again: a new run, so its
    # frames are new (before runs existed, every one was a DUPLICATE of the run above).
    restarted = watch(str(VIDEO), f"127.0.0.1:{up.ports['aggregator']}", "restart-test", max_frames=30, progress=False)
    assert not restarted.error and [f.status for f in restarted.frames] == [aggregator_pb2.FRAME_STATUS_PROCESSED] * 30


def test_up_stops_everything_it_started_on_sigterm(up):
    children = psutil.Process(up.process.pid).children(recursive=True)
    assert len(children) >= 4  # redis + three services
    up.process.send_signal(signal.SIGTERM)
    assert up.process.wait(60) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive
    for port in up.ports.values():
        assert not port_in_use("127.0.0.1", port), port


def test_watch_without_a_stack_says_so(tmp_path):
    target = f"127.0.0.1:{free_port()}"
    command = [*CLI, "watch", "--video", str(VIDEO), "--target", target, "--max-frames", "3", "--retries", "1"]
    out = subprocess.run(
        [*command, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "UNAVAILABLE" in out.stderr and "is the stack up" in out.stderr
    missing = subprocess.run([*CLI, "watch", "--video", str(tmp_path / "none.mp4")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such video file" in missing.stderr
    for bad in ("jpeg101", "png"):
        refused = subprocess.run(
            [*CLI, "watch", "--video", str(VIDEO), "--encoding", bad], capture_output=True, text=True
        )
        assert refused.returncode == 2 and "expected jpeg1 .. jpeg100 or raw" in refused.stderr, bad


def test_redis_starts_with_a_relative_data_dir(tmp_path, monkeypatch):
    # `blinkstack up` defaults to the relative `.blinkstack/`; redis-server changes into --dir before opening
    # its log file, so the launcher must pass absolute paths.
    monkeypatch.chdir(tmp_path)
    server = RedisServer(free_port(), Path(".blinkstack") / "redis", log_path=Path(".blinkstack") / "redis.log")
    server.start()
    try:
        assert server._ping()
    finally:
        server.stop()
    assert (tmp_path / ".blinkstack" / "redis.log").exists()
