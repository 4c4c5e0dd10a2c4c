"""`blinkstack alerts` (the real CLI, in its own process) between a real aggregator on Redis and a real local HTTP
endpoint: every alert of a scripted timeline arrives exactly once, across a webhook outage and a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
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
