"""blinkstack's Python client: one connection helper and typed calls, the way every blinkstack tool talks to the
services. Like `tritonclient`, it wraps the stubs, TLS, tokens, keepalive and errors.

    from blinkstack.client import Client

    with Client("127.0.0.1:50052") as eyes:                        # the eye-state service
        result = eyes.classify_eyes([png_bytes, gray_crop_array])
        print(result.prob_open, result.states)                      # numpy array, state names

    with Client("127.0.0.1:50053") as aggregator:                  # the aggregator
        for event in aggregator.subscribe(stream_ids=["cam-1"]):    # resumes by itself after a restart
            print(event.type, event.cursor)

Every failed call raises `BlinkstackError` with the gRPC code and the server's message. Unary calls are retried on
UNAVAILABLE (a service restarting) with one backoff policy; `subscribe` resumes from the cursor of the last event
it yielded on any transient error, so each event arrives once. Security: `ClientSecurity` (a CA for TLS, a client
certificate for mTLS, a bearer token file); the default is plaintext on loopback.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import cv2
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from blinkstack.common.security import ClientSecurity
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
Reply = TypeVar("Reply")

# Dead servers (a node that lost power, a vanished NAT) are found by pings rather than by a call that hangs until
# its deadline. The servers accept a ping every 10 s at most (grpc_server.KEEPALIVE).
KEEPALIVE: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the services' default request limit: frames up to it are sent
# A subscription that ends with one of these is re-opened after the last event yielded: the aggregator restarting
# (UNAVAILABLE), a subscriber dropped for falling behind or a full server (RESOURCE_EXHAUSTED), a conflict
# (ABORTED), a silent stream ended by the server (DEADLINE_EXCEEDED), a stream reset by the server's backlog limit
# (CANCELLED, when we did not cancel it ourselves).
RESUMABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }
)


class BlinkstackError(Exception):
    """A call that failed: `code` is the gRPC status code, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str, method: str = "") -> None:
        super().__init__(f"{method + ': ' if method else ''}{code.name}: {details}")
        self.code, self.details, self.method = code, details, method

    @classmethod
    def of(cls, exc: grpc.RpcError, method: str = "") -> BlinkstackError:
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        return cls(code, details or "", method)


@dataclass(frozen=True)
class Backoff:
    """Waits between retries: `first_s`, doubling up to `max_s`, each with up to `jitter` of itself at random (so
    clients that failed together do not come back together)."""

    first_s: float = 0.2
    max_s: float = 10.0
    jitter: float = 0.2

    def delays(self) -> Iterator[float]:
        delay = self.first_s
        while True:
            yield delay * (1 + self.jitter * random.random())
            delay = min(delay * 2, self.max_s)


def channel(
    target: str, security: ClientSecurity | None = None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A channel to `target` ("host:port") with keepalive and the services' message size, TLS/mTLS and a token as
    `security` says (plaintext without a CA)."""
    return (security or ClientSecurity()).channel(target, _options(options))


def aio_channel(
    target: str, security: ClientSecurity | None = None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """`channel` for asyncio code."""
    return (security or ClientSecurity()).aio_channel(target, _options(options))


def _options(extra: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    given = {name for name, _ in extra}
    defaults = [*KEEPALIVE, ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
    return [*extra, *(option for option in defaults if option[0] not in given)]


@dataclass
class AioStubs:
    """The three services' asyncio stubs on one channel: for asyncio code (the aggregator's calls downstream, the
    load generators), which awaits the raw calls itself."""

    channel: grpc.aio.Channel
    eyestate: eyestate_pb2_grpc.EyeStateServiceStub
    detector: detector_pb2_grpc.DetectorServiceStub
    aggregator: aggregator_pb2_grpc.AggregatorServiceStub

    async def close(self) -> None:
        await self.channel.close()


def aio_stubs(target: str, security: ClientSecurity | None = None, options: Sequence[tuple[str, Any]] = ()) -> AioStubs:
    ch = aio_channel(target, security, options)
    return AioStubs(
        ch,
        eyestate_pb2_grpc.EyeStateServiceStub(ch),
        detector_pb2_grpc.DetectorServiceStub(ch),
        aggregator_pb2_grpc.AggregatorServiceStub(ch),
    )


def health(
    target: str, service: str = "", security: ClientSecurity | None = None, timeout_s: float = 1.0
) -> int | None:
    """grpc.health.v1 status of `service` at `target` ("": the server as a whole); None when it does not answer."""
    with Client(target, security, timeout_s=timeout_s, retries=0) as client:
        return client.health(service)


def wait_until_connectable(target: str, timeout_s: float) -> None:
    """Returns once `target` accepts connections; grpc.FutureTimeoutError after `timeout_s`."""
    with grpc.insecure_channel(target) as ch:
        grpc.channel_ready_future(ch).result(timeout=timeout_s)


@dataclass(frozen=True)
class Classification:
    """ClassifyEyes' answer, one entry per crop or box: numpy arrays for numbers, names for enums."""

    prob_open: np.ndarray  # float32 [N]
    prob_eye: np.ndarray  # float32 [N], NaN where the service has no eye gate
    states: list[str]  # "OPEN", "CLOSED" or "UNKNOWN"
    reasons: list[str]  # why UNKNOWN ("" otherwise): "NOT_AN_EYE", "MODEL_UNCERTAIN", ...
    response: eyestate_pb2.ClassifyEyesResponse = field(repr=False)

    @classmethod
    def of(cls, response: eyestate_pb2.ClassifyEyesResponse) -> Classification:
        results = response.results
        return cls(
            np.array([r.prob_open for r in results], np.float32),
            np.array([r.prob_eye if r.HasField("prob_eye") else np.nan for r in results], np.float32),
            [types_pb2.EyeState.Name(r.state).removeprefix("EYE_STATE_") for r in results],
            [
                types_pb2.UnknownReason.Name(r.reason).removeprefix("UNKNOWN_REASON_") if r.reason else ""
                for r in results
            ],
            response,
        )


def image_message(image: bytes | np.ndarray) -> types_pb2.Image:
    """Encoded bytes (PNG or JPEG) as they are; a uint8 array (gray HxW or BGR HxWx3) as PNG."""
    if isinstance(image, bytes | bytearray):
        return types_pb2.Image(encoded=bytes(image))
    ok, encoded = cv2.imencode(".png", np.asarray(image))
    if not ok:
        raise ValueError(f"cannot encode an array of shape {np.shape(image)} as PNG")
    return types_pb2.Image(encoded=encoded.tobytes())


class Client:
    """Calls to one blinkstack service address (each service has its own: one Client per service you use).

    `timeout_s` is every call's deadline unless a call says otherwise; `retries` is how often a unary call that
    found the service UNAVAILABLE is tried again, waiting as `backoff` says. The raw stubs (`eyestate`,
    `detector`, `aggregator`) are there for what the typed calls do not cover; their errors are grpc.RpcError.
    """

    def __init__(
        self,
        target: str,
        security: ClientSecurity | None = None,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff: Backoff = Backoff(),
    ) -> None:
        self.target, self.security = target, security or ClientSecurity()
        self.timeout_s, self.retries, self.backoff = timeout_s, retries, backoff
        self.channel = channel(target, self.security)
        self.eyestate = eyestate_pb2_grpc.EyeStateServiceStub(self.channel)
        self.detector = detector_pb2_grpc.DetectorServiceStub(self.channel)
        self.aggregator = aggregator_pb2_grpc.AggregatorServiceStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: Callable[..., Reply], request: Any, timeout_s: float | None, name: str) -> Reply:
        delays = self.backoff.delays()
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=timeout_s or self.timeout_s)
            except grpc.RpcError as exc:
                error = BlinkstackError.of(exc, name)
                if error.code != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise error from None
                delay = next(delays)
                log.info("%s; retrying in %.1f s", error, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def health(self, service: str = "", timeout_s: float | None = None) -> int | None:
        """grpc.health.v1 status (SERVING, NOT_SERVING...) of `service` ("": the server); None: no answer."""
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            return self._health.Check(request, timeout=timeout_s or self.timeout_s).status
        except grpc.RpcError:
            return None

    # --- eye-state service ---
    def classify_eyes(
        self,
        crops: Sequence[bytes | np.ndarray] = (),
        *,
        frame: bytes | np.ndarray | None = None,
        boxes: Sequence[tuple[float, float, float, float]] = (),
        timeout_s: float | None = None,
    ) -> Classification:
        """P(open) per eye crop (encoded bytes or uint8 arrays), or per (x, y, width, height) box of `frame`."""
        if frame is not None:
            frame_boxes = eyestate_pb2.FrameWithBoxes(
                frame=image_message(frame),
                eye_boxes=[types_pb2.Box(x=x, y=y, width=w, height=h) for x, y, w, h in boxes],
            )
            request = eyestate_pb2.ClassifyEyesRequest(frame=frame_boxes)
        else:
            request = eyestate_pb2.ClassifyEyesRequest(
                crops=eyestate_pb2.CropBatch(crops=[image_message(c) for c in crops])
            )
        return Classification.of(self._call(self.eyestate.ClassifyEyes, request, timeout_s, "ClassifyEyes"))

    def model_info(self, timeout_s: float | None = None) -> eyestate_pb2.ModelInfo:
        request = eyestate_pb2.GetModelInfoRequest()
        return self._call(self.eyestate.GetModelInfo, request, timeout_s, "GetModelInfo")

    # --- detector ---
    def detect_eyes(
        self, frame: bytes | np.ndarray, *, stream_id: str = "", timestamp_us: int = 0, timeout_s: float | None = None
    ) -> detector_pb2.DetectEyesResponse:
        """Faces with eye boxes, lids and track ids (tracked across calls with the same `stream_id`)."""
        message = types_pb2.Frame(image=image_message(frame), stream_id=stream_id, timestamp_us=timestamp_us)
        request = detector_pb2.DetectEyesRequest(frame=message)
        return self._call(self.detector.DetectEyes, request, timeout_s, "DetectEyes")

    # --- aggregator ---
    def track_frames(
        self, frames: Iterable[types_pb2.Frame], timeout_s: float | None = None
    ) -> Iterator[aggregator_pb2.FrameResult]:
        """One FrameResult per frame, in order (`blinkstack watch` adds exactly-once resending on top)."""
        call = self.aggregator.TrackFrames(iter(frames), timeout=timeout_s)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise BlinkstackError.of(exc, "TrackFrames") from None
        finally:
            call.cancel()

    def get_stats(self, stream_id: str, track_id: int, timeout_s: float | None = None) -> aggregator_pb2.TrackStats:
        request = aggregator_pb2.GetStatsRequest(stream_id=stream_id, track_id=track_id)
        return self._call(self.aggregator.GetStats, request, timeout_s, "GetStats")

    def subscribe(
        self,
        after: str = "",
        stream_ids: Sequence[str] = (),
        track_ids: Sequence[int] = (),
        types: Sequence[int] = (),
        *,
        idle_s: float | None = None,
        on_resume: Callable[[BlinkstackError, float], None] | None = None,
    ) -> Iterator[aggregator_pb2.BlinkEvent]:
        """Events after `after` (a cursor or event id; "": from now on), then live ones, each once.

        On a transient error (`RESUMABLE`) the subscription is re-opened after the last event yielded, waiting as
        `backoff` says (reset by every event); `on_resume(error, delay)` hears of each. With `idle_s`, it ends
        after that many seconds without an event; otherwise it runs until the caller stops iterating. Any other
        error raises BlinkstackError.
        """
        delays = self.backoff.delays()
        stopped_idle = threading.Event()
        while True:
            request = aggregator_pb2.SubscribeBlinksRequest(
                stream_ids=stream_ids,
                track_ids=track_ids,
                types=[cast(aggregator_pb2.EventType, t) for t in types],
                after_id=after,
            )
            call = self.aggregator.SubscribeBlinks(request)
            timer: threading.Timer | None = None

            def stop_idle(call: Any = call) -> None:
                stopped_idle.set()
                call.cancel()

            def quiet() -> None:
                nonlocal timer
                if timer is not None:
                    timer.cancel()
                if idle_s is not None:
                    timer = threading.Timer(idle_s, stop_idle)
                    timer.daemon = True
                    timer.start()

            try:
                quiet()
                for event in call:
                    quiet()
                    after, delays = event.cursor, self.backoff.delays()
                    yield event
                # A subscription has no end of its own: the server closed it (a graceful shutdown, say).
                error = BlinkstackError(
                    grpc.StatusCode.UNAVAILABLE, "the server ended the subscription", "SubscribeBlinks"
                )
            except grpc.RpcError as exc:
                error = BlinkstackError.of(exc, "SubscribeBlinks")
                if not stopped_idle.is_set() and error.code not in RESUMABLE:
                    raise error from None
            finally:
                if timer is not None:
                    timer.cancel()
                call.cancel()
            if stopped_idle.is_set():
                return
            delay = next(delays)
            if on_resume is not None:
                on_resume(error, delay)
            time.sleep(delay)
