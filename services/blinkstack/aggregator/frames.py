"""The frame pipeline behind `TrackFrames`: one camera stream's frames, in order, through the detector, the
eye-state service and the blink engine.

Each frame goes to the detector (one `StreamDetectEyes` call per camera stream, so `--detect-every N` on the
detector can follow faces by optical flow between detections), which also returns the eyes' pixels; all the
judgeable eyes go to the eye-state service in one `ClassifyEyes` as crops, so the frame is decoded only once.
The aggregator tracks faces itself, with the tracker's state kept in Redis beside the tracks, so a restarted
aggregator (or another replica) keeps the track ids.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

import grpc
import numpy as np

from blinkstack.aggregator import engine, event_forms, ingest
from blinkstack.aggregator.runs import RunOrder
from blinkstack.aggregator.store import RedisStore, StoreUnavailable, Write
from blinkstack.aggregator.tracks import TrackBook, check_seq
from blinkstack.common import images, metrics
from blinkstack.common.errors import FailedPrecondition, InvalidInput, ServiceError, Unavailable, quoted
from blinkstack.common.security import require_stream
from blinkstack.common.tracking import Tracker
from blinkstack.v1 import aggregator_pb2, detector_pb2, detector_pb2_grpc, eyestate_pb2, eyestate_pb2_grpc, types_pb2

Reply = TypeVar("Reply")

log = logging.getLogger(__name__)

DOWNSTREAM_TIMEOUT_S = 10.0  # per frame, when the client's call has no deadline
# Frames of one camera admitted ahead of the one being completed: their detection and classification overlap its
# tracking and commit. Three keep a 2-core machine's detector busy at full speed without holding many frames.
PIPELINE_DEPTH = 3


@dataclass(frozen=True)
class FrameServices:
    """What every camera stream of one aggregator uses."""

    store: RedisStore
    commits: ingest.GroupCommit  # every camera stream's frame commits, shared
    config: engine.EngineConfig
    detector: detector_pb2_grpc.DetectorServiceStub
    eyestate: eyestate_pb2_grpc.EyeStateServiceStub
    max_seq_jump: int = 1_000_000  # a frame further ahead of its run's last seq is refused
    # Why the detector or eye-state service refused this aggregator's credentials at the last check ("": they did not)
    credentials_problem: Callable[[], str] = lambda: ""


EYE_UNKNOWN = types_pb2.EYE_STATE_UNKNOWN
# What a frame reports for each eye is the engine's state after that frame: the one its events come from.
ENGINE_STATES = {engine.OPEN: types_pb2.EYE_STATE_OPEN, engine.CLOSED: types_pb2.EYE_STATE_CLOSED}


def check_frame(frame: types_pb2.Frame, stream_id: str) -> None:
    """A frame of the call's stream (`stream_id`, empty before the first frame), with an image."""
    images.check_stream_id(frame.stream_id, "frame.stream_id")
    require_stream(frame.stream_id, "frame.stream_id")
    if stream_id and frame.stream_id != stream_id:
        raise InvalidInput(f"frame.stream_id {quoted(frame.stream_id)} differs from this call's stream {stream_id!r}")
    check_seq(frame.seq, "frame.seq")
    if not frame.HasField("image"):
        raise InvalidInput("frame.image is missing")


async def call_downstream(
    method: Callable[..., Awaitable[Reply]], request: object, what: str, timeout: float | None
) -> Reply:
    """Call the detector or eye-state service; its refusal of the frame is the client's INVALID_ARGUMENT, any
    other failure is UNAVAILABLE."""
    try:
        return await method(request, timeout=timeout or DOWNSTREAM_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        raise _refusal(exc, what) from None


CREDENTIALS_HINT = "its operator must fix BLINKSTACK_CLIENT_TOKEN_FILE / BLINKSTACK_TLS_CA / the client certificate"


def credentials_refused(exc: grpc.aio.AioRpcError) -> bool:
    """The downstream service turned down this aggregator itself: its token, or its TLS set-up (a CA that did not
    sign the service's certificate fails the handshake). Re-sending cannot help; an operator must."""
    if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return True
    details = (exc.details() or "").lower()
    return exc.code() == grpc.StatusCode.UNAVAILABLE and ("handshake" in details or "certificate" in details)


def _refusal(exc: grpc.aio.AioRpcError, what: str) -> ServiceError:
    """A downstream service's refusal of the frame is the client's INVALID_ARGUMENT; a refusal of this aggregator's
    credentials is FAILED_PRECONDITION (not the client's to retry); any other failure is UNAVAILABLE (the client may
    re-send)."""
    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInput(f"{what}: {exc.details()}")
    if credentials_refused(exc):
        return FailedPrecondition(
            f"{what} refused this aggregator's credentials ({exc.code().name}: {exc.details()}); {CREDENTIALS_HINT}"
        )
    return Unavailable(f"{what} failed: {exc.code().name}: {exc.details()}")


@dataclass(frozen=True)
class EyeVerdict:
    """What is known about one eye in one frame: the eye-state service's answer, or why it was not asked
    (`reason` != 0: an UnknownReason; the eye is then missing evidence for the engine)."""

    prob_open: float | None = None
    prob_eye: float | None = None
    reason: int = 0

    @classmethod
    def from_result(cls, result: eyestate_pb2.EyeStateResult) -> EyeVerdict:
        prob_eye = result.prob_eye if result.HasField("prob_eye") else None
        reason = 0
        if result.state == types_pb2.EYE_STATE_UNKNOWN:  # an older service may leave the reason out
            reason = result.reason or types_pb2.UNKNOWN_REASON_MODEL_UNCERTAIN
        return cls(result.prob_open, prob_eye, reason)

    @property
    def usable_prob(self) -> float:
        """prob_open for the engine, NaN when the eye cannot be judged."""
        return math.nan if self.reason or self.prob_open is None else self.prob_open


def eyes_of(face: detector_pb2.FaceDetection) -> tuple[detector_pb2.EyeDetection, detector_pb2.EyeDetection]:
    return face.left_eye, face.right_eye


def classify_request(image: types_pb2.Image, eyes: list[detector_pb2.EyeDetection]) -> eyestate_pb2.ClassifyEyesRequest:
    """The eyes' crops as the detector cut them (the frame is decoded once), else the frame and the eye boxes."""
    if all(eye.HasField("crop") for eye in eyes):
        return eyestate_pb2.ClassifyEyesRequest(crops=eyestate_pb2.CropBatch(crops=[eye.crop for eye in eyes]))
    boxes = [eye.box for eye in eyes]
    return eyestate_pb2.ClassifyEyesRequest(frame=eyestate_pb2.FrameWithBoxes(frame=image, eye_boxes=boxes))


class DetectorStream:
    """The camera's frames on one `StreamDetectEyes` call: the detector keeps per-camera state between frames (it
    follows each face from frame to frame), so one camera's frames must reach one detector, in order.

    Several frames may be on the call at once (the camera's pipeline): `detect` writes its request in the order
    the calls were made (a first-come lock) and one reader hands the replies, which come in the same order, to
    their callers.
    """

    def __init__(self, stub: detector_pb2_grpc.DetectorServiceStub) -> None:
        self.stub = stub
        self.call: grpc.aio.StreamStreamCall | None = None
        self._write = asyncio.Lock()
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self._reader: asyncio.Task | None = None

    async def detect(self, request: detector_pb2.DetectEyesRequest, timeout: float) -> detector_pb2.DetectEyesResponse:
        async with self._write:
            if self.call is None:
                self.call = self.stub.StreamDetectEyes()
                self._reader = asyncio.create_task(self._read(self.call))
            reply: asyncio.Future = asyncio.get_running_loop().create_future()
            # A frame whose caller gave up (its call ended) still gets its reply or failure: consume it quietly.
            reply.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._waiting.append(reply)
            try:
                await self.call.write(request)
            except grpc.aio.AioRpcError as exc:
                self._fail(_refusal(exc, "detector"))
            except asyncio.InvalidStateError:  # the call ended under us (its reader already failed the waiting)
                pass
        try:
            return await asyncio.wait_for(asyncio.shield(reply), timeout)
        except TimeoutError:
            self._fail(Unavailable(f"detector failed: no answer within {timeout:.0f} s"))
            return await reply  # raises the failure

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        """The call's replies, one per request, to the frames waiting for them, for as long as the call lasts."""
        try:
            while True:
                reply = await call.read()
                if reply is grpc.aio.EOF:
                    if self._waiting:
                        raise Unavailable("detector failed: the detection stream ended")
                    return
                if not self._waiting:
                    raise Unavailable("detector failed: an answer to no frame")
                waiting = self._waiting.popleft()
                if not waiting.done():
                    waiting.set_result(reply)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED or self._waiting:
                self._fail(_refusal(exc, "detector"))
        except Unavailable as exc:
            self._fail(exc)

    def _fail(self, error: ServiceError) -> None:
        """Every frame waiting on this call gets `error`; the call is abandoned (the next frame opens another)."""
        while self._waiting:
            waiting = self._waiting.popleft()
            if not waiting.done():
                waiting.set_exception(error)
        self.close()

    def close(self) -> None:
        """Abandon the call (after a failure)."""
        if self.call is not None:
            self.call.cancel()
            self.call = None
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        self._reader = None

    async def finish(self) -> None:
        """End the call cleanly (the camera stream ended): the detector sees the end of its input."""
        if self.call is None:
            return
        if self.call.done():  # failed or ended already: nothing to close
            self.close()
            return
        try:
            await self.call.done_writing()
            await asyncio.wait_for(self.call.code(), 2.0)
            if self._reader is not None:
                await asyncio.wait_for(self._reader, 2.0)
        except (grpc.aio.AioRpcError, TimeoutError, asyncio.CancelledError):
            pass
        except Exception:  # a call that broke under us (gRPC's ExecuteBatchError): nothing left to close
            log.debug("the detector stream was already broken when the camera stream ended", exc_info=True)
        finally:
            self.close()


@dataclass
class Admitted:
    """A frame in its camera's pipeline: its result so far and, unless it is a duplicate, the task that detects and
    classifies it (started at admission, so the next frames' detection overlaps this one's bookkeeping)."""

    frame: types_pb2.Frame
    timestamp: int
    result: aggregator_pb2.FrameResult
    position: int = -1  # the frame's place in the stream across runs (RunOrder)
    new_run: bool = False  # the first frame of a new run: the previous run's faces end before it
    run_fields: dict[str, str] = field(default_factory=dict)  # the run as of this frame, stored with it
    late: bool = False
    looking: asyncio.Task | None = None


@dataclass
class Look:
    """What the detector and the eye-state service said of one frame."""

    detection: detector_pb2.DetectEyesResponse
    faces: list[detector_pb2.FaceDetection]
    verdicts: list[list[EyeVerdict]]
    model: eyestate_pb2.ModelRef | None
    detect_s: float
    classify_s: float


class CameraStream:
    """One TrackFrames call: frames of one stream, in order, with the tracker and tracks restored from Redis.

    A frame goes through two steps, each taken in frame order: `admit` (checks, duplicates, and the start of its
    detection and classification) and `complete` (tracking, the blink engine, the Redis commit, the result).
    TrackFrames admits up to PIPELINE_DEPTH frames ahead of the one it completes, so one camera's frame n + 1 is
    being detected while frame n is committed; `process` does both steps for one frame.
    """

    def __init__(self, services: FrameServices, time_remaining: Callable[[], float | None]) -> None:
        self.services, self.time_remaining = services, time_remaining
        self.book = TrackBook(services.store, services.config)
        self.detector = DetectorStream(services.detector)
        self.stream_id = ""
        self.tracker = Tracker()
        self.order = RunOrder()
        # Nothing seen: any timestamp (0 included) is new. Admission moves it as frames are accepted.
        self.last_us = -1

    async def _start(self, stream_id: str) -> None:
        store = self.services.store
        stored = await store.read_hash(store.keys.stream(stream_id))
        self.stream_id = stream_id
        self.order = RunOrder.from_stored(stored)
        self.last_us = int(stored.get("timestamp_us", -1))
        if "tracker" in stored:
            self.tracker.restore(stored["tracker"])

    async def process(self, frame: types_pb2.Frame) -> aggregator_pb2.FrameResult:
        return await self.complete(await self.admit(frame))

    async def admit(self, frame: types_pb2.Frame) -> Admitted:
        """Check the frame and decide whether it is new, late or a duplicate; start looking at a new or late one."""
        received_us = time.time_ns() // 1000
        check_frame(frame, self.stream_id)
        if not self.stream_id:
            try:
                await self._start(frame.stream_id)
            except StoreUnavailable as exc:
                raise ingest.not_accepted(exc) from None
        timestamp, from_server = images.frame_timestamp(frame, received_us)
        result = aggregator_pb2.FrameResult(
            stream_id=frame.stream_id, seq=frame.seq, timestamp_us=timestamp, timestamp_from_server=from_server
        )
        new_run = self.order.starts_run(frame.run_id)
        position = self.order.position(frame.run_id, frame.seq, self.services.max_seq_jump)
        if position <= self.order.last:
            result.status = aggregator_pb2.FRAME_STATUS_DUPLICATE
            return Admitted(frame, timestamp, result, position)
        if new_run:  # the new run's clock may start anywhere (a video file's starts at 0)
            self.last_us = -1
        late = timestamp <= self.last_us
        if not late:  # late frames leave the tracker and the engine alone, and these marks too
            self.order.advance(frame.run_id, position)
            self.last_us = timestamp
        looking = asyncio.create_task(self._look(frame, timestamp))
        return Admitted(frame, timestamp, result, position, new_run and not late, self.order.fields(), late, looking)

    async def complete(self, admitted: Admitted) -> aggregator_pb2.FrameResult:
        """Track, advance the engine and commit (in frame order); the frame's result with faces, events and
        timings."""
        result = admitted.result
        if admitted.looking is not None:
            look = await admitted.looking
            try:
                await self._judge(admitted, look)
            except StoreUnavailable as exc:
                raise ingest.not_accepted(exc) from None
        metrics.AGGREGATOR_FRAMES.labels(
            aggregator_pb2.FrameStatus.Name(result.status).removeprefix("FRAME_STATUS_")
        ).inc()
        return result

    async def _look(self, frame: types_pb2.Frame, timestamp: int) -> Look:
        start = time.perf_counter()
        # No stream id: the detector does not track (its state dies with this call); the aggregator's tracker,
        # kept in Redis across restarts, is the one that gives this frame's faces their ids.
        untracked = types_pb2.Frame(image=frame.image, seq=frame.seq, timestamp_us=timestamp)
        detection = await self.detector.detect(
            detector_pb2.DetectEyesRequest(frame=untracked, eye_crops=True),
            self.time_remaining() or DOWNSTREAM_TIMEOUT_S,
        )
        detected = time.perf_counter()
        faces = list(detection.faces)
        verdicts, model = await self._classify(frame.image, faces)
        return Look(detection, faces, verdicts, model, detected - start, time.perf_counter() - detected)

    async def _judge(self, admitted: Admitted, look: Look) -> None:
        """Track and advance the engine; fills the result with faces, events and timings."""
        start = time.perf_counter()
        result, faces, verdicts = admitted.result, look.faces, look.verdicts
        if look.model is not None:
            result.model.CopyFrom(look.model)
        probs = np.array([[v.usable_prob for v in face] for face in verdicts], dtype=float).reshape(-1, 2)
        result.frame_width, result.frame_height = look.detection.frame_width, look.detection.frame_height
        states: list[tuple[str | None, str | None]] = [(None, None)] * len(faces)  # late: the engine never saw it
        if admitted.late:
            ids = [0] * len(faces)  # late frames leave the tracker and the engine alone
            result.status = aggregator_pb2.FRAME_STATUS_LATE
        else:
            if admitted.new_run:
                await self._end_run()
            ids, emitted, engine_states = await self._advance(admitted, faces, probs)
            states = list(engine_states)
            result.status = aggregator_pb2.FRAME_STATUS_PROCESSED
            result.events.extend(emitted)
        for face, track_id, (left, right), (left_state, right_state) in zip(faces, ids, verdicts, states, strict=True):
            result.faces.append(
                aggregator_pb2.TrackedFace(
                    track_id=track_id,
                    box=face.box,
                    score=face.score,
                    left_eye=self._reading(face.left_eye, left, left_state),
                    right_eye=self._reading(face.right_eye, right, right_state),
                )
            )
        result.timings.detect_us = round(look.detect_s * 1e6)
        result.timings.classify_us = round(look.classify_s * 1e6)
        result.timings.aggregate_us = round((time.perf_counter() - start) * 1e6)

    async def _classify(
        self, image: types_pb2.Image, faces: list
    ) -> tuple[list[list[EyeVerdict]], eyestate_pb2.ModelRef | None]:
        """Each face's [left, right] verdicts, and the model that judged them (None: no eye could be judged); the
        eyes that can be judged go to the eye-state service in one call."""
        # Which eyes can be judged was decided by the detector, once (EyeDetection.unjudgeable, with its reason).
        verdicts = [[EyeVerdict(reason=eye.unjudgeable) for eye in eyes_of(f)] for f in faces]
        wanted = [(i, j) for i, face in enumerate(verdicts) for j, verdict in enumerate(face) if not verdict.reason]
        if wanted:
            request = classify_request(image, [eyes_of(faces[i])[j] for i, j in wanted])
            reply = await call_downstream(
                self.services.eyestate.ClassifyEyes, request, "eye-state", self.time_remaining()
            )
            for (i, j), answer in zip(wanted, reply.results, strict=True):
                verdicts[i][j] = EyeVerdict.from_result(answer)
            return verdicts, reply.model
        return verdicts, None

    @staticmethod
    def _reading(eye: detector_pb2.EyeDetection, verdict: EyeVerdict, state: str | None) -> aggregator_pb2.EyeReading:
        """The eye's reading: OPEN/CLOSED as the blink engine decided it (`state`; None: a late frame the engine
        did not see), or UNKNOWN with the reason."""
        reason = cast(types_pb2.UnknownReason, verdict.reason)
        reading = aggregator_pb2.EyeReading(eye=eye.eye, box=eye.box, reason=reason)
        if eye.HasField("landmarks"):
            reading.landmarks.CopyFrom(eye.landmarks)
        if verdict.prob_open is not None:
            reading.prob_open = verdict.prob_open
        if verdict.prob_eye is not None:
            reading.prob_eye = verdict.prob_eye
        reading.state = ENGINE_STATES.get(state or "", EYE_UNKNOWN) if not verdict.reason else EYE_UNKNOWN
        return reading

    async def _end_run(self) -> None:
        """A camera restarted: its previous run's faces are gone (their ids are not reused, and a closure in
        progress ends without an event, as when a track is lost)."""
        for track in self.tracker.tracks:
            entry = await self.book.entry(self.stream_id, track.track_id)
            last_us = entry.state.last_us if entry.state.last_us is not None else 0
            await self.book.observe(
                self.stream_id, track.track_id, entry.seq + 1, engine.Observation(last_us + 1, track_lost=True)
            )
        self.tracker.tracks = []

    async def _advance(
        self, admitted: Admitted, faces: list, probs: np.ndarray
    ) -> tuple[list[int], list[aggregator_pb2.BlinkEvent], list[tuple[str, str]]]:
        """Track ids, the events completed, and each face's eye states after this frame: the engine's, the very
        states its events are built from (left, right)."""
        seq, timestamp = admitted.position, admitted.timestamp
        before = self.tracker.track_ids
        boxes = np.array([[f.box.x, f.box.y, f.box.x + f.box.width, f.box.y + f.box.height] for f in faces])
        ids = self.tracker.update(boxes.reshape(-1, 4))
        states = []
        for track_id, pair in zip(ids, probs, strict=True):
            left, right = (None if math.isnan(p) else float(p) for p in pair)
            await self.book.observe(self.stream_id, track_id, seq, engine.Observation(timestamp, left, right))
            states.append((await self.book.entry(self.stream_id, track_id)).state.eyes)
        for lost in sorted(before - self.tracker.track_ids):
            await self.book.observe(self.stream_id, lost, seq, engine.Observation(timestamp, track_lost=True))
        writes = self.book.writes()
        store = self.services.store
        tracker_state = {"timestamp_us": str(timestamp), "tracker": self.tracker.to_json(), **admitted.run_fields}
        stream_write = Write(store.keys.stream(self.stream_id), self.stream_id, seq, tracker_state)
        event_ids = await self.services.commits.commit([stream_write, *writes])
        messages = [
            event_forms.to_message(event_id, fields)
            for write, ids_of_write in zip(writes, event_ids[1:], strict=True)
            for event_id, fields in zip(ids_of_write or [""] * len(write.events), write.events, strict=True)
        ]
        messages.sort(key=lambda m: event_forms.id_order(m.id))
        metrics.AGGREGATOR_OBSERVATIONS.inc(len(ids))
        return ids, messages, states
