"""`blinkstack alerts`: follow the aggregator's alerts and hand each to a webhook (HTTP POST, JSON) or stdout.

At-least-once delivery: an alert is acknowledged, and the subscription's cursor written to the state file, only
after the webhook answered 2xx, so a restart resumes right after the last acknowledged alert and a crash can at
worst repeat that one. Every POST carries the event id as its `Idempotency-Key` header (and in the body), so a
receiver that remembers ids sees each alert exactly once. While the webhook fails (connection refused, timeout,
5xx, 408, 429) the same alert is retried with exponential backoff; other 4xx answers mean the receiver rejects
it for good: it is logged and skipped. While the aggregator is away, the subscription is re-opened from the
state file, with backoff.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc

from blinkstack.aggregator import events as event_forms
from blinkstack.common.security import client_security
from blinkstack.v1 import aggregator_pb2, aggregator_pb2_grpc

log = logging.getLogger("blinkstack.alerts")
DEFAULT_TYPES = ("DROWSINESS", "LONG_CLOSURE")
RETRYABLE_STATUS = {408, 429}


class Rejected(Exception):
    """The webhook refused the alert for good (a 4xx other than 408/429)."""


def post(url: str, event: aggregator_pb2.BlinkEvent, timeout_s: float) -> None:
    """One delivery attempt; raises on anything but 2xx."""
    data = json.dumps(event_forms.to_json(event)).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": event.id, "User-Agent": "blinkstack-alerts"}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in RETRYABLE_STATUS:
            raise Rejected(f"HTTP {exc.code} {exc.reason}") from None
        raise


def deliver(send: Callable[[], None], what: str, max_backoff_s: float) -> None:
    """`send()` until it succeeds (or is rejected for good), backing off between attempts."""
    delay = 0.2
    while True:
        try:
            send()
            return
        except Rejected as exc:
            log.error("%s rejected by the webhook (%s): skipped", what, exc)
            return
        except (OSError, urllib.error.URLError) as exc:  # refused, timeout, 5xx (HTTPError is a URLError)
            log.warning("%s not delivered (%s); retrying in %.1f s", what, exc, delay)
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

    def emit(event: aggregator_pb2.BlinkEvent) -> None:
        if args.webhook:
            deliver(lambda: post(args.webhook, event, args.timeout), f"alert {event.id}", args.max_backoff)
        else:
            print(json.dumps(event_forms.to_json(event)), flush=True)
        state.write(event.cursor)

    delay = 0.5
    while True:
        after = state.read()
        request = aggregator_pb2.SubscribeBlinksRequest(
            stream_ids=args.stream_id or [], types=types, after_id=after if after is not None else args.start
        )
        try:
            with client_security(args).channel(args.target) as channel:
                for event in aggregator_pb2_grpc.AggregatorServiceStub(channel).SubscribeBlinks(request):
                    emit(event)
                    delay = 0.5
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED):
                print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
                return 2
            log.warning("subscription ended (%s: %s); resubscribing in %.1f s", exc.code().name, exc.details(), delay)
        time.sleep(delay)
        delay = min(delay * 2, args.max_backoff)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--webhook", help="POST each alert here as JSON (default: print JSON Lines to stdout)")
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
