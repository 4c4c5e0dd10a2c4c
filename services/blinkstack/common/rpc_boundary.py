"""The one edge between handlers and gRPC: errors become status codes, and every RPC is counted and timed.

Registered once per server (`ServiceHost`), it wraps all four handler kinds, streams included, so handlers
just raise a `ServiceError` subclass and never call `context.abort` or touch the RPC metrics themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from blinkstack.common import metrics
from blinkstack.common.errors import DeadlineExpired, IdleStream, InvalidInput, ResourceExhausted, ServiceError
from blinkstack.common.security import GRANT, TokenTable

log = logging.getLogger(__name__)


class _Call:
    """One RPC's outcome: the status code it ended with, recorded once when it ends."""

    def __init__(self, boundary: RpcBoundary, method: str) -> None:
        self.boundary, self.method, self.start = boundary, method, time.perf_counter()
        self.slot: str | None = None  # the admission limit this call counts against, once admitted
        self.peer = ""  # who it counts against within that limit

    async def fail(self, exc: BaseException, context: grpc.aio.ServicerContext) -> None:
        """Record how the RPC failed; a ServiceError is answered with its code and message."""
        if isinstance(exc, ServiceError):
            self.end(exc.code)
            await context.abort(exc.code, str(exc))
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):  # the client went away
            self.end(grpc.StatusCode.CANCELLED)
        elif isinstance(exc, grpc.aio.AbortError):  # an abort by code we do not own (health, reflection)
            code = context.code()
            self.end(code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN)
        else:
            log.exception("%s failed", self.method)
            self.end(grpc.StatusCode.UNKNOWN)

    def end(self, code: grpc.StatusCode) -> None:
        self.boundary.record(self.method, code.name, time.perf_counter() - self.start)


class RpcBoundary(grpc.aio.ServerInterceptor):
    """Maps `ServiceError`s to their status, counts/times every RPC of one service process, and admits calls.

    Authentication: with a tokens file, each of our calls needs a bearer token whose scopes cover it
    (`security.TokenTable`); its grant is what `security.require_stream` checks in the handlers.
    Admission: at most `max_concurrent` of the service's own calls run at once (0: no limit), except methods
    with their own limit in `limits` (long-lived streams such as subscriptions), which count only against it.
    One peer (its token's name with tokens on, else its IP address) may hold at most `peer_share` of a limit, so
    one client cannot starve the others. A call over a limit is refused at once with RESOURCE_EXHAUSTED, and a
    call whose deadline has already passed is not started. A client stream that sends nothing for `idle_s` is
    ended (DEADLINE_EXCEEDED), freeing its slot. Health and reflection are never refused.
    """

    def __init__(
        self,
        service: str,
        max_concurrent: int = 0,
        limits: dict[str, int] | None = None,
        tokens: TokenTable | None = None,
        peer_share: float = 1.0,
        idle_s: float = 0.0,
    ) -> None:
        self.service, self.max_concurrent, self.limits, self.tokens = service, max_concurrent, limits or {}, tokens
        self.peer_share, self.idle_s = peer_share, idle_s
        self.active: Counter[str] = Counter()
        self.by_peer: Counter[tuple[str, str]] = Counter()
        self._latency: dict[str, Any] = {}
        self._requests: dict[tuple[str, str], Any] = {}

    def admit(self, call: _Call, context: grpc.aio.ServicerContext) -> None:
        """Authenticate (with a tokens file), then admit within the limits; raises what the client is told."""
        if "/" in call.method:  # not one of ours: health and reflection are open
            return
        if self.tokens is not None:
            grant = self.tokens.authorize(context.invocation_metadata(), call.method)
            GRANT.set(grant)
            peer = f"token {grant.name}"
        else:
            peer = _peer_address(context.peer())
        slot = call.method if call.method in self.limits else ""
        limit = self.limits.get(call.method, self.max_concurrent)
        what = f"{call.method} calls" if slot else "calls"
        if limit and self.active[slot] >= limit:
            raise ResourceExhausted(f"{limit} concurrent {what} already in progress; retry later")
        share = max(1, int(limit * self.peer_share))
        if limit and self.peer_share < 1 and self.by_peer[slot, peer] >= share:
            raise ResourceExhausted(
                f"{peer} already has {share} concurrent {what} in progress, its share of {limit}; retry later"
            )
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExpired(f"{call.method}: the deadline passed before the call started")
        self.active[slot] += 1
        self.by_peer[slot, peer] += 1
        call.slot, call.peer = slot, peer

    def release(self, call: _Call) -> None:
        if call.slot is not None:
            self.active[call.slot] -= 1
            self.by_peer[call.slot, call.peer] -= 1
            if not self.by_peer[call.slot, call.peer]:
                del self.by_peer[call.slot, call.peer]  # peers come and go: the counter must not grow
            call.slot = None

    def record(self, method: str, code: str, seconds: float) -> None:
        # Labelled children resolved once, not per call: `labels()` costs microseconds on every request.
        counter = self._requests.get((method, code))
        if counter is None:
            counter = self._requests[method, code] = metrics.RPC_REQUESTS.labels(self.service, method, code)
        latency = self._latency.get(method)
        if latency is None:
            latency = self._latency[method] = metrics.RPC_LATENCY.labels(self.service, method)
        counter.inc()
        latency.observe(seconds)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = method_label(handler_call_details.method)
        kind = next(k for k in _HANDLER_KINDS if getattr(handler, k) is not None)
        behavior = getattr(handler, kind)
        # Requests arrive as bytes and are parsed here, so a malformed message is the client's INVALID_ARGUMENT
        # (naming which message of a stream), not gRPC's UNKNOWN with a traceback in the log.
        deserialize = handler.request_deserializer or _unparsed
        stream = kind.startswith("stream")
        parse: Callable = _stream_parser(deserialize, self.idle_s) if stream else _message_parser(deserialize)
        wrap = self._stream if inspect.isasyncgenfunction(behavior) else self._unary
        wrapped = wrap(behavior, method, parse)
        return _HANDLER_KINDS[kind](wrapped, None, handler.response_serializer)

    def _unary(self, behavior: Callable[..., Awaitable[Any]], method: str, parse: Callable) -> Callable:
        """Handlers that return one reply (or write their stream themselves)."""

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._admitted(method, context):
                return await behavior(parse(request), context)

        return handle

    def _stream(self, behavior: Callable[..., AsyncIterator[Any]], method: str, parse: Callable) -> Callable:
        """Handlers that yield their replies."""

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with self._admitted(method, context):
                async for reply in behavior(parse(request), context):
                    yield reply

        return handle

    @contextlib.asynccontextmanager
    async def _admitted(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """One call of either kind: admitted (or refused), its failure answered with its status, always released
        and recorded once."""
        call = _Call(self, method)
        try:
            self.admit(call, context)
            yield
        except BaseException as exc:
            await call.fail(exc, context)
            raise
        finally:
            self.release(call)
        call.end(grpc.StatusCode.OK)


_HANDLER_KINDS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}
MAX_DETAIL_CHARS = 200  # of a parser's complaint quoted back to the client


def _unparsed(raw: bytes) -> bytes:  # a handler registered without a deserializer takes the bytes as they are
    return raw


def _parsed(deserializer: Callable[[bytes], Any], raw: bytes, what: str) -> Any:
    try:
        return deserializer(raw)
    except DecodeError as exc:
        raise InvalidInput(f"{what} is not a valid protobuf message: {str(exc)[:MAX_DETAIL_CHARS]}") from None


def _message_parser(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    return lambda raw: _parsed(deserializer, raw, "the request")


def _stream_parser(
    deserializer: Callable[[bytes], Any], idle_s: float = 0.0
) -> Callable[[AsyncIterator[bytes]], AsyncIterator]:
    """Each message of a client stream parsed; with `idle_s`, a stream that sends nothing for that long ends."""

    async def parsed(raw_messages: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        index = 0
        messages = aiter(raw_messages)
        while True:
            try:
                raw = await asyncio.wait_for(anext(messages), idle_s) if idle_s else await anext(messages)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise IdleStream(
                    f"no message for {idle_s:g} s after message {index - 1} (--stream-idle-s): the call is ended so "
                    "that it holds no slot; open a new one when there is something to send"
                ) from None
            yield _parsed(deserializer, raw, f"message {index} of the stream")
            index += 1

    return parsed


def _peer_address(peer: str) -> str:
    """`ipv4:10.0.0.7:51234` -> `ipv4:10.0.0.7` (ports change with every connection, the client does not)."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return f"{kind}:{rest.rpartition(':')[0]}"
    return peer


def method_label(path: str) -> str:
    """`/blinkstack.v1.EyeStateService/ClassifyEyes` -> `ClassifyEyes`; other services keep their full name
    (`grpc.health.v1.Health/Check`), so a health probe never reads as one of ours."""
    service, _, name = path.lstrip("/").rpartition("/")
    return name if service.startswith("blinkstack.") else f"{service}/{name}"
