"""The aggregator gRPC service: camera frames or eye observations in, blink events and statistics out.

- `TrackFrames`: per camera stream, frames through the detector, the eye-state service and the engine
  (`frames.py`).
- `PublishEyeStates` / `PublishEyeStateBatches`: observations of callers that classify themselves, group
  committed to Redis (`ingest.py`).
- `SubscribeBlinks`: replays stored events after `after_id`, then follows new ones; all subscribers share one
  Redis reader per event shard (`fanout.py`), filters are applied here, every event carries the cursor to resume
  after it (`cursor.py`), and a subscriber that falls too far behind is dropped with RESOURCE_EXHAUSTED and the
  cursor to resume from.
- `GetStats`: the track's state from Redis, summarised over the sliding window.

A frame or observation counts as accepted once Redis has it; every reply is sent after that. The flags are in
`options.py`; errors become status codes at the server's one boundary (`common.rpc_boundary`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import cast

import grpc

from blinkstack.aggregator import cursor, engine, event_forms, ingest
from blinkstack.aggregator.fanout import EventFanout
from blinkstack.aggregator.frames import (
    CREDENTIALS_HINT,
    PIPELINE_DEPTH,
    Admitted,
    CameraStream,
    FrameServices,
    credentials_refused,
)
from blinkstack.aggregator.options import AggregatorOptions
from blinkstack.aggregator.store import RedisStore
from blinkstack.client import AioStubs, aio_stubs
from blinkstack.common import images
from blinkstack.common.errors import FailedPrecondition, InvalidInput, NotFound, Unavailable
from blinkstack.common.grpc_server import ServiceHost, run_until_signal
from blinkstack.common.security import require_stream, stream_visible
from blinkstack.services import AGGREGATOR
from blinkstack.v1 import (
    aggregator_pb2,
    aggregator_pb2_grpc,
    detector_pb2,
    eyestate_pb2,
    types_pb2,
)


def check_subscription(request: aggregator_pb2.SubscribeBlinksRequest, shards: int) -> None:
    for stream_id in request.stream_ids:
        images.check_stream_id(stream_id, "stream_ids[]")
        require_stream(stream_id, "stream_ids[]")
    unknown = [t for t in request.types if t not in event_forms.TYPE_NUMBERS.values()]
    if unknown:
        raise InvalidInput(f"types: unknown event type(s) {unknown}")
    cursor.parse(request.after_id, shards)


def wanted(request: aggregator_pb2.SubscribeBlinksRequest) -> Callable[[aggregator_pb2.BlinkEvent], bool]:
    """The subscription's filter: every set list must contain the event's value, and the caller's token must
    cover the event's stream."""
    streams, tracks, types = set(request.stream_ids), set(request.track_ids), set(request.types)
    return lambda m: (
        (not streams or m.stream_id in streams)
        and (not tracks or m.track_id in tracks)
        and (not types or m.type in types)
        and stream_visible(m.stream_id)
    )


# engine.Stats' figures that TrackStats carries under the same names.
STATS_FIGURES = ("window_us", "blink_count", "blinks_per_minute", "perclos", "open_ratio", "mean_blink_duration_ms")


def stats_message(stream_id: str, track_id: int, result: engine.Stats) -> aggregator_pb2.TrackStats:
    reply = aggregator_pb2.TrackStats(
        stream_id=stream_id,
        track_id=track_id,
        **{name: getattr(result, name) for name in STATS_FIGURES},
        last_timestamp_us=result.last_timestamp_us or 0,
        drowsiness=cast(aggregator_pb2.DrowsinessLevel, int(result.level)),
    )
    if result.last_event is not None:
        reply.last_event.CopyFrom(
            event_forms.to_message("", event_forms.to_fields(result.last_event, stream_id, track_id))
        )
    return reply


class AggregatorServicer(aggregator_pb2_grpc.AggregatorServiceServicer):
    def __init__(
        self,
        store: RedisStore,
        config: engine.EngineConfig,
        fanout: EventFanout,
        frames: FrameServices | None = None,
    ) -> None:
        self.store, self.config, self.fanout, self.frames = store, config, fanout, frames

    async def PublishEyeStates(
        self, request_iterator: AsyncIterator[aggregator_pb2.EyeObservation], context: grpc.aio.ServicerContext
    ) -> aggregator_pb2.PublishSummary:
        return await ingest.publish(ingest.single_messages(request_iterator), self.store, self.config)

    async def PublishEyeStateBatches(
        self, request_iterator: AsyncIterator[aggregator_pb2.PublishEyeStatesRequest], context: grpc.aio.ServicerContext
    ) -> aggregator_pb2.PublishSummary:
        return await ingest.publish(ingest.batch_messages(request_iterator), self.store, self.config)

    async def SubscribeBlinks(
        self, request: aggregator_pb2.SubscribeBlinksRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[aggregator_pb2.BlinkEvent]:
        check_subscription(request, self.store.shards)
        keep = wanted(request)
        async for event_id, fields, position in self.fanout.subscribe(request.after_id):
            message = event_forms.to_message(event_id, fields)
            if keep(message):
                message.cursor = position
                yield message

    async def GetStats(
        self, request: aggregator_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> aggregator_pb2.TrackStats:
        images.check_stream_id(request.stream_id)
        require_stream(request.stream_id, "stream_id")
        if request.track_id == 0:
            raise InvalidInput("track_id must be > 0")
        stored = await self.store.read_hash(self.store.keys.track(request.stream_id, request.track_id))
        if "state" not in stored:
            raise NotFound(f"no track {request.track_id} in stream {request.stream_id!r}")
        result = engine.stats(engine.TrackState.from_json(stored["state"]), self.config)
        return stats_message(request.stream_id, request.track_id, result)

    async def TrackFrames(
        self, request_iterator: AsyncIterator[types_pb2.Frame], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[aggregator_pb2.FrameResult]:
        if self.frames is None:
            raise FailedPrecondition("this aggregator has no detector/eye-state")
        stream = CameraStream(self.frames, context.time_remaining)
        admitted: asyncio.Queue[Admitted | BaseException | None] = asyncio.Queue(maxsize=PIPELINE_DEPTH)

        async def admit() -> None:
            try:
                async for frame in request_iterator:
                    await admitted.put(await stream.admit(frame))
                await admitted.put(None)
            except Exception as exc:  # a bad frame or a broken call: raised in order, after the frames before it
                await admitted.put(exc)

        admitting = asyncio.create_task(admit())
        try:
            while (item := await admitted.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield await stream.complete(item)
        except Unavailable:
            # A downstream stream refused with a bad token often ends as INTERNAL, not UNAUTHENTICATED: what the
            # last credentials check found decides whether re-sending can help.
            refused = self.frames.credentials_problem()
            if refused:
                raise FailedPrecondition(f"{refused}; {CREDENTIALS_HINT}") from None
            raise
        finally:
            admitting.cancel()
            while not admitted.empty():
                item = admitted.get_nowait()
                if isinstance(item, Admitted) and item.looking is not None:
                    item.looking.cancel()
            await stream.detector.finish()


log = logging.getLogger(__name__)

# How often readiness asks the detector and eye-state service whether they accept this aggregator's credentials.
CREDENTIALS_CHECK_S = 10.0


class _Backend:
    """Owns the Redis client and the downstream channels. Ready: Redis answers, and neither downstream service has
    refused this aggregator's token or TLS set-up (a service that is merely down leaves it ready: PublishEyeStates
    and subscriptions need neither, and TrackFrames answers UNAVAILABLE until it is back)."""

    def __init__(self, options: AggregatorOptions) -> None:
        self.store = RedisStore(options.store)
        self.fanout = EventFanout(self.store, buffer=options.subscriber_buffer)
        self.options = options
        self.detector: AioStubs | None = None
        self.eyestate: AioStubs | None = None
        self.refused = ""  # why a downstream service refused our credentials at the last check ("": it did not)
        self._checked_at = -math.inf

    async def start(self) -> None:
        security = self.options.downstream_security
        channel_options = [("grpc.max_send_message_length", self.options.server.max_message_bytes)]
        self.detector = aio_stubs(self.options.detector_addr, security, channel_options)
        self.eyestate = aio_stubs(self.options.eyestate_addr, security, channel_options)

    async def ready(self) -> bool:
        if self.detector is not None and time.monotonic() - self._checked_at >= CREDENTIALS_CHECK_S:
            self._checked_at = time.monotonic()
            refused = await self._check_credentials()
            if refused and refused != self.refused:
                log.error("not ready: %s", refused)
            self.refused = refused
        return not self.refused and await self.store.ping() and await self.store.writable()

    async def _check_credentials(self) -> str:
        """One authenticated call to each downstream service: GetModelInfo, and DetectEyes on an 8x8 frame."""
        tiny = types_pb2.Image(
            raw=types_pb2.RawImage(pixels=bytes(64), width=8, height=8, format=types_pb2.PIXEL_FORMAT_GRAY8)
        )
        assert self.eyestate is not None and self.detector is not None, "checked once started"
        calls = [
            ("eye-state", self.eyestate.eyestate.GetModelInfo, eyestate_pb2.GetModelInfoRequest()),
            (
                "detector",
                self.detector.detector.DetectEyes,
                detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(image=tiny)),
            ),
        ]
        for name, method, request in calls:
            try:
                await method(request, timeout=2.0)
            except grpc.aio.AioRpcError as exc:
                if credentials_refused(exc):
                    return f"the {name} refused this aggregator's credentials: {exc.code().name}: {exc.details()}"
        return ""

    async def close(self) -> None:
        await self.fanout.close()
        for stubs in (self.detector, self.eyestate):
            if stubs is not None:
                await stubs.close()
        await self.store.close()


def build_backend(options: AggregatorOptions) -> _Backend:
    return _Backend(options)


def build_host(options: AggregatorOptions, backend: _Backend) -> ServiceHost:
    frames = None
    if backend.detector is not None and backend.eyestate is not None:  # started: TrackFrames can call them
        frames = FrameServices(
            store=backend.store,
            commits=ingest.GroupCommit(backend.store),
            config=options.engine,
            detector=backend.detector.detector,
            eyestate=backend.eyestate.eyestate,
            max_seq_jump=options.max_seq_jump,
            credentials_problem=lambda: backend.refused,
        )
    servicer = AggregatorServicer(backend.store, options.engine, backend.fanout, frames)
    register = partial(aggregator_pb2_grpc.add_AggregatorServiceServicer_to_server, servicer)
    limits = {"SubscribeBlinks": options.max_subscribers}  # long-lived and cheap: their own limit
    return ServiceHost(options.server, AGGREGATOR, register, backend.ready, limits)


async def serve(options: AggregatorOptions) -> None:
    backend = build_backend(options)
    await backend.start()
    await run_until_signal(build_host(options, backend), backend.close)
