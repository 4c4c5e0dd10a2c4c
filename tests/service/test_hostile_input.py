"""Hostile input: decode bombs, crop bombs, malformed protobuf, extreme ids and seqs, secrets in errors, and a
bounded fuzz over every RPC. Every case gets a clear status; nothing reaches UNKNOWN or INTERNAL."""

from __future__ import annotations

import random
import time

import cv2
import grpc
import numpy as np
import psutil
import pytest
import redis

from blinkstack.aggregator.store import KeyLayout
from blinkstack.tools.hostile import jpeg_claiming, mutations, png_bomb, scan_bomb
from blinkstack.v1 import aggregator_pb2, eyestate_pb2, types_pb2
from tests.helpers.messages import detect_request, encoded_request
from tests.helpers.servers import aggregator_service, detector_service, eyestate_args, eyestate_service, serving

PASSWORD = "s3cret-Passw0rd"


@pytest.fixture(scope="module")
def services(redis_server):
    eyestate = serving(eyestate_service(eyestate_args()))
    detector = serving(detector_service())
    aggregator = serving(
        aggregator_service(redis_server.url, detector_addr=detector.address, eyestate_addr=eyestate.address)
    )
    yield detector, eyestate, aggregator
    for running in (aggregator, detector, eyestate):
        running.close()


def refused(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        reply = call(*args, timeout=10, **kwargs)
        if hasattr(reply, "__iter__") and not hasattr(reply, "ListFields"):
            list(reply)
    return caught.value


BOMBS = {  # what it is, and the refusal that names its problem
    "png": (png_bomb, "exceeds the 4096x4096 limit"),
    "jpeg": (lambda: jpeg_claiming(20000, 20000), "exceeds the 4096x4096 limit"),
    "scans": (scan_bomb, "a JPEG of 1006 scans (at most 32"),
}


@pytest.mark.parametrize("bomb", BOMBS)
def test_decode_bombs_are_refused_from_the_header_fast(services, bomb):
    detector, eyestate, aggregator = services
    make, message = BOMBS[bomb]
    image = types_pb2.Image(encoded=make())
    calls = {
        "ClassifyEyes": lambda: eyestate.stub.ClassifyEyes(
            eyestate_pb2.ClassifyEyesRequest(crops=eyestate_pb2.CropBatch(crops=[image])), timeout=10
        ),
        "DetectEyes": lambda: detector.stub.DetectEyes(detect_request(image), timeout=10),
        "TrackFrames": lambda: list(
            aggregator.stub.TrackFrames(iter([types_pb2.Frame(stream_id="bomb", image=image)]), timeout=10)
        ),
    }
    for name, call in calls.items():
        start = time.perf_counter()
        with pytest.raises(grpc.RpcError) as caught:
            call()
        elapsed = time.perf_counter() - start
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, caught.value.details())
        assert message in caught.value.details(), (name, caught.value.details())
        assert elapsed < 0.5, f"{name} took {elapsed:.3f} s to refuse"  # generous: loaded CI machines


def test_a_crop_bomb_of_huge_boxes_on_a_tiny_frame_is_refused(services):
    _, eyestate, _ = services
    frame = types_pb2.Image(
        raw=types_pb2.RawImage(pixels=b"\x00", width=1, height=1, format=types_pb2.PIXEL_FORMAT_GRAY8)
    )
    boxes = [types_pb2.Box(x=-4094.5, y=-4094.5, width=8190, height=8190)] * 8
    request = eyestate_pb2.ClassifyEyesRequest(frame=eyestate_pb2.FrameWithBoxes(frame=frame, eye_boxes=boxes))
    error = refused(eyestate.stub.ClassifyEyes, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "larger than the 1x1 frame" in error.details()


def test_concurrent_large_decodes_share_one_pixel_budget_and_the_rest_are_pushed_back(services):
    """Eight 4096x4096 frames with 256 edge boxes each, at once: one fits the eye-state service's decode budget, the
    others get RESOURCE_EXHAUSTED at once instead of holding gigabytes; afterwards the budget is free again."""
    _, eyestate, _ = services
    zero = types_pb2.Image(encoded=cv2.imencode(".png", np.zeros((4096, 4096), np.uint8))[1].tobytes())
    boxes = [types_pb2.Box(x=-500, y=-500, width=1024, height=1024)] * 256
    bomb = eyestate_pb2.ClassifyEyesRequest(frame=eyestate_pb2.FrameWithBoxes(frame=zero, eye_boxes=boxes))
    futures = [eyestate.stub.ClassifyEyes.future(bomb, timeout=60) for _ in range(8)]
    codes = []
    for future in futures:
        try:
            codes.append(len(future.result().results) == 256 and "OK")
        except grpc.RpcError as error:
            codes.append(error.code().name)
            assert "decode budget" in error.details()
    assert "OK" in codes and "RESOURCE_EXHAUSTED" in codes and set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert len(eyestate.stub.ClassifyEyes(bomb, timeout=60).results) == 256


def test_many_crops_beyond_the_pixel_budget_are_refused_before_decoding(services):
    _, eyestate, _ = services
    big = cv2.imencode(".png", np.zeros((1024, 1024), np.uint8))[1].tobytes()
    error = refused(eyestate.stub.ClassifyEyes, encoded_request([big] * 17))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "pixel limit" in error.details()


def test_malformed_protobuf_is_invalid_argument_naming_the_message(services):
    _, _, aggregator = services
    channel = grpc.insecure_channel(aggregator.address)
    good = aggregator_pb2.EyeObservation(stream_id="garbage", track_id=1, seq=1, timestamp_us=1_000_000)
    publish = channel.stream_unary("/blinkstack.v1.AggregatorService/PublishEyeStates")
    error = refused(publish, iter([good.SerializeToString(), b"\xff\xff\xff", good.SerializeToString()]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "message 1 of the stream" in error.details() and "the 1 observations before it were accepted" in (
        error.details()
    )
    stats = channel.unary_unary("/blinkstack.v1.AggregatorService/GetStats")
    error = refused(stats, b"\x0a\x02\xc3\x28")  # stream_id with invalid UTF-8
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid protobuf message" in error.details()
    channel.close()


def test_extreme_ids_and_seqs_are_refused_up_front_and_the_largest_seq_is_stored_exactly(services, redis_server):
    _, _, aggregator = services
    stub = aggregator.stub
    for after_id in ("18446744073709551616", "٣", "1-٣", "1" * 4301, "1-1@٣"):  # too large, Unicode digits, huge
        error = refused(stub.SubscribeBlinks, aggregator_pb2.SubscribeBlinksRequest(after_id=after_id))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a cursor or an event id" in error.details()
    error = refused(stub.GetStats, aggregator_pb2.GetStatsRequest(stream_id="x" * 100_000, track_id=1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(error.details()) < 300
    for seq in (2**64 - 1, 2**53):
        obs = aggregator_pb2.EyeObservation(stream_id="seqs", track_id=1, seq=seq, timestamp_us=1_000_000)
        error = refused(stub.PublishEyeStates, iter([obs]))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "exceeds the largest seq" in error.details()
    largest = 2**53 - 1
    summary = stub.PublishEyeStates(
        iter([aggregator_pb2.EyeObservation(stream_id="seqs", track_id=1, seq=largest, timestamp_us=1_000_000)]),
        timeout=10,
    )
    assert summary.accepted == 1
    stored = redis.Redis.from_url(redis_server.url).hget(KeyLayout().track("seqs", 1), "seq")
    assert int(stored) == largest
    again = stub.PublishEyeStates(
        iter([aggregator_pb2.EyeObservation(stream_id="seqs", track_id=1, seq=largest, timestamp_us=2_000_000)]),
        timeout=10,
    )
    assert (again.accepted, again.duplicates) == (0, 1)


def test_idle_keys_expire(redis_server):
    running = serving(aggregator_service(redis_server.url, key_ttl_s=3.0, redis_prefix="ttl"))
    try:
        obs = aggregator_pb2.EyeObservation(stream_id="idle", track_id=1, seq=1, timestamp_us=1_000_000)
        running.stub.PublishEyeStates(iter([obs]), timeout=10)
        ttl = redis.Redis.from_url(redis_server.url).pttl(KeyLayout("ttl").track("idle", 1))
        assert 0 < ttl <= 3000
    finally:
        running.close()


def test_the_redis_password_never_reaches_a_client(redis_server):
    url = f"redis://:{PASSWORD}@127.0.0.1:1/0"  # nothing listens on port 1
    running = aggregator_service(url, redis_retry_s=0.3)
    try:
        obs = aggregator_pb2.EyeObservation(stream_id="pw", track_id=1, seq=1, timestamp_us=1_000_000)
        error = refused(running.stub.PublishEyeStates, iter([obs]))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert PASSWORD not in error.details() and "***" in error.details()
    finally:
        running.close()


# --- bounded fuzz ---------------------------------------------------------------------------------------------

VALID = {
    ("eyestate", "unary_unary", "/blinkstack.v1.EyeStateService/ClassifyEyes"): encoded_request(
        [cv2.imencode(".png", np.full((24, 24), 100, np.uint8))[1].tobytes()]
    ),
    ("eyestate", "unary_unary", "/blinkstack.v1.EyeStateService/GetModelInfo"): eyestate_pb2.GetModelInfoRequest(),
    ("detector", "unary_unary", "/blinkstack.v1.DetectorService/DetectEyes"): detect_request(
        types_pb2.Image(encoded=cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes())
    ),
    ("detector", "stream_stream", "/blinkstack.v1.DetectorService/StreamDetectEyes"): detect_request(
        types_pb2.Image(raw=types_pb2.RawImage(pixels=b"\x10" * 64, width=8, height=8, format=1))
    ),
    ("aggregator", "stream_unary", "/blinkstack.v1.AggregatorService/PublishEyeStates"): aggregator_pb2.EyeObservation(
        stream_id="fuzz", track_id=1, seq=1, timestamp_us=1_000_000, left_prob_open=0.5
    ),
    ("aggregator", "stream_unary", "/blinkstack.v1.AggregatorService/PublishEyeStateBatches"): (
        aggregator_pb2.PublishEyeStatesRequest(
            observations=[aggregator_pb2.EyeObservation(stream_id="fuzz", track_id=2, seq=1, timestamp_us=1)]
        )
    ),
    ("aggregator", "unary_stream", "/blinkstack.v1.AggregatorService/SubscribeBlinks"): (
        aggregator_pb2.SubscribeBlinksRequest(stream_ids=["fuzz"], after_id="0")
    ),
    ("aggregator", "unary_unary", "/blinkstack.v1.AggregatorService/GetStats"): aggregator_pb2.GetStatsRequest(
        stream_id="fuzz", track_id=1
    ),
    ("aggregator", "stream_stream", "/blinkstack.v1.AggregatorService/TrackFrames"): types_pb2.Frame(
        stream_id="fuzz-frames", seq=1, image=types_pb2.Image(encoded=b"\xff\xd8\xff\xc0\x00\x11\x08")
    ),
}


def test_fuzzed_requests_to_every_rpc_never_give_unknown_or_internal(services, request):
    detector, eyestate, aggregator = services
    addresses = {"detector": detector.address, "eyestate": eyestate.address, "aggregator": aggregator.address}
    per_rpc = int(request.config.getoption("--fuzz-cases"))
    rng = random.Random(1)
    rss_before = psutil.Process().memory_info().rss  # the three services run in this process
    outcomes: dict[str, int] = {}
    for (service, kind, method), message in VALID.items():
        with grpc.insecure_channel(addresses[service]) as channel:
            call = getattr(channel, kind)(method)
            for case in mutations(message.SerializeToString(), rng, per_rpc):
                payload = iter([case]) if kind.startswith("stream") else case
                try:
                    reply = call(payload, timeout=2 if kind != "unary_stream" else 0.3)
                    if kind.endswith("stream"):
                        list(reply)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                outcomes[code.name] = outcomes.get(code.name, 0) + 1
                assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (method, case, code)
    assert sum(outcomes.values()) == per_rpc * len(VALID)
    assert outcomes.get("INVALID_ARGUMENT", 0) > 0
    grown_mb = (psutil.Process().memory_info().rss - rss_before) / 2**20
    assert grown_mb < 200, f"fuzzing grew the services' memory by {grown_mb:.0f} MB"
