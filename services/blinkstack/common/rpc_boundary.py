"""The one edge between handlers and gRPC: errors become status codes, and every RPC is counted and timed.

Registered once per server (`ServiceHost`), it wraps all four handler kinds, streams included, so handlers
just raise a `ServiceError` subclass and never call `context.abort` or touch the RPC metrics themselves.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from blinkstack.common import metrics
from blinkstack.common.errors import ServiceError

log = logging.getLogger(__name__)


class _Call:
    """One RPC's outcome: the status code it ended with, recorded once when it ends."""

    def __init__(self, boundary: RpcBoundary, method: str) -> None:
        self.boundary, self.method, self.start = boundary, method, time.perf_counter()

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
    """Maps `ServiceError`s to their status and counts/times every RPC of one service process."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._latency: dict[str, Any] = {}
        self._requests: dict[tuple[str, str], Any] = {}

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
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, method), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            wrap = self._stream if inspect.isasyncgenfunction(handler.unary_stream) else self._unary
            return grpc.unary_stream_rpc_method_handler(
                wrap(handler.unary_stream, method), handler.request_deserializer, handler.response_serializer
            )
        wrap = self._stream if inspect.isasyncgenfunction(handler.stream_stream) else self._unary
        return grpc.stream_stream_rpc_method_handler(
            wrap(handler.stream_stream, method), handler.request_deserializer, handler.response_serializer
        )

    def _unary(self, behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
        """Handlers that return one reply (or write their stream themselves)."""

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = _Call(self, method)
            try:
                reply = await behavior(request, context)
            except BaseException as exc:
                await call.fail(exc, context)
                raise
            call.end(grpc.StatusCode.OK)
            return reply

        return handle

    def _stream(self, behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., AsyncIterator[Any]]:
        """Handlers that yield their replies."""

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            call = _Call(self, method)
            try:
                async for reply in behavior(request, context):
                    yield reply
            except BaseException as exc:
                await call.fail(exc, context)
                raise
            call.end(grpc.StatusCode.OK)

        return handle


def method_label(path: str) -> str:
    """`/blinkstack.v1.EyeStateService/ClassifyEyes` -> `ClassifyEyes`; other services keep their full name
    (`grpc.health.v1.Health/Check`), so a health probe never reads as one of ours."""
    service, _, name = path.lstrip("/").rpartition("/")
    return name if service.startswith("blinkstack.") else f"{service}/{name}"
