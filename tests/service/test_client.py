"""blinkstack.client against real services: each typed call, its errors, and a subscription that resumes across an
aggregator restart. The examples in docs/client.md are these calls."""

from __future__ import annotations

import re
import threading
import time

import cv2
import grpc
import numpy as np
import pytest
import redis

from blinkstack.aggregator import engine, event_forms
from blinkstack.aggregator.store import KeyLayout
from blinkstack.client import Backoff, BlinkstackError, Client, health
from blinkstack.common.preprocess import decode_image
from blinkstack.local.processes import free_port
from blinkstack.v1 import types_pb2
from tests.helpers import REPO_ROOT, SERVING, VIDEO
from tests.helpers.servers import aggregator_service, detector_service, eyestate_args, eyestate_service, serving


@pytest.fixture(scope="module")
def eyestate():
    running = serving(eyestate_service(eyestate_args()))
    yield running
    running.close()


def first_video_frame() -> np.ndarray:
    capture = cv2.VideoCapture(str(VIDEO))
    ok, frame = capture.read()
    capture.release()
    assert ok
    return frame


def test_classify_eyes_takes_encoded_crops_and_arrays_and_answers_arrays(eyestate, real_crops):
    with Client(eyestate.address) as client:
        encoded = client.classify_eyes(real_crops[:4])
        arrays = client.classify_eyes([decode_image(c, gray=True) for c in real_crops[:4]])
    assert encoded.prob_open.dtype == np.float32 and encoded.prob_open.shape == (4,)
    np.testing.assert_allclose(arrays.prob_open, encoded.prob_open, atol=1e-6)  # PNG round trip is lossless
    assert set(encoded.states) <= {"OPEN", "CLOSED", "UNKNOWN"}
    expected = ["OPEN" if p >= 0.5 else "CLOSED" for p in encoded.prob_open]
    assert [s for s, r in zip(encoded.states, encoded.reasons, strict=True) if not r] == [
        e for e, r in zip(expected, encoded.reasons, strict=True) if not r
    ]


def test_classify_eyes_on_a_frame_with_boxes(eyestate):
    frame = first_video_frame()
    with Client(eyestate.address) as client:
        result = client.classify_eyes(frame=frame, boxes=[(300, 200, 40, 40), (0, 0, 24, 24)])
    assert result.prob_open.shape == (2,) and np.all((result.prob_open >= 0) & (result.prob_open <= 1))


def test_a_refused_call_raises_one_error_type_with_the_code_and_message(eyestate):
    with Client(eyestate.address) as client, pytest.raises(BlinkstackError) as refused:
        client.classify_eyes([])
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "empty batch" in refused.value.details and "ClassifyEyes" in str(refused.value)


def test_unary_calls_retry_while_the_service_is_unavailable_then_raise():
    port = free_port()  # nothing listens there
    started = time.perf_counter()
    client = Client(f"127.0.0.1:{port}", timeout_s=0.5, retries=2, backoff=Backoff(0.05, 0.1))
    with client, pytest.raises(BlinkstackError) as down:
        client.model_info()
    assert down.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.perf_counter() - started >= 0.1  # it waited between its three tries
    assert health(f"127.0.0.1:{port}") is None


def test_detect_eyes_and_model_info():
    running = serving(detector_service())
    try:
        with Client(running.address) as client:
            found = client.detect_eyes(first_video_frame(), stream_id="client-test")
        assert len(found.faces) == 1 and found.faces[0].track_id > 0
        assert health(running.address) == SERVING
    finally:
        running.close()


def test_subscribe_resumes_across_an_aggregator_restart_each_event_once(redis_server):
    """The aggregator stops while a subscriber waits, events are stored meanwhile, and a new aggregator comes up on
    the same port: the subscriber's iterator carries on from its cursor without a gap or a repeat."""
    port = free_port()
    prefix = "client-resume"
    store = redis.Redis.from_url(redis_server.url)
    event = engine.Event(engine.EventType.BLINK, engine.Phase.ENDED, 1_000_000, 1_200_000, 0.01)

    def store_events(first: int, count: int) -> None:
        for seq in range(first, first + count):
            store.xadd(KeyLayout(prefix).events(0), event_forms.to_fields(event, "cam", seq))

    received: list[str] = []
    resumed: list[str] = []
    running = serving(aggregator_service(redis_server.url, redis_prefix=prefix, port=port, grace=0.5))
    client = Client(f"127.0.0.1:{port}", backoff=Backoff(0.1, 0.5))

    def consume() -> None:
        on_resume = lambda error, delay: resumed.append(error.code.name)  # noqa: E731
        for message in client.subscribe(after="0-0", idle_s=30.0, on_resume=on_resume):
            received.append(message.id)
            if len(received) == 8:
                break  # leaving the loop ends the subscription

    store_events(1, 3)
    reader = threading.Thread(target=consume)
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        running.close()  # the subscriber's call ends; it keeps retrying meanwhile
        store_events(4, 3)  # stored while no aggregator runs
        time.sleep(0.5)
        running = serving(aggregator_service(redis_server.url, redis_prefix=prefix, port=port, grace=0.5))
        store_events(7, 2)  # live, after the restart
        reader.join(timeout=30)
        stored = [entry_id.decode() for entry_id, _ in store.xrange(KeyLayout(prefix).events(0))]
        assert received == stored and len(received) == 8, (received, stored)
        assert resumed and set(resumed) <= {"UNAVAILABLE", "CANCELLED"}
    finally:
        client.close()
        running.close()
        reader.join(timeout=10)


def test_no_module_outside_the_client_builds_a_channel_or_a_stub():
    """One place for channels, TLS, tokens and keepalive: the services' own servers register servicers, and
    everything that calls a service goes through blinkstack.client."""
    builds = re.compile(r"grpc\.(aio\.)?(insecure|secure)_channel\(|_pb2_grpc\.\w+Stub\(|HealthStub\(")
    allowed = {"services/blinkstack/client.py", "services/blinkstack/common/security.py"}
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for folder in ("services/blinkstack", "training/blinkstack_train", "bench")
        for path in (REPO_ROOT / folder).rglob("*.py")
        if "/v1/" not in str(path)
        and str(path.relative_to(REPO_ROOT)) not in allowed
        and builds.search(path.read_text())
    ]
    assert offenders == [], offenders


def test_track_frames_answers_each_frame(redis_server):
    running = serving(aggregator_service(redis_server.url, redis_prefix="client-track"))
    try:
        with Client(running.address) as client:
            frames = [types_pb2.Frame(stream_id="t", seq=i, timestamp_us=1 + i * 33_000) for i in range(3)]
            with pytest.raises(BlinkstackError) as refused:  # frames without an image are refused, by name
                list(client.track_frames(frames, timeout_s=10))
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        running.close()


def test_the_example_in_docs_client_md_runs_as_written(redis_server, real_crops, tmp_path, monkeypatch):
    """docs/client.md's code block, run against real services on free ports (only the addresses change), with a
    real crop in eye.png, a webcam frame, a second of webcam frames for TrackFrames, and cursor "0"."""
    text = (REPO_ROOT / "docs" / "client.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    detector, eyestate = serving(detector_service()), serving(eyestate_service(eyestate_args()))
    aggregator = serving(
        aggregator_service(
            redis_server.url, redis_prefix="docs", detector_addr=detector.address, eyestate_addr=eyestate.address
        )
    )
    try:
        for default, running in (("50051", detector), ("50052", eyestate), ("50053", aggregator)):
            code = code.replace(f"127.0.0.1:{default}", running.address)
        capture, frames = cv2.VideoCapture(str(VIDEO)), []
        for seq in range(30):
            ok, frame = capture.read()
            assert ok
            jpeg = types_pb2.Image(encoded=cv2.imencode(".jpg", frame)[1].tobytes())
            frames.append(types_pb2.Frame(stream_id="cam-1", seq=seq, timestamp_us=1 + seq * 33_333, image=jpeg))
        capture.release()
        names = {"gray_crop": decode_image(real_crops[1], gray=True), "bgr_frame": first_video_frame()}
        names |= {"frames": frames, "cursor": "0"}
        monkeypatch.chdir(tmp_path)  # where the example's eye.png is
        (tmp_path / "eye.png").write_bytes(real_crops[0])
        exec(compile(code, "docs/client.md", "exec"), names)
        # It ran to the end: the refused call raised BlinkstackError and the example caught it.
        assert names["result"].status == 1 and names["found"].faces  # the last TrackFrames result, the detection
    finally:
        for running in (aggregator, detector, eyestate):
            running.close()
