"""Every RPC of the three services is counted by status code and timed, streams included, at one boundary."""

from __future__ import annotations

import time
import urllib.request

import cv2
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from blinkstack.local.processes import free_port
from blinkstack.v1 import aggregator_pb2, eyestate_pb2, types_pb2
from tests.helpers.messages import detect_request, encoded_request
from tests.helpers.servers import aggregator_service, detector_service, eyestate_args, eyestate_service, serving

# (service label, method): the status codes each call below ends with.
EXPECTED = {
    ("detector", "DetectEyes"): {"OK", "INVALID_ARGUMENT"},
    ("detector", "StreamDetectEyes"): {"OK"},
    ("eyestate", "ClassifyEyes"): {"OK", "INVALID_ARGUMENT"},
    ("eyestate", "GetModelInfo"): {"OK"},
    ("aggregator", "PublishEyeStates"): {"OK"},
    ("aggregator", "PublishEyeStateBatches"): {"INVALID_ARGUMENT"},
    ("aggregator", "SubscribeBlinks"): {"CANCELLED", "INVALID_ARGUMENT"},
    ("aggregator", "GetStats"): {"OK", "NOT_FOUND"},
    ("aggregator", "TrackFrames"): {"OK"},
}


def scrape(port: int) -> dict[tuple[str, str, str], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name == "blinkstack_rpc_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    counts[labels["service"], labels["method"], labels["code"]] = sample.value
    return counts


@pytest.fixture(scope="module")
def services(redis_server):
    metrics_port = free_port()
    eyestate = serving(eyestate_service(eyestate_args(metrics_port=metrics_port)))
    detector = serving(detector_service())
    aggregator = serving(
        aggregator_service(redis_server.url, detector_addr=detector.address, eyestate_addr=eyestate.address)
    )
    yield metrics_port, detector, eyestate, aggregator
    for running in (aggregator, detector, eyestate):
        running.close()


def call_every_rpc(detector, eyestate, aggregator, jpeg: bytes, crop: bytes) -> None:
    image = types_pb2.Image(encoded=jpeg)
    detector.stub.DetectEyes(detect_request(image), timeout=10)
    with pytest.raises(grpc.RpcError):
        detector.stub.DetectEyes(detect_request(types_pb2.Image(encoded=b"not an image")), timeout=10)
    list(detector.stub.StreamDetectEyes(iter([detect_request(image)]), timeout=10))

    eyestate.stub.ClassifyEyes(encoded_request([crop]), timeout=10)
    with pytest.raises(grpc.RpcError):
        eyestate.stub.ClassifyEyes(eyestate_pb2.ClassifyEyesRequest(), timeout=10)
    eyestate.stub.GetModelInfo(eyestate_pb2.GetModelInfoRequest(), timeout=10)

    stub = aggregator.stub
    observation = aggregator_pb2.EyeObservation(stream_id="metrics", track_id=1, seq=1, timestamp_us=1_000_000)
    stub.PublishEyeStates(iter([observation]), timeout=10)
    bad = aggregator_pb2.PublishEyeStatesRequest(observations=[aggregator_pb2.EyeObservation(stream_id="metrics")])
    with pytest.raises(grpc.RpcError):
        stub.PublishEyeStateBatches(iter([bad]), timeout=10)
    stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="metrics", track_id=1), timeout=10)
    with pytest.raises(grpc.RpcError):
        stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="metrics", track_id=2), timeout=10)
    with pytest.raises(grpc.RpcError):
        next(stub.SubscribeBlinks(aggregator_pb2.SubscribeBlinksRequest(after_id="not-an-id"), timeout=10))
    subscription = stub.SubscribeBlinks(aggregator_pb2.SubscribeBlinksRequest(after_id=""))
    time.sleep(0.3)  # the server has started reading
    subscription.cancel()
    frame = types_pb2.Frame(stream_id="metrics-camera", seq=0, timestamp_us=1_000_000, image=image)
    list(stub.TrackFrames(iter([frame]), timeout=30))


def test_every_rpc_is_counted_with_its_status_codes(services, video_frames, real_crops):
    metrics_port, detector, eyestate, aggregator = services
    before = scrape(metrics_port)
    call_every_rpc(detector, eyestate, aggregator, cv2.imencode(".jpg", video_frames[0])[1].tobytes(), real_crops[0])
    deadline = time.monotonic() + 5  # a cancelled stream is counted when its handler has unwound
    while True:
        after = scrape(metrics_port)
        grew = {key for key, value in after.items() if value > before.get(key, 0.0)}
        seen = {
            (service, method): {c for s, m, c in grew if (s, m) == (service, method)} for service, method in EXPECTED
        }
        if all(seen[key] >= codes for key, codes in EXPECTED.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    missing = {key: codes - seen[key] for key, codes in EXPECTED.items() if not seen[key] >= codes}
    assert not missing, f"RPCs not counted with these codes: {missing}"
    # TrackFrames' own calls to the detector (a stream per camera, ended cleanly) are counted there too
    key = ("detector", "StreamDetectEyes", "OK")
    assert after[key] - before.get(key, 0) >= 2
