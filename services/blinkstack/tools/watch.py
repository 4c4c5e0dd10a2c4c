"""`blinkstack watch`: a video file or camera -> the aggregator's TrackFrames -> events, summary, plots.

Frames are JPEG-encoded and streamed over one TrackFrames call, either at the source's frame rate
(`realtime`, the default for cameras) or as fast as the stack answers (the default for files). At most
`in_flight` frames are outstanding, so a slow stack never makes the client buffer the whole video, and the
per-frame latency (frame sent -> its result back) stays meaningful. Frame timestamps are the position in the
file (or the capture time for a camera), so events carry video time.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import grpc
import numpy as np

from blinkstack.aggregator import events
from blinkstack.common.security import ClientSecurity
from blinkstack.tools import progress as bars
from blinkstack.v1 import aggregator_pb2, aggregator_pb2_grpc, types_pb2

JPEG_QUALITY = 90  # frames are sent to TrackFrames as JPEG at this quality


class SourceError(RuntimeError):
    """The video or camera cannot be opened or read."""


def default_stream_id(source: str) -> str:
    stem = Path(source).stem if not source.isdigit() else f"camera{source}"
    clean = re.sub(r"[^A-Za-z0-9._:-]", "-", stem)[:100] or "video"
    return f"{clean}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class FrameRecord:
    seq: int
    timestamp_us: int
    status: int
    faces: int
    track_ids: list[int]
    left: float | None  # first face's prob_open, None without a face
    right: float | None
    detect_us: int
    classify_us: int
    aggregate_us: int
    latency_s: float


@dataclass
class WatchResult:
    stream_id: str
    fps_source: float
    frames: list[FrameRecord] = field(default_factory=list)
    events: list[aggregator_pb2.BlinkEvent] = field(default_factory=list)
    elapsed_s: float = 0.0
    error: str = ""  # set when the stack ended the stream early; the frames before it are kept


def _open(source: str) -> tuple[cv2.VideoCapture, float, bool]:
    is_camera = source.isdigit()
    if not is_camera and not Path(source).is_file():
        raise SourceError(f"no such video file: {source}")
    capture = cv2.VideoCapture(int(source) if is_camera else source)
    if not capture.isOpened():
        raise SourceError(f"cannot open {'camera' if is_camera else 'video'} {source}")
    fps = capture.get(cv2.CAP_PROP_FPS)
    return capture, fps if fps and fps > 0 else 30.0, is_camera


class _FrameSource:
    """The frames of a video or camera as TrackFrames requests, at most `in_flight` unanswered at a time.

    `requests()` runs on gRPC's request thread. `busy` is held while it reads or encodes (C++ code), so the
    caller can wait for it to reach a safe point before releasing the capture.
    """

    def __init__(
        self, source: str, stream_id: str, realtime: bool | None, in_flight: int, max_frames: int | None, keep: bool
    ) -> None:
        self.source, self.stream_id, self.max_frames, self.keep = source, stream_id, max_frames, keep
        self.capture, self.fps, self.is_camera = _open(source)
        self.realtime = self.is_camera if realtime is None else realtime
        total = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not self.is_camera else 0
        self.total = (min(total, max_frames) if total else max_frames) if max_frames else total
        self.slots = threading.Semaphore(in_flight)
        self.sent: dict[int, float] = {}  # seq -> when it was sent
        self.pixels: dict[int, np.ndarray] = {}  # seq -> frame, for the annotated video
        self.stop = threading.Event()
        self.busy = threading.Lock()
        self.errors: list[BaseException] = []

    def _next(self, seq: int, start: float) -> types_pb2.Frame | None:
        ok, frame = self.capture.read()
        if not ok:
            return None
        timestamp_us = time.time_ns() // 1000 if self.is_camera else round(seq * 1e6 / self.fps)
        if self.realtime and not self.is_camera:
            time.sleep(max(0.0, start + seq / self.fps - time.perf_counter()))
        jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
        while not self.slots.acquire(timeout=0.5):
            if self.stop.is_set():
                return None
        if self.keep:
            self.pixels[seq] = frame
        self.sent[seq] = time.perf_counter()
        return types_pb2.Frame(
            stream_id=self.stream_id, seq=seq, timestamp_us=timestamp_us, image=types_pb2.Image(encoded=jpeg)
        )

    def requests(self) -> Iterator[types_pb2.Frame]:
        start = time.perf_counter()
        seq = 0
        while not self.stop.is_set() and (self.max_frames is None or seq < self.max_frames):
            with self.busy:
                try:
                    frame = None if self.stop.is_set() else self._next(seq, start)
                except Exception as exc:  # surfaced after the call, not swallowed by gRPC's request thread
                    self.errors.append(exc)
                    frame = None
            if frame is None:
                return
            yield frame
            seq += 1

    def answered(self, seq: int) -> float:
        """Seconds since frame `seq` was sent; frees its slot."""
        self.slots.release()
        return time.perf_counter() - self.sent.pop(seq, time.perf_counter())

    def close(self) -> None:
        self.stop.set()
        with self.busy:  # the request thread is between frames (or done): safe to release the capture
            self.capture.release()


def _frame_record(response: aggregator_pb2.FrameResult, latency_s: float) -> FrameRecord:
    faces = list(response.faces)
    first = faces[0] if faces else None
    return FrameRecord(
        seq=response.seq,
        timestamp_us=response.timestamp_us,
        status=response.status,
        faces=len(faces),
        track_ids=[f.track_id for f in faces],
        left=first.left_eye.prob_open if first else None,
        right=first.right_eye.prob_open if first else None,
        detect_us=response.timings.detect_us,
        classify_us=response.timings.classify_us,
        aggregate_us=response.timings.aggregate_us,
        latency_s=latency_s,
    )


def watch(
    source: str,
    target: str,
    stream_id: str,
    realtime: bool | None = None,
    in_flight: int = 4,
    max_frames: int | None = None,
    annotated: Path | None = None,
    on_event: Callable[[aggregator_pb2.BlinkEvent], None] | None = None,
    on_result: Callable[[aggregator_pb2.FrameResult], None] | None = None,
    progress: bool = True,
    timeout_s: float = 3600.0,
    security: ClientSecurity | None = None,
) -> WatchResult:
    """Stream the source through TrackFrames; with `annotated`, also write the annotated video there;
    `on_result` sees every FrameResult (all faces), `on_event` every event.

    Only the frames in flight are kept in memory: each is drawn and written as soon as its result is back.
    """
    frames = _FrameSource(source, stream_id, realtime, in_flight, max_frames, keep=annotated is not None)
    result = WatchResult(stream_id, frames.fps)
    writer = _AnnotatedWriter(annotated, frames.fps) if annotated else None
    channel = (security or ClientSecurity()).channel(target)
    stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
    total = frames.total or None
    bar = bars.progress(total=total, unit="frame", desc=stream_id, disable=not progress, dynamic_ncols=True)
    began = time.perf_counter()
    call = stub.TrackFrames(frames.requests(), timeout=timeout_s)
    try:
        for response in call:
            result.frames.append(_frame_record(response, frames.answered(response.seq)))
            if writer is not None:
                writer.add(frames.pixels.pop(response.seq), response)
            if on_result is not None:
                on_result(response)
            for event in response.events:
                result.events.append(event)
                if on_event is not None:
                    on_event(event)
            bar.update(1)
            elapsed = time.perf_counter() - began
            bar.set_postfix(fps=f"{len(result.frames) / elapsed:.1f}", events=len(result.events), refresh=False)
    except KeyboardInterrupt:
        call.cancel()
    except grpc.RpcError as exc:
        result.error = f"{exc.code().name}: {exc.details()}"
    finally:
        frames.stop.set()  # the request thread sends nothing more
        bar.close()
        if writer is not None:
            writer.close()
        channel.close()
        frames.close()
        result.elapsed_s = time.perf_counter() - began
    if frames.errors:
        raise SourceError(f"reading {source} failed: {frames.errors[0]}")
    return result


def summarize(result: WatchResult, perclos_prob_open: float = 0.2) -> dict:
    frames = result.frames
    faced = [f for f in frames if f.faces]
    names = [events.type_name(e) for e in result.events if e.phase == aggregator_pb2.EVENT_PHASE_ENDED]
    minutes = (frames[-1].timestamp_us - frames[0].timestamp_us) / 60e6 if len(frames) > 1 else 0.0
    closed80 = [((f.left or 0) + (f.right or 0)) / 2 <= perclos_prob_open for f in faced]
    opened = [(f.left or 0) >= 0.5 and (f.right or 0) >= 0.5 for f in faced]

    def stage(values: list[float]) -> dict:
        array = np.array(values, dtype=float) if values else np.zeros(1)
        return {
            "mean_ms": float(array.mean()),
            "p50_ms": float(np.percentile(array, 50)),
            "p99_ms": float(np.percentile(array, 99)),
        }

    return {
        "stream_id": result.stream_id,
        "frames": len(frames),
        "frames_processed": sum(f.status == aggregator_pb2.FRAME_STATUS_PROCESSED for f in frames),
        "frames_with_one_face": sum(f.faces == 1 for f in frames),
        "faces": sum(f.faces for f in frames),
        "tracks": sorted({t for f in frames for t in f.track_ids}),
        "blinks": names.count("BLINK"),
        "winks_left": names.count("WINK_LEFT"),
        "winks_right": names.count("WINK_RIGHT"),
        "long_closures": names.count("LONG_CLOSURE"),
        "blinks_per_minute": names.count("BLINK") / minutes if minutes else 0.0,
        "perclos": float(np.mean(closed80)) if closed80 else 0.0,
        "both_eyes_open_share": float(np.mean(opened)) if opened else 0.0,
        "video_seconds": minutes * 60,
        "wall_seconds": result.elapsed_s,
        "frames_per_s": len(frames) / result.elapsed_s if result.elapsed_s else 0.0,
        "timings": {
            "detect": stage([f.detect_us / 1000 for f in frames]),
            "classify": stage([f.classify_us / 1000 for f in frames]),
            "aggregate": stage([f.aggregate_us / 1000 for f in frames]),
            "end_to_end": stage([f.latency_s * 1000 for f in frames]),
        },
    }


def plot_timeline(result: WatchResult, path: Path, closed_below: float = 0.2, open_above: float = 0.5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faced = [f for f in result.frames if f.faces]
    seconds = np.array([f.timestamp_us for f in faced]) / 1e6
    fig, ax = plt.subplots(figsize=(14, 4))
    ax.plot(seconds, [f.left for f in faced], lw=0.7, label="left eye prob_open (subject's left)")
    ax.plot(seconds, [f.right for f in faced], lw=0.7, alpha=0.7, label="right eye prob_open")
    for level, name in ((closed_below, "closed below"), (open_above, "open above")):
        ax.axhline(level, color="grey", ls=":", lw=1)
        ax.text(seconds[-1] if len(seconds) else 0, level, f" {name} {level}", va="center", fontsize=8)
    colours = {"BLINK": "tab:blue", "WINK_LEFT": "tab:orange", "WINK_RIGHT": "tab:purple", "LONG_CLOSURE": "tab:red"}
    seen: set[str] = set()
    for event in result.events:
        if event.phase != aggregator_pb2.EVENT_PHASE_ENDED:
            continue
        name = events.type_name(event)
        ax.axvspan(event.start_us / 1e6, event.end_us / 1e6, color=colours.get(name, "black"), alpha=0.3,
                   label=name if name not in seen else None)  # fmt: skip
        seen.add(name)
    ax.set_xlabel("video time (s)")
    ax.set_ylabel("prob_open")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{result.stream_id}: eye state and events")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class _AnnotatedWriter:
    """annotated.mp4: face boxes, track ids, per-eye state and prob_open, and a one-second caption per event."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = Path(path), fps
        self.video: cv2.VideoWriter | None = None
        self.caption, self.caption_frames = "", 0

    def add(self, frame: np.ndarray, response: aggregator_pb2.FrameResult) -> None:
        from blinkstack.tools.annotate import draw_faces

        if self.video is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = frame.shape[:2]
            self.video = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
        for event in response.events:
            self.caption, self.caption_frames = events.describe(event).split("  id ")[0], int(self.fps)
        self.video.write(draw_faces(frame, list(response.faces), self.caption if self.caption_frames > 0 else ""))
        self.caption_frames -= 1

    def close(self) -> None:
        if self.video is not None:
            self.video.release()


def write_outputs(result: WatchResult, out_dir: Path) -> dict:
    """summary.json, events.json and timeline.png (annotated.mp4 is written while watching)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "events.json").write_text(json.dumps([events.to_json(e) for e in result.events], indent=2) + "\n")
    plot_timeline(result, out_dir / "timeline.png")
    return summary
