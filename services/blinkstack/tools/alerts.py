"""`blinkstack alerts`: follow the aggregator's alerts and hand each to a webhook (HTTP POST, JSON) or stdout.

At-least-once delivery: an alert is acknowledged, and the subscription's cursor written to the state file, only
after the webhook answered 2xx, so a restart resumes right after the last acknowledged alert and a crash can at
worst repeat that one. Every POST carries the event id as its `Idempotency-Key` header (and in the body), so a
receiver that remembers ids sees each alert exactly once.

What the webhook answers decides what happens:
- 2xx: delivered, the cursor moves on.
- connection refused, timeout, a reply that is not HTTP, 5xx, 408, 429: the same alert is retried with
  exponential backoff.
- 307/308: the POST is repeated, body and all, at the new location (at most MAX_REDIRECTS times). Other
  redirects are not followed: a client that follows a 302 re-sends a bodyless GET, and the alert is lost.
- any other answer (401, 403, 404, 301, 302...): the receiver will not take it. `alerts` stops with exit code 1
  and an error that names the answer; the cursor stays on the alert, so nothing is skipped once it is fixed.
With `--webhook-secret-file`, each POST is signed: `X-Blinkstack-Timestamp` (Unix seconds) and
`X-Blinkstack-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>`, so the receiver
can check origin and freshness. With `--webhook-token-file`, it carries `Authorization: Bearer <token>`.
While the aggregator is away, the subscription is re-opened from the state file, with backoff.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from blinkstack.aggregator import event_forms
from blinkstack.client import Backoff, BlinkstackError, Client
from blinkstack.common.security import client_security, read_secret
from blinkstack.v1 import aggregator_pb2

log = logging.getLogger("blinkstack.alerts")
DEFAULT_TYPES = ("DROWSINESS", "LONG_CLOSURE")
RETRYABLE_STATUS = {408, 429}
MAX_REDIRECTS = 3


class Rejected(Exception):
    """The webhook will not take the alert (an answer that retrying cannot change)."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # every 3xx surfaces as an HTTPError, decided on in `post`


_OPENER = urllib.request.build_opener(_NoRedirects)


@dataclass(frozen=True)
class Webhook:
    """Where alerts go, and how the receiver knows they come from us."""

    url: str
    secret: bytes = b""  # HMAC-SHA256 key for X-Blinkstack-Signature (empty: unsigned)
    token: str = ""  # sent as `Authorization: Bearer` (empty: none)

    @classmethod
    def from_args(cls, url: str, secret_file: str = "", token_file: str = "") -> Webhook:
        """Checked now, not at the first alert: a bad URL or an unreadable file stops `alerts` at start."""
        if url:
            check_url(url, "--webhook")
        secret = read_secret(secret_file, "--webhook-secret-file").encode() if secret_file else b""
        token = read_secret(token_file, "--webhook-token-file") if token_file else ""
        return cls(url, secret, token)

    def headers(self, event: aggregator_pb2.BlinkEvent, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": event.id, "User-Agent": "blinkstack-alerts"}
        if self.secret:
            timestamp = str(int(time.time()))
            digest = hmac.new(self.secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            headers |= {"X-Blinkstack-Timestamp": timestamp, "X-Blinkstack-Signature": f"sha256={digest}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


def check_url(url: str, what: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} {url!r} is not an http:// or https:// URL with a host")


def post(webhook: Webhook, event: aggregator_pb2.BlinkEvent, timeout_s: float) -> None:
    """One delivery attempt (following 307/308 only); raises on anything but 2xx."""
    body = json.dumps(event_forms.to_json(event)).encode()
    url = webhook.url
    for _ in range(MAX_REDIRECTS + 1):
        request = urllib.request.Request(url, data=body, headers=webhook.headers(event, body), method="POST")
        try:
            with _OPENER.open(request, timeout=timeout_s) as response:
                response.read()
                if not 200 <= response.status < 300:  # 1xx/3xx that urllib let through
                    raise Rejected(f"HTTP {response.status} {response.reason}")
                return
        except urllib.error.HTTPError as exc:
            location = exc.headers.get("Location") if exc.headers else None
            if exc.code in (307, 308) and location:
                url = urllib.parse.urljoin(url, location)
                try:
                    check_url(url, f"HTTP {exc.code} Location")
                except ValueError as bad:
                    raise Rejected(str(bad)) from None
                continue
            if exc.code >= 500 or exc.code in RETRYABLE_STATUS:
                raise
            hint = "; redirects are not followed (307/308 only)" if 300 <= exc.code < 400 else ""
            raise Rejected(f"HTTP {exc.code} {exc.reason}{hint}") from None
    raise Rejected(f"more than {MAX_REDIRECTS} redirects")


def deliver(send: Callable[[], None], what: str, max_backoff_s: float) -> None:
    """`send()` until it succeeds, backing off between attempts; `Rejected` goes to the caller."""
    delay = 0.2
    while True:
        try:
            send()
            return
        # refused, timeout, 5xx (HTTPError is a URLError, an OSError), or a reply that is not HTTP at all
        except (OSError, http.client.HTTPException) as exc:
            log.warning("%s not delivered (%s); retrying in %.1f s", what, exc or type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_backoff_s)


class CursorFile:
    """The last acknowledged alert's cursor, written atomically (a crash leaves the old or the new one)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> str | None:
        return self.path.read_text().strip() if self.path.exists() else None

    def write(self, cursor: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        with partial.open("w") as file:
            file.write(cursor + "\n")
            file.flush()
            os.fsync(file.fileno())
        partial.replace(self.path)


def forward(args: argparse.Namespace) -> int:
    state = CursorFile(Path(args.state))
    names = args.types.split(",")
    unknown = [name for name in names if name not in event_forms.TYPE_NUMBERS]
    if unknown:
        print(f"error: --types: unknown {unknown}; choose from {', '.join(event_forms.TYPE_NUMBERS)}", file=sys.stderr)
        return 2
    types = [event_forms.TYPE_NUMBERS[name] for name in names]

    try:
        webhook = Webhook.from_args(args.webhook, args.webhook_secret_file, args.webhook_token_file)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def emit(event: aggregator_pb2.BlinkEvent) -> None:
        if webhook.url:
            deliver(lambda: post(webhook, event, args.timeout), f"alert {event.id}", args.max_backoff)
        else:
            print(json.dumps(event_forms.to_json(event)), flush=True)
        state.write(event.cursor)

    def warn(error: BlinkstackError, delay: float) -> None:
        log.warning("subscription ended (%s); resubscribing in %.1f s", error, delay)

    # The subscription resumes by itself after transient errors; anything else it raises (an aggregator bug, a
    # token refused while it is being rotated) is logged and retried too, from the cursor file: an alert
    # forwarder stops only for what waiting cannot fix.
    backoff = Backoff(max_s=args.max_backoff)
    delays = backoff.delays()
    with Client(args.target, client_security(args), backoff=backoff) as client:
        while True:
            after = state.read()
            try:
                for event in client.subscribe(
                    after if after is not None else args.start, args.stream_id or [], types=types, on_resume=warn
                ):
                    emit(event)
                    delays = backoff.delays()
            except Rejected as exc:
                print(
                    f"error: the webhook refused an alert ({exc}); stopped with the cursor on it, so it is sent "
                    "again once the webhook takes it",
                    file=sys.stderr,
                )
                return 1
            except BlinkstackError as exc:
                if exc.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED):
                    print(f"error: {exc.code.name}: {exc.details}", file=sys.stderr)
                    return 2
                delay = next(delays)
                warn(exc, delay)
                time.sleep(delay)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--webhook", default="", help="POST each alert here as JSON (default: print JSON Lines to stdout)"
    )
    parser.add_argument(
        "--webhook-secret-file", default="", help="sign each POST with HMAC-SHA256 keyed by this file's contents"
    )
    parser.add_argument("--webhook-token-file", default="", help="send this file's token as `Authorization: Bearer`")
    parser.add_argument(
        "--state",
        default=str(Path("runs") / "alerts" / "cursor"),
        help="file holding the last acknowledged alert's cursor: a restart resumes after it",
    )
    parser.add_argument(
        "--start",
        default="",
        help='where to start without a state file: "" only new alerts (default), "0" every stored one',
    )
    parser.add_argument("--types", default=",".join(DEFAULT_TYPES), help="event types to forward, comma-separated")
    parser.add_argument("--stream-id", action="append", help="only this stream (repeatable)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per webhook request")
    parser.add_argument("--max-backoff", type=float, default=30.0, help="longest wait between retries, seconds")
