"""`blinkstack alerts` (the real CLI, in its own process) between a real aggregator on Redis and a real local HTTP
endpoint: every alert of a scripted timeline arrives exactly once, across a webhook outage and a restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from blinkstack.aggregator.engine import EngineConfig, EventType
from blinkstack.v1 import aggregator_pb2
from tests.helpers import SERVING
from tests.helpers.aggregator import collect, messages
from tests.helpers.engine import CLOSED_P, OPEN_P, run, timeline
from tests.helpers.servers import aggregator_service, wait_for_health

ALERT_TYPES = [aggregator_pb2.EVENT_TYPE_DROWSINESS, aggregator_pb2.EVENT_TYPE_LONG_CLOSURE]
# Eyes closed for 6.3 s: LONG_CLOSURE started and ended, ASLEEP at 3 s, escalations at 3 and 5 s.
DOZING = timeline([(30, OPEN_P, OPEN_P), (190, CLOSED_P, CLOSED_P), (30, OPEN_P, OPEN_P)])


class Webhook:
    """A local HTTP endpoint that records what it accepts and answers 503 to the first `outage` requests."""

    def __init__(self, outage: int) -> None:
        self.accepted: list[tuple[str, dict]] = []  # (Idempotency-Key, body)
        self.refused = 0
        self.outage = outage
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if webhook.refused < webhook.outage:
                    webhook.refused += 1
                    self.send_response(503)
                else:
                    webhook.accepted.append((self.headers["Idempotency-Key"], body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.accepted) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.accepted) >= count, f"{len(self.accepted)} of {count} alerts arrived"

    def close(self) -> None:
        self.server.shutdown()


def alerts_of(observations) -> int:
    _, events = run(observations, EngineConfig())
    return sum(e.type in (EventType.DROWSINESS, EventType.LONG_CLOSURE) for e in events)


@pytest.fixture
def webhook():
    running = Webhook(outage=3)
    yield running
    running.close()


def test_every_alert_reaches_the_webhook_once_across_an_outage_and_a_restart(redis_server, webhook, tmp_path):
    aggregator = aggregator_service(redis_server.url, redis_prefix="alerts")
    per_stream = alerts_of(DOZING)
    assert per_stream == 5
    command = [sys.executable, "-m", "blinkstack.cli", "alerts", "--target", aggregator.address]
    command += ["--webhook", webhook.url, "--state", str(tmp_path / "cursor"), "--start", "0", "--max-backoff", "0.3"]
    forwarder = None
    try:
        wait_for_health(aggregator.address, SERVING)
        aggregator.stub.PublishEyeStateBatches(messages("driver-a", 1, DOZING, per_message=50), timeout=30)
        forwarder = subprocess.Popen(command)
        webhook.wait_for(per_stream)
        assert webhook.refused == 3  # the outage: the same first alert was retried until it got through
        time.sleep(0.5)  # idle: everything received is acknowledged
        forwarder.kill()  # SIGKILL: no goodbye
        forwarder.wait(10)
        aggregator.stub.PublishEyeStateBatches(messages("driver-b", 1, DOZING, per_message=50), timeout=30)
        forwarder = subprocess.Popen(command)  # resumes after its last acknowledged alert
        webhook.wait_for(2 * per_stream)
        time.sleep(1.0)  # nothing more may come
        request = aggregator_pb2.SubscribeBlinksRequest(types=ALERT_TYPES, after_id="0")
        stored = collect(aggregator.stub, request, 2 * per_stream)
    finally:
        if forwarder is not None:
            forwarder.kill()
            forwarder.wait(10)
        aggregator.close()
    keys = [key for key, _ in webhook.accepted]
    assert keys == [event.id for event in stored]  # each once, in order
    assert all(body["id"] == key for key, body in webhook.accepted)
    kinds = [(body["type"], body["level"], body["escalation"]) for _, body in webhook.accepted[:per_stream]]
    asleep = [("DROWSINESS", "ASLEEP", escalation) for escalation in (0, 1, 2)]
    assert sorted(kinds) == sorted([("LONG_CLOSURE", "", 0), *asleep, ("LONG_CLOSURE", "", 0)])


class ScriptedWebhook:
    """Answers each POST with the next scripted answer: a status code (with a Location for 3xx), or b"garbage" (a
    reply that is not HTTP); 204 once the script is used up. Records (method, path, headers, body) of each request."""

    def __init__(self, script: list) -> None:
        self.script, self.requests = list(script), []
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                webhook.requests.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
                answer = webhook.script.pop(0) if webhook.script and self.path == "/alerts" else 204
                if answer == b"garbage":
                    self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
                    return
                self.send_response(answer)
                if 300 <= answer < 400:
                    self.send_header("Location", "/moved")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def dozing_aggregator(redis_server):
    aggregator = aggregator_service(redis_server.url, redis_prefix="alerts-answers")
    wait_for_health(aggregator.address, SERVING)
    aggregator.stub.PublishEyeStateBatches(messages("driver-c", 1, DOZING, per_message=50), timeout=30)
    yield aggregator
    aggregator.close()


def run_alerts(
    aggregator, tmp_path, *extra: str, until: Callable[[], bool] | None = None, wait: float = 15.0
) -> subprocess.CompletedProcess | None:
    """The CLI until it exits (its result), or None: still running (delivering) once `until()` held, or after
    `wait` seconds."""
    command = [sys.executable, "-m", "blinkstack.cli", "alerts", "--target", aggregator.address, "--start", "0"]
    command += ["--state", str(tmp_path / "cursor"), "--max-backoff", "0.2", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + wait
    while process.poll() is None and time.monotonic() < deadline and not (until and until()):
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.communicate()
        return None
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize("answer", [401, 404, 302, 301])
def test_a_webhook_that_refuses_or_redirects_keeps_the_alert_and_stops_alerts(dozing_aggregator, tmp_path, answer):
    webhook = ScriptedWebhook([answer])
    done = run_alerts(dozing_aggregator, tmp_path, "--webhook", webhook.url)
    assert done is not None and done.returncode == 1, done
    assert f"HTTP {answer}" in done.stderr and "cursor on it" in done.stderr
    assert not (tmp_path / "cursor").exists()  # nothing acknowledged: a fixed webhook gets this alert first
    assert [(m, p) for m, p, _, _ in webhook.requests] == [("POST", "/alerts")]  # no GET of a redirect
    fixed = ScriptedWebhook([])
    run_alerts(dozing_aggregator, tmp_path, "--webhook", fixed.url, until=lambda: bool(fixed.requests))
    first = json.loads(webhook.requests[0][3])
    assert json.loads(fixed.requests[0][3])["id"] == first["id"]


def test_307_is_followed_with_the_body_and_a_garbage_reply_is_retried(dozing_aggregator, tmp_path):
    webhook = ScriptedWebhook([b"garbage", 503, 307])
    delivered = run_alerts(
        dozing_aggregator, tmp_path, "--webhook", webhook.url, until=lambda: len(webhook.requests) > 4
    )
    assert delivered is None  # still delivering
    paths = [(m, p) for m, p, _, _ in webhook.requests]
    assert paths[:4] == [("POST", "/alerts")] * 3 + [("POST", "/moved")]
    assert webhook.requests[3][3] == webhook.requests[0][3]  # the same alert, body and all
    assert (tmp_path / "cursor").exists()


def test_alerts_are_signed_and_carry_the_token_and_a_bad_url_fails_at_start(dozing_aggregator, tmp_path):
    secret, token = tmp_path / "secret", tmp_path / "token"
    secret.write_text("s3cret\n")
    token.write_text("tok-webhook\n")
    webhook = ScriptedWebhook([])
    extra = ["--webhook", webhook.url, "--webhook-secret-file", str(secret), "--webhook-token-file", str(token)]
    run_alerts(dozing_aggregator, tmp_path, *extra, until=lambda: bool(webhook.requests))
    _, _, headers, body = webhook.requests[0]
    signed = headers["X-Blinkstack-Timestamp"].encode() + b"." + body
    assert headers["X-Blinkstack-Signature"] == "sha256=" + hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest()
    assert abs(int(headers["X-Blinkstack-Timestamp"]) - time.time()) < 60
    assert headers["Authorization"] == "Bearer tok-webhook"
    bad = run_alerts(dozing_aggregator, tmp_path, "--webhook", "not-a-url", wait=30.0)  # exits on its own
    assert bad is not None and bad.returncode == 2 and "not an http:// or https:// URL" in bad.stderr
