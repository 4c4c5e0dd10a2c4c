"""`blinkstack watch`: a video file or camera -> the aggregator's TrackFrames -> events, summary, plots.

Frames are encoded (JPEG at quality 90 by default; `--encoding jpeg<Q>` or `raw`) and streamed over one
TrackFrames call, either at the source's frame rate (`realtime`, the default for cameras) or as fast as the stack
answers (the default for files). At most `in_flight` frames are outstanding, so a slow stack never makes the
client buffer the whole video, and the per-frame latency (frame sent -> its result back) stays meaningful. Frame
timestamps are the position in the file (or the capture time for a camera), so events carry video time.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import grpc
import numpy as np

from blinkstack.aggregator import event_forms
from blinkstack.client import Backoff, Client
from blinkstack.common.security import ClientSecurity
from blinkstack.tools import progress as bars
from blinkstack.tools.frames_table import FrameTable
from blinkstack.v1 import aggregator_pb2, types_pb2

JPEG_QUALITY = 90  # by default frames are sent to TrackFrames as JPEG at this quality

# TrackFrames is resumed on UNAVAILABLE (the stack restarting a component) after 0.5, 1, 2, 4, 8 s.
RETRY_BACKOFF = Backoff(first_s=0.5, max_s=8.0, jitter=0.0)


@dataclass(frozen=True)
class FrameEncoding:
    """How frames travel to TrackFrames: JPEG at `quality` (1-100), or raw BGR pixels when `quality` is None.

    Cameras send whatever quality they are set to, so the evaluation runs the same clips at several.
    """

    quality: int | None = JPEG_QUALITY

    @classmethod
    def parse(cls, text: str) -> FrameEncoding:
        """`jpeg<Q>` (e.g. `jpeg75`) or `raw`."""
        if text == "raw":
            return cls(None)
        match = re.fullmatch(r"jpeg(\d{1,3})", text)
        if not match or not 1 <= int(match[1]) <= 100:
            raise ValueError(f"frame encoding {text!r}: expected jpeg1 .. jpeg100 or raw")
        return cls(int(match[1]))

    @property
    def name(self) -> str:
        return "raw" if self.quality is None else f"jpeg{self.quality}"

    def image(self, frame: np.ndarray) -> types_pb2.Image:
        if self.quality is None:
            height, width = frame.shape[:2]
            raw = types_pb2.RawImage(
                pixels=np.ascontiguousarray(frame).tobytes(),
                width=width,
                height=height,
                format=types_pb2.PIXEL_FORMAT_BGR8,
            )
            return types_pb2.Image(raw=raw)
        return types_pb2.Image(encoded=self.jpeg(frame))

    def jpeg(self, frame: np.ndarray) -> bytes:
        """The frame as JPEG at this encoding's quality (a JPEG encoding's)."""
        if self.quality is None:
            raise ValueError("the raw encoding has no JPEG quality")
        return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])[1].tobytes()


def read_video(path: Path | str, limit: int | None = None) -> Iterator[np.ndarray]:
    """A video file's BGR frames in order (at most `limit`), decoded one at a time."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    try:
        count = 0
        while limit is None or count < limit:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
            count += 1
    finally:
        capture.release()


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
    left_aperture: float | None  # first face's lid apertures, None without a face or a landmark model
    right_aperture: float | None
    unknown: int  # the first face's eyes whose state is UNKNOWN (0-2)
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
    caller can wait for it to reach a safe point before releasing the capture. After a failed call,
    `rewind()` makes the next `requests()` send the unanswered frames again first (same seqs: the aggregator
    answers any it already has as DUPLICATE), so a reconnect loses and repeats nothing.
    """

    def __init__(
        self,
        source: str,
        stream_id: str,
        realtime: bool | None,
        in_flight: int,
        max_frames: int | None,
        keep: bool,
        encoding: FrameEncoding,
    ) -> None:
        self.source, self.stream_id, self.max_frames, self.keep = source, stream_id, max_frames, keep
        self.encoding = encoding
        self.capture, self.fps, self.is_camera = _open(source)
        self.realtime = self.is_camera if realtime is None else realtime
        total = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not self.is_camera else 0
        self.total = (min(total, max_frames) if total else max_frames) if max_frames else total
        self.in_flight = in_flight
        self.slots = threading.Semaphore(in_flight)
        self.sent: dict[int, float] = {}  # seq -> when it was first sent
        self.unanswered: dict[int, types_pb2.Frame] = {}  # seq -> request, until its result is back
        self.resend: list[types_pb2.Frame] = []
        self.pixels: dict[int, np.ndarray] = {}  # seq -> frame, for the annotated video
        self.next_seq, self.generation, self.started = 0, 0, time.perf_counter()
        # One run id per process, kept across reconnects: seqs start at 0 in every run, and the aggregator tells a
        # restart (new id: seq 0 is new) from a re-send (same id: a duplicate).
        self.run_id = time.time_ns() // 1000
        self.stop = threading.Event()
        self.busy = threading.Lock()
        self.errors: list[BaseException] = []

    def _read(self, seq: int) -> types_pb2.Frame | None:
        ok, frame = self.capture.read()
        if not ok:
            return None
        timestamp_us = time.time_ns() // 1000 if self.is_camera else round(seq * 1e6 / self.fps)
        if self.realtime and not self.is_camera:
            time.sleep(max(0.0, self.started + seq / self.fps - time.perf_counter()))
        image = self.encoding.image(frame)
        if self.keep:
            self.pixels[seq] = frame
        return types_pb2.Frame(
            stream_id=self.stream_id, seq=seq, run_id=self.run_id, timestamp_us=timestamp_us, image=image
        )

    def _next(self, generation: int) -> types_pb2.Frame | None:
        if self.resend:
            request = self.resend.pop(0)
        elif self.max_frames is not None and self.next_seq >= self.max_frames:
            return None
        else:
            read = self._read(self.next_seq)
            if read is None:
                return None
            request = read
            self.next_seq += 1
        while not self.slots.acquire(timeout=0.5):
            if self.stop.is_set() or generation != self.generation:
                self.resend.insert(0, request)  # not sent: the next call sends it, after the unanswered ones
                return None
        self.unanswered[request.seq] = request
        self.sent.setdefault(request.seq, time.perf_counter())
        return request

    def requests(self) -> Iterator[types_pb2.Frame]:
        generation = self.generation
        while not self.stop.is_set() and generation == self.generation:
            with self.busy:
                try:
                    frame = None if self.stop.is_set() or generation != self.generation else self._next(generation)
                except Exception as exc:  # surfaced after the call, not swallowed by gRPC's request thread
                    self.errors.append(exc)
                    frame = None
            if frame is None:
                return
            yield frame

    def answered(self, seq: int) -> float:
        """Seconds since frame `seq` was first sent; frees its slot."""
        if self.unanswered.pop(seq, None) is not None:
            self.slots.release()
        return time.perf_counter() - self.sent.pop(seq, time.perf_counter())

    def rewind(self) -> None:
        """The call failed: the next `requests()` sends the unanswered frames again, in order."""
        # First the generation, without the lock: the old request iterator may hold `busy` while it waits for a
        # slot that no answer will free; it sees the change within 0.5 s and lets go.
        self.generation += 1
        with self.busy:
            self.resend = [self.unanswered[seq] for seq in sorted(self.unanswered)] + self.resend
            self.unanswered.clear()
            self.slots = threading.Semaphore(self.in_flight)

    def close(self) -> None:
        self.stop.set()
        with self.busy:  # the request thread is between frames (or done): safe to release the capture
            self.capture.release()


def _aperture(reading: aggregator_pb2.EyeReading) -> float | None:
    return reading.landmarks.aperture if reading.HasField("landmarks") else None


def _frame_record(response: aggregator_pb2.FrameResult, latency_s: float) -> FrameRecord:
    faces = list(response.faces)
    first = faces[0] if faces else None
    return FrameRecord(
        seq=response.seq,
        timestamp_us=response.timestamp_us,
        status=response.status,
        faces=len(faces),
        track_ids=[f.track_id for f in faces],
        left=first.left_eye.prob_open if first and first.left_eye.HasField("prob_open") else None,
        right=first.right_eye.prob_open if first and first.right_eye.HasField("prob_open") else None,
        left_aperture=_aperture(first.left_eye) if first else None,
        right_aperture=_aperture(first.right_eye) if first else None,
        unknown=sum(e.state == types_pb2.EYE_STATE_UNKNOWN for e in (first.left_eye, first.right_eye)) if first else 0,
        detect_us=response.timings.detect_us,
        classify_us=response.timings.classify_us,
        aggregate_us=response.timings.aggregate_us,
        latency_s=latency_s,
    )


class _Collector:
    """Takes each FrameResult into the WatchResult once (a re-sent frame may be answered twice), draws it, and
    reports it to the callbacks and the progress bar."""

    def __init__(self, result: WatchResult, frames: _FrameSource, writer, table, callbacks, bar) -> None:
        self.result, self.frames, self.writer, self.table, self.bar = result, frames, writer, table, bar
        self.on_result, self.on_event, self.on_frame = callbacks
        self.seen: set[int] = set()
        self.began = time.perf_counter()

    def close(self) -> None:
        self.bar.close()
        for output in (self.writer, self.table):
            if output is not None:
                output.close()

    def __call__(self, response: aggregator_pb2.FrameResult) -> None:
        latency = self.frames.answered(response.seq)
        if response.seq in self.seen:
            return
        self.seen.add(response.seq)
        self.result.frames.append(_frame_record(response, latency))
        if self.table is not None:
            self.table.add(response, latency)
        pixels = self.frames.pixels.pop(response.seq, None)
        if self.writer is not None and pixels is not None:
            self.writer.add(pixels, response)
        if self.on_frame is not None and pixels is not None:
            self.on_frame(pixels, response)
        if self.on_result is not None:
            self.on_result(response)
        for event in response.events:
            self.result.events.append(event)
            if self.on_event is not None:
                self.on_event(event)
        self.bar.update(1)
        elapsed = time.perf_counter() - self.began
        self.bar.set_postfix(
            fps=f"{len(self.result.frames) / elapsed:.1f}", events=len(self.result.events), refresh=False
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
    retries: int = 5,
    frames_csv: Path | None = None,
    on_frame: Callable[[np.ndarray, aggregator_pb2.FrameResult], None] | None = None,
    encoding: FrameEncoding = FrameEncoding(),
) -> WatchResult:
    """Stream the source through TrackFrames; with `annotated`, also write the annotated video there;
    `on_result` sees every FrameResult (all faces), `on_event` every event, `on_frame` every frame's pixels with
    its result (the live view); `frames_csv` gets every frame and face (`frames_table.COLUMNS`).

    UNAVAILABLE (the stack restarting a component, a network blip) is retried up to `retries` times in a row
    with backoff, resuming the same stream id and seqs. Only the frames in flight are kept in memory.
    """
    keep = annotated is not None or on_frame is not None
    frames = _FrameSource(source, stream_id, realtime, in_flight, max_frames, keep=keep, encoding=encoding)
    result = WatchResult(stream_id, frames.fps)
    writer = _AnnotatedWriter(annotated, frames.fps) if annotated else None
    table = FrameTable(frames_csv) if frames_csv else None
    client = Client(target, security)
    bar = bars.progress(total=frames.total or None, unit="frame", desc=stream_id, disable=not progress)
    collect = _Collector(result, frames, writer, table, (on_result, on_event, on_frame), bar)
    began = time.perf_counter()
    failures = 0  # in a row, without a result between them
    delays = RETRY_BACKOFF.delays()
    try:
        while True:
            call = client.aggregator.TrackFrames(frames.requests(), timeout=timeout_s)
            try:
                for response in call:
                    collect(response)
                    failures, delays = 0, RETRY_BACKOFF.delays()
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or failures >= retries or frames.errors:
                    result.error = f"{exc.code().name}: {exc.details()}"
                    break
                failures += 1
                delay = next(delays)
                bars.write(f"{stream_id}: {exc.details()}; retrying in {delay:.1f} s ({failures} of {retries})")
                time.sleep(delay)
                frames.rewind()
    except KeyboardInterrupt:
        call.cancel()
    finally:
        frames.stop.set()  # the request thread sends nothing more
        collect.close()
        client.close()
        frames.close()
        result.elapsed_s = time.perf_counter() - began
    if frames.errors:
        raise SourceError(f"reading {source} failed: {frames.errors[0]}")
    return result


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
            self.video = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (width, height))
        for event in response.events:
            self.caption, self.caption_frames = event_forms.describe(event).split("  id ")[0], int(self.fps)
        self.video.write(draw_faces(frame, list(response.faces), self.caption if self.caption_frames > 0 else ""))
        self.caption_frames -= 1

    def close(self) -> None:
        if self.video is not None:
            self.video.release()
