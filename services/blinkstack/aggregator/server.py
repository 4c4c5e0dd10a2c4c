"""The aggregator gRPC service: camera frames or eye observations in, blink events and statistics out.

- `TrackFrames`: per camera stream, each frame goes to the detector (`DetectEyes`, untracked) and all its eyes
  to the eye-state service in one `ClassifyEyes` (frame + eye boxes); the aggregator tracks faces itself, with
  the tracker's state kept in Redis, so a restarted aggregator (or another replica) keeps the track ids.
- `PublishEyeStates` / `PublishEyeStateBatches`: observations of callers that classify themselves (one or many
  per message), batched: everything that arrived while the previous batch was being written goes to Redis in
  the next transaction.
- `SubscribeBlinks`: replays stored events after `after_id`, then follows new ones (XREAD BLOCK on the global
  event stream, one cursor, filters applied here), surviving Redis restarts; subscribers read at their own pace.
- `GetStats`: the track's state from Redis, summarised over the sliding window.

A frame or observation counts as accepted once Redis has it; every reply is sent after that.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np

from blinkstack.aggregator import engine
from blinkstack.aggregator.store import TRANSIENT, RedisStore, StoreUnavailable, Write
from blinkstack.aggregator.tracks import ACCEPTED, DUPLICATE, LATE, TrackBook, event_fields, observation_from_request
from blinkstack.common import images, metrics
from blinkstack.common.config import env_option
from blinkstack.common.grpc_server import ServiceHost, add_server_options, run_until_signal, settings_from_args
from blinkstack.detector.tracking import Tracker
from blinkstack.v1 import (
    aggregator_pb2,
    aggregator_pb2_grpc,
    detector_pb2,
    detector_pb2_grpc,
    eyestate_pb2,
    eyestate_pb2_grpc,
    types_pb2,
)

log = logging.getLogger(__name__)

SERVICE_NAME = aggregator_pb2.DESCRIPTOR.services_by_name["AggregatorService"].full_name
DEFAULT_PORT, DEFAULT_METRICS_PORT = 50053, 9103
MAX_BATCH = 4096  # observations per Redis transaction
MAX_OBSERVATIONS_PER_MESSAGE = 4096
# What a client learns when Redis stays away: re-sending is safe because seqs make re-sends duplicates.
NOT_ACCEPTED = "what came after the last reply was not accepted: re-send it (duplicates are ignored)"
EVENT_ID = re.compile(r"\d+(-\d+)?")
_EVENT_TYPES = {t.name: getattr(aggregator_pb2, f"EVENT_TYPE_{t.name}") for t in engine.EventType}
_PHASES = {p.name: getattr(aggregator_pb2, f"EVENT_PHASE_{p.name}") for p in engine.Phase}
_STATUS = {
    ACCEPTED: aggregator_pb2.FRAME_STATUS_PROCESSED,
    DUPLICATE: aggregator_pb2.FRAME_STATUS_DUPLICATE,
    LATE: aggregator_pb2.FRAME_STATUS_LATE,
}


def event_message(event_id: str, fields: dict[str, str]) -> aggregator_pb2.BlinkEvent:
    return aggregator_pb2.BlinkEvent(
        id=event_id,
        stream_id=fields["stream_id"],
        track_id=int(fields["track_id"]),
        type=_EVENT_TYPES[fields["type"]],
        phase=_PHASES[fields["phase"]],
        start_us=int(fields["start_us"]),
        end_us=int(fields["end_us"]),
        duration_ms=int(fields["duration_ms"]),
        min_prob_open=float(fields["min_prob_open"]),
        truncated=fields["truncated"] == "1",
        key=fields["key"],
    )


def judgeable_faces(detection: detector_pb2.DetectEyesResponse) -> list[detector_pb2.FaceDetection]:
    """The faces whose both eye boxes are centred inside the frame: only those can be cropped and judged.

    The detector already leaves out edge-clipped faces; this guard holds whatever a detector (or a future
    tracker) returns, so one odd detection costs that face one frame and never the camera's whole stream.
    """
    size = (detection.frame_width, detection.frame_height)
    return [
        face
        for face in detection.faces
        if images.centre_inside(face.left_eye.box, *size) and images.centre_inside(face.right_eye.box, *size)
    ]


def _event_id_key(event_id: str) -> tuple[int, int]:
    ms, _, n = event_id.partition("-")
    return int(ms), int(n or 0)


class AggregatorServicer(aggregator_pb2_grpc.AggregatorServiceServicer):
    def __init__(
        self,
        store: RedisStore,
        config: engine.EngineConfig,
        detector: detector_pb2_grpc.DetectorServiceStub | None = None,
        eyestate: eyestate_pb2_grpc.EyeStateServiceStub | None = None,
        threshold: float = 0.5,
        subscribe_block_ms: int = 1000,
        min_eye_px: float = 16.0,
    ) -> None:
        self.store, self.config = store, config
        self.detector, self.eyestate, self.threshold = detector, eyestate, threshold
        self.min_eye_px = min_eye_px
        self.subscribe_block_ms = subscribe_block_ms

    async def _commit(self, writes: list[Write], context: grpc.aio.ServicerContext) -> list[list[str] | None]:
        start = time.perf_counter()
        try:
            ids = await self.store.apply(writes)
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; {NOT_ACCEPTED}")
        metrics.AGGREGATOR_COMMIT_SECONDS.observe(time.perf_counter() - start)
        for write in writes:
            for event in write.events:
                metrics.AGGREGATOR_EVENTS.labels(event["type"], event["phase"]).inc()
        return ids

    # --- PublishEyeStates --------------------------------------------------------------------------------------

    async def PublishEyeStates(
        self, request_iterator: AsyncIterator[aggregator_pb2.EyeObservation], context: grpc.aio.ServicerContext
    ) -> aggregator_pb2.PublishSummary:
        async def batches() -> AsyncIterator[list | images.InvalidInput]:
            async for observation in request_iterator:
                yield [observation]

        return await self._publish(batches(), context)

    async def PublishEyeStateBatches(
        self, request_iterator: AsyncIterator[aggregator_pb2.PublishEyeStatesRequest], context: grpc.aio.ServicerContext
    ) -> aggregator_pb2.PublishSummary:
        async def batches() -> AsyncIterator[list | images.InvalidInput]:
            async for request in request_iterator:
                if len(request.observations) > MAX_OBSERVATIONS_PER_MESSAGE:
                    yield images.InvalidInput(
                        f"{len(request.observations)} observations in one message exceed the limit of "
                        f"{MAX_OBSERVATIONS_PER_MESSAGE}"
                    )
                    return
                yield list(request.observations)

        return await self._publish(batches(), context)

    async def _publish(
        self, messages: AsyncIterator[list | images.InvalidInput], context: grpc.aio.ServicerContext
    ) -> aggregator_pb2.PublishSummary:
        """Observations -> engine -> Redis, a transaction per batch of whatever arrived meanwhile."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=64)  # messages; bounded so a fast client waits for Redis
        done = object()

        async def read() -> None:
            try:
                async for message in messages:
                    await queue.put(message)
            finally:
                await queue.put(done)

        reader = asyncio.create_task(read())
        book = TrackBook(self.store, self.config)
        counts = {ACCEPTED: 0, DUPLICATE: 0, LATE: 0}
        events = 0
        finished = False
        try:
            while not finished:
                # Everything queued while the last batch was being written goes into this one (group commit).
                batch: list = []
                while len(batch) < MAX_BATCH and (not batch or not queue.empty()):
                    item = await queue.get()
                    batch.extend(item if isinstance(item, list) else [item])
                invalid = None
                pending = {ACCEPTED: 0, DUPLICATE: 0, LATE: 0}
                for item in batch:
                    if item is done:
                        finished = True
                        break
                    try:
                        if isinstance(item, images.InvalidInput):
                            raise item
                        obs = observation_from_request(item)
                    except images.InvalidInput as exc:
                        invalid = str(exc)
                        break
                    try:
                        outcome = await book.observe(item.stream_id, item.track_id, item.seq, obs)
                    except StoreUnavailable as exc:
                        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; {NOT_ACCEPTED}")
                    pending[outcome.status] += 1
                writes, _ = book.writes()
                await self._commit(writes, context)  # what came before a bad observation is kept
                for status, n in pending.items():
                    counts[status] += n
                events += sum(len(w.events) for w in writes)
                metrics.AGGREGATOR_OBSERVATIONS.inc(pending[ACCEPTED])
                if invalid:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"{invalid} (the {counts[ACCEPTED]} observations before it were accepted)",
                    )
        finally:
            reader.cancel()
        return aggregator_pb2.PublishSummary(
            accepted=counts[ACCEPTED], duplicates=counts[DUPLICATE], late=counts[LATE], events=events
        )

    # --- SubscribeBlinks ---------------------------------------------------------------------------------------

    async def SubscribeBlinks(
        self, request: aggregator_pb2.SubscribeBlinksRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[aggregator_pb2.BlinkEvent]:
        try:
            for stream_id in request.stream_ids:
                images.check_stream_id(stream_id, "stream_ids[]")
            unknown = [t for t in request.types if t not in _EVENT_TYPES.values()]
            if unknown:
                raise images.InvalidInput(f"types: unknown event type(s) {unknown}")
            if request.after_id and not EVENT_ID.fullmatch(request.after_id):
                raise images.InvalidInput(f"after_id {request.after_id!r} is not an event id like 1700000000000-0")
        except images.InvalidInput as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        streams, tracks, types = set(request.stream_ids), set(request.track_ids), set(request.types)
        try:
            cursor = request.after_id or await self.store.last_event_id()
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        delay = 0.05
        while True:
            try:
                entries = await self.store.read_events(cursor, self.subscribe_block_ms)
                delay = 0.05
            except TRANSIENT as exc:  # Redis restarting: wait and resume from the same cursor
                log.warning("subscription waiting for Redis: %s", exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 1.0)
                continue
            for event_id, fields in entries:
                cursor = event_id
                message = event_message(event_id, fields)
                if streams and message.stream_id not in streams:
                    continue
                if tracks and message.track_id not in tracks:
                    continue
                if types and message.type not in types:
                    continue
                yield message

    # --- GetStats ----------------------------------------------------------------------------------------------

    async def GetStats(
        self, request: aggregator_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> aggregator_pb2.TrackStats:
        try:
            images.check_stream_id(request.stream_id)
            if request.track_id == 0:
                raise images.InvalidInput("track_id must be > 0")
        except images.InvalidInput as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            stored = await self.store.read_hash(self.store.track_key(request.stream_id, request.track_id))
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        if "state" not in stored:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no track {request.track_id} in stream {request.stream_id!r}"
            )
        result = engine.stats(engine.TrackState.from_json(stored["state"]), self.config)
        reply = aggregator_pb2.TrackStats(
            stream_id=request.stream_id,
            track_id=request.track_id,
            window_us=result.window_us,
            blink_count=result.blink_count,
            blinks_per_minute=result.blinks_per_minute,
            perclos=result.perclos,
            open_ratio=result.open_ratio,
            mean_blink_duration_ms=result.mean_blink_duration_ms,
            last_timestamp_us=result.last_timestamp_us or 0,
        )
        if result.last_event is not None:
            fields = event_fields(result.last_event, request.stream_id, request.track_id)
            reply.last_event.CopyFrom(event_message("", fields))
        return reply

    # --- TrackFrames -------------------------------------------------------------------------------------------

    async def TrackFrames(
        self, request_iterator: AsyncIterator[types_pb2.Frame], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[aggregator_pb2.FrameResult]:
        if self.detector is None or self.eyestate is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this aggregator has no detector/eye-state")
        stream = _CameraStream(self, context)
        async for frame in request_iterator:
            try:
                result = await stream.process(frame)
            except StoreUnavailable as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; {NOT_ACCEPTED}")
            yield result


class _CameraStream:
    """One TrackFrames call: frames of one stream, in order, with the tracker and tracks restored from Redis."""

    def __init__(self, servicer: AggregatorServicer, context: grpc.aio.ServicerContext) -> None:
        self.servicer, self.context = servicer, context
        self.book = TrackBook(servicer.store, servicer.config)
        self.stream_id = ""
        self.tracker = Tracker()
        self.last_seq, self.last_us = -1, -1  # nothing seen: any seq and timestamp (0 included) is new

    async def _start(self, stream_id: str) -> None:
        self.stream_id = stream_id
        store = self.servicer.store
        try:
            stored = await store.read_hash(store.stream_key(stream_id))
        except StoreUnavailable as exc:
            await self.context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        self.last_seq = int(stored.get("seq", -1))
        self.last_us = int(stored.get("timestamp_us", -1))
        if "tracker" in stored:
            self.tracker.restore(stored["tracker"])

    async def _call(self, method, request, what: str):
        try:
            return await method(request, timeout=self.context.time_remaining() or 10.0)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                await self.context.abort(code, f"{what}: {exc.details()}")
            await self.context.abort(grpc.StatusCode.UNAVAILABLE, f"{what} failed: {code.name}: {exc.details()}")

    async def process(self, frame: types_pb2.Frame) -> aggregator_pb2.FrameResult:
        received_us = time.time_ns() // 1000
        try:
            images.check_stream_id(frame.stream_id, "frame.stream_id")
            if self.stream_id and frame.stream_id != self.stream_id:
                raise images.InvalidInput(
                    f"frame.stream_id {frame.stream_id!r} differs from this call's stream {self.stream_id!r}"
                )
            if not frame.HasField("image"):
                raise images.InvalidInput("frame.image is missing")
        except images.InvalidInput as exc:
            await self.context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not self.stream_id:
            await self._start(frame.stream_id)
        timestamp = frame.timestamp_us if frame.HasField("timestamp_us") else received_us
        result = aggregator_pb2.FrameResult(
            stream_id=frame.stream_id,
            seq=frame.seq,
            timestamp_us=timestamp,
            timestamp_from_server=not frame.HasField("timestamp_us"),
        )
        if frame.seq <= self.last_seq:
            result.status = aggregator_pb2.FRAME_STATUS_DUPLICATE
            return result
        late = timestamp <= self.last_us

        start = time.perf_counter()
        untracked = types_pb2.Frame(image=frame.image, seq=frame.seq, timestamp_us=timestamp)
        detection = await self._call(
            self.servicer.detector.DetectEyes, detector_pb2.DetectEyesRequest(frame=untracked), "detector"
        )
        detected = time.perf_counter()
        faces = judgeable_faces(detection)
        result.faces_dropped = len(detection.faces) - len(faces)
        probs = await self._classify(frame.image, faces, result)
        classified = time.perf_counter()

        result.frame_width, result.frame_height = detection.frame_width, detection.frame_height
        judged = probs  # the readings the OPEN/CLOSED states are decided on
        if late:
            ids = [0] * len(faces)  # late frames leave the tracker and the engine alone
            result.status = aggregator_pb2.FRAME_STATUS_LATE
        else:
            ids, events, judged = await self._advance(frame.seq, timestamp, faces, probs)
            result.status = aggregator_pb2.FRAME_STATUS_PROCESSED
            result.events.extend(events)
        for face, track_id, (left, right), (left_judged, right_judged) in zip(faces, ids, probs, judged, strict=True):
            result.faces.append(
                aggregator_pb2.TrackedFace(
                    track_id=track_id,
                    box=face.box,
                    score=face.score,
                    left_eye=self._reading(face.left_eye, left, left_judged),
                    right_eye=self._reading(face.right_eye, right, right_judged),
                )
            )
        done = time.perf_counter()
        result.timings.detect_us = round((detected - start) * 1e6)
        result.timings.classify_us = round((classified - detected) * 1e6)
        result.timings.aggregate_us = round((done - classified) * 1e6)
        return result

    async def _classify(self, image: types_pb2.Image, faces: list, result: aggregator_pb2.FrameResult) -> np.ndarray:
        """prob_open [faces, 2] in one ClassifyEyes call; NaN for faces whose eye boxes are under `min_eye_px`.

        Such eyes are not judged (a few pixels of eyelid: any answer would be a guess): the face is reported and
        tracked, its eyes have no state, and the engine sees them as not visible.
        """
        probs = np.full((len(faces), 2), np.nan)
        min_px = self.servicer.min_eye_px
        judged = [i for i, f in enumerate(faces) if min(f.left_eye.box.width, f.right_eye.box.width) >= min_px]
        if judged:
            boxes = [eye.box for i in judged for eye in (faces[i].left_eye, faces[i].right_eye)]
            classify = eyestate_pb2.ClassifyEyesRequest(frame=eyestate_pb2.FrameWithBoxes(frame=image, eye_boxes=boxes))
            reply = await self._call(self.servicer.eyestate.ClassifyEyes, classify, "eye-state")
            probs[judged] = np.array([r.prob_open for r in reply.results]).reshape(-1, 2)
            result.model.CopyFrom(reply.model)
        return probs

    def _reading(self, eye: detector_pb2.EyeDetection, prob: float, judged: float | None) -> aggregator_pb2.EyeReading:
        if judged is None or math.isnan(judged):  # not judged: no state, no prob_open
            return aggregator_pb2.EyeReading(eye=eye.eye, box=eye.box)
        state = types_pb2.EYE_STATE_OPEN if judged >= self.servicer.threshold else types_pb2.EYE_STATE_CLOSED
        return aggregator_pb2.EyeReading(eye=eye.eye, box=eye.box, prob_open=float(prob), state=state)

    async def _advance(
        self, seq: int, timestamp: int, faces: list, probs: np.ndarray
    ) -> tuple[list[int], list[aggregator_pb2.BlinkEvent], list[tuple[float, float]]]:
        """Track ids, the events completed, and each face's readings relative to its eyes' open levels."""
        before = self.tracker.track_ids
        boxes = np.array([[f.box.x, f.box.y, f.box.x + f.box.width, f.box.y + f.box.height] for f in faces])
        ids = self.tracker.update(boxes.reshape(-1, 4))
        config = self.servicer.config
        judged = []
        for track_id, pair in zip(ids, probs, strict=True):
            left, right = (None if math.isnan(p) else float(p) for p in pair)
            await self.book.observe(self.stream_id, track_id, seq, engine.Observation(timestamp, left, right))
            levels = (await self.book.entry(self.stream_id, track_id)).state.open_level
            judged.append(engine.relative_probs(levels, left, right, config))
        for lost in sorted(before - self.tracker.track_ids):
            await self.book.observe(self.stream_id, lost, seq, engine.Observation(timestamp, track_lost=True))
        writes, _ = self.book.writes()
        stream_write = Write(
            self.servicer.store.stream_key(self.stream_id),
            self.stream_id,
            seq,
            {"timestamp_us": str(timestamp), "tracker": self.tracker.to_json()},
        )
        event_ids = await self.servicer._commit([stream_write, *writes], self.context)
        self.last_seq, self.last_us = seq, timestamp
        messages = [
            event_message(event_id, fields)
            for write, ids_of_write in zip(writes, event_ids[1:], strict=True)
            for event_id, fields in zip(ids_of_write or [""] * len(write.events), write.events, strict=True)
        ]
        messages.sort(key=lambda m: _event_id_key(m.id) if m.id else (0, 0))
        metrics.AGGREGATOR_OBSERVATIONS.inc(len(ids))
        return ids, messages, judged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_options(parser, "AGGREGATOR", DEFAULT_PORT, DEFAULT_METRICS_PORT)
    group = parser.add_argument_group("aggregator")
    env_option(group, "--redis-url", "BLINKSTACK_REDIS_URL", "redis://127.0.0.1:6379/0", help="Redis server")
    env_option(group, "--redis-prefix", "BLINKSTACK_REDIS_PREFIX", "blinkstack", help="prefix of every Redis key")
    env_option(group, "--redis-retry-s", "BLINKSTACK_REDIS_RETRY_S", 30.0, float, help="how long writes wait for Redis")
    env_option(
        group, "--events-maxlen", "BLINKSTACK_EVENTS_MAXLEN", 100_000, int, help="events kept in the global stream"
    )
    env_option(
        group,
        "--stream-events-maxlen",
        "BLINKSTACK_STREAM_EVENTS_MAXLEN",
        10_000,
        int,
        help="events kept per camera stream",
    )
    env_option(
        group,
        "--events-max-age-s",
        "BLINKSTACK_EVENTS_MAX_AGE_S",
        0.0,
        float,
        help="also drop events older than this (MINID; 0: keep by count only)",
    )
    env_option(
        group, "--detector-addr", "BLINKSTACK_DETECTOR_ADDR", "127.0.0.1:50051", help="detector service (TrackFrames)"
    )
    env_option(
        group, "--eyestate-addr", "BLINKSTACK_EYESTATE_ADDR", "127.0.0.1:50052", help="eye-state service (TrackFrames)"
    )
    env_option(
        group, "--threshold", "BLINKSTACK_AGGREGATOR_THRESHOLD", 0.5, float, help="prob_open for a reported OPEN"
    )
    env_option(
        group,
        "--min-eye-px",
        "BLINKSTACK_AGGREGATOR_MIN_EYE_PX",
        16.0,
        float,
        help="eye boxes narrower than this are not judged (half the model's 32 px input)",
    )
    defaults = engine.EngineConfig()
    for name, help_text in (
        ("closed_below", "an eye turns CLOSED at or below this prob_open"),
        ("open_above", "and OPEN again at or above this one"),
        ("smooth_ms", "prob_open is averaged over this window before the thresholds (0: off)"),
        ("blink_min_ms", "shortest blink/wink"),
        ("blink_max_ms", "longest blink"),
        ("wink_max_ms", "longest wink"),
        ("long_closure_ms", "closure length that makes a LONG_CLOSURE"),
        ("max_gap_ms", "longer gaps between observations end an episode without an event"),
        ("window_s", "statistics window"),
        ("perclos_prob_open", "mean prob_open at or below which eyes count as >= 80 % closed (PERCLOS)"),
        ("partner_dip_below", "one eye closed while the other dipped this low is a BLINK"),
        ("wink_open_min", "a WINK's open eye never reads below this"),
        ("wink_closed_max", "a WINK's closed eye reads this or lower"),
        ("open_level_ref", "logit each eye's own open level is mapped to (0: absolute prob_open)"),
        ("open_level_rise_ms", "time constant of the open level rising"),
        ("open_level_fall_ms", "time constant of the open level falling"),
        ("open_level_min", "lowest open level (logit)"),
        ("open_level_max", "highest open level (logit)"),
    ):
        flag = "--" + name.replace("_", "-")
        env_option(group, flag, f"BLINKSTACK_{name.upper()}", getattr(defaults, name), float, help=help_text)


def engine_config(args: argparse.Namespace) -> engine.EngineConfig:
    names = engine.EngineConfig.__dataclass_fields__
    return engine.EngineConfig(**{name: getattr(args, name) for name in names})


class _Backend:
    """Owns the Redis client and the downstream channels; readiness is Redis answering."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.store = RedisStore(
            args.redis_url,
            args.redis_prefix,
            args.events_maxlen,
            args.stream_events_maxlen,
            args.redis_retry_s,
            args.events_max_age_s,
        )
        self.args = args
        self.channels: list[grpc.aio.Channel] = []

    async def start(self) -> None:
        options = [("grpc.max_send_message_length", self.args.max_message_bytes)]
        self.channels = [
            grpc.aio.insecure_channel(self.args.detector_addr, options=options),
            grpc.aio.insecure_channel(self.args.eyestate_addr, options=options),
        ]

    async def ready(self) -> bool:
        return await self.store.ping()

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
        await self.store.close()


def build_backend(args: argparse.Namespace) -> _Backend:
    engine_config(args)  # validates the limits before anything starts
    if args.min_eye_px < 0:
        raise ValueError(f"--min-eye-px must be >= 0 (got {args.min_eye_px})")
    return _Backend(args)


def build_host(args: argparse.Namespace, backend: _Backend) -> ServiceHost:
    detector = detector_pb2_grpc.DetectorServiceStub(backend.channels[0]) if backend.channels else None
    eyestate = eyestate_pb2_grpc.EyeStateServiceStub(backend.channels[1]) if backend.channels else None
    servicer = AggregatorServicer(
        backend.store, engine_config(args), detector, eyestate, args.threshold, min_eye_px=args.min_eye_px
    )
    return ServiceHost(
        settings_from_args(args),
        [SERVICE_NAME],
        lambda server: aggregator_pb2_grpc.add_AggregatorServiceServicer_to_server(servicer, server),
        backend.ready,
    )


async def serve(args: argparse.Namespace) -> None:
    backend = build_backend(args)
    await backend.start()
    await run_until_signal(build_host(args, backend), backend.close)
