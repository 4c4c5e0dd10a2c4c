"""The errors a blinkstack service answers with: each exception type carries its gRPC status code.

Handlers and the parts they call raise these; one server interceptor (`grpc_server.RpcBoundary`) turns them
into the status and message the client sees. Nothing below the servicer calls `context.abort` itself.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """An error with a status code for the client; the message is what the client reads."""

    code = grpc.StatusCode.INTERNAL


class InvalidInput(ServiceError, ValueError):
    """A request field is missing, malformed or out of bounds: the client must change the request."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class Unavailable(ServiceError):
    """A dependency (model backend, Redis, another service) cannot answer now; the client may retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    """The service is not set up for this call (e.g. an aggregator without detector and eye-state)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


def quoted(value: str, limit: int = 64) -> str:
    """`value` as it appears in an error message: repr, cut at `limit` characters (clients can send megabytes)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} characters)"


class ResourceExhausted(ServiceError):
    """Over a limit the service keeps to stay healthy (concurrent calls, a subscriber's backlog): retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExpired(ServiceError):
    """The caller's deadline passed before the work started: it is not done."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(ServiceError):
    """No valid bearer token."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    """A valid token without the scope, or the stream, this call needs."""

    code = grpc.StatusCode.PERMISSION_DENIED


class IdleStream(ServiceError):
    """A client stream sent nothing for longer than the service waits (--stream-idle-s)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
