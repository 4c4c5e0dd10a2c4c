"""The detector service on real frames: landmark flow, DetectEyes/StreamDetectEyes, bad input, the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import cv2
import grpc
import numpy as np
import pytest

from blinkstack.detector import geometry
from blinkstack.detector import server as detector_server
from blinkstack.detector.backend import OnnxRuntimeDetector
from blinkstack.detector.engine import FaceDetector
from blinkstack.detector.landmark_flow import LandmarkFlow
from blinkstack.local.processes import free_port
from blinkstack.v1 import detector_pb2, types_pb2
from tests.helpers import MODEL_REPOSITORY, SERVING
from tests.helpers.messages import detect_request as request
from tests.helpers.messages import raw_frame
from tests.helpers.servers import MAX_MESSAGE_BYTES, detector_service, wait_for_health

CLI = (sys.executable, "-m", "blinkstack.cli")


@pytest.fixture(scope="module")
def service():
    running = detector_service()
    wait_for_health(running.address, SERVING)
    yield running
    running.close()


# --- detect every N frames, landmark flow in between ------------------------------------------------------


def test_landmark_flow_detects_every_nth_frame_follows_motion_and_falls_back_on_a_cut(video_frames):
    frames = video_frames[:6]

    async def run() -> None:
        backend = OnnxRuntimeDetector(MODEL_REPOSITORY)
        await backend.start()
        detector = FaceDetector(backend)
        try:
            flow = LandmarkFlow(detect_every=3)
            assert [(await flow.detect(detector, f))[2] for f in frames] == [False, True, True, False, True, True]

            flow = LandmarkFlow(detect_every=100)
            (first,), _, _ = await flow.detect(detector, frames[0])
            (moved,), times, tracked = await flow.detect(detector, np.roll(frames[0], 40, axis=1))
            assert tracked and times.flow > 0 and times.infer == 0
            np.testing.assert_allclose(moved.landmarks - first.landmarks, [[40, 0]] * 5, atol=1.5)
            np.testing.assert_allclose(moved.box - first.box, [40, 0, 40, 0], atol=1.5)
            # A jump LK cannot follow (a hard cut) is re-detected, not tracked to a wrong place.
            (jumped,), _, tracked = await flow.detect(detector, np.roll(frames[0], 190, axis=1))
            assert not tracked
            np.testing.assert_allclose(jumped.landmarks - first.landmarks, [[190, 0]] * 5, atol=6)
            # A frame without faces leaves nothing to track: the next frame is detected though not due.
            assert (await flow.detect(detector, np.full_like(frames[0], 120)))[0] == []
            assert (await flow.detect(detector, frames[1]))[2] is False
        finally:
            await backend.close()

    asyncio.run(run())


def test_detect_every_below_one_is_refused():
    with pytest.raises(ValueError, match="--detect-every must be >= 1"):
        detector_server.DetectorServicer(detector=None, detect_every=0)


# --- the service on real frames ------------------------------------------------------------------------------


def test_detect_eyes_on_a_real_webcam_frame(service, video_frames):
    frame = video_frames[0]
    jpeg = cv2.imencode(".jpg", frame)[1]
    response = service.stub.DetectEyes(request(types_pb2.Image(encoded=jpeg.tobytes())), timeout=10)
    assert (response.frame_width, response.frame_height) == (640, 480)
    assert response.timestamp_from_server and response.timestamp_us > 0
    (face,) = response.faces
    assert face.score > 0.5 and face.track_id == 1
    assert face.left_eye.eye == types_pb2.EYE_LEFT and face.right_eye.eye == types_pb2.EYE_RIGHT
    assert face.left_eye.center.x > face.right_eye.center.x  # un-mirrored camera: subject's left on image right
    for eye in (face.left_eye, face.right_eye):
        assert face.box.x < eye.center.x < face.box.x + face.box.width
        assert face.box.y < eye.center.y < face.box.y + face.box.height / 2
        assert eye.box.width == eye.box.height
        assert eye.box.x + eye.box.width / 2 == pytest.approx(eye.center.x, abs=1e-3)
    iod = np.hypot(face.left_eye.center.x - face.right_eye.center.x, face.left_eye.center.y - face.right_eye.center.y)
    assert face.left_eye.box.width == pytest.approx(geometry.EYE_BOX_SCALE * iod, rel=1e-4)
    assert len(face.landmarks) == 3


def test_raw_bgr_gray_and_png_frames_agree_and_timestamps_are_echoed(service, video_frames):
    frame = video_frames[10]
    png = cv2.imencode(".png", frame)[1]
    by_png = service.stub.DetectEyes(request(types_pb2.Image(encoded=png.tobytes())), timeout=10)
    by_raw = service.stub.DetectEyes(request(raw_frame(frame), timestamp_us=123456), timeout=10)
    assert by_raw.timestamp_us == 123456 and not by_raw.timestamp_from_server
    assert by_png.faces == by_raw.faces
    by_gray = service.stub.DetectEyes(request(raw_frame(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))), timeout=10)
    (gray_face,) = by_gray.faces
    assert abs(gray_face.left_eye.center.x - by_raw.faces[0].left_eye.center.x) < 3


def test_unary_calls_track_per_stream_id(service, video_frames):
    ids = {
        stream: [
            service.stub.DetectEyes(request(raw_frame(f), stream_id=stream, seq=i), timeout=10).faces[0].track_id
            for i, f in enumerate(video_frames[:5])
        ]
        for stream in ("cam-a", "cam-b")
    }
    assert ids == {"cam-a": [1] * 5, "cam-b": [1] * 5}
    untracked = service.stub.DetectEyes(request(raw_frame(video_frames[0])), timeout=10)
    assert [f.track_id for f in untracked.faces] == [1]


def test_stream_answers_every_frame_in_order_with_one_track(service, video_frames):
    frames = video_frames[:60]
    responses = list(
        service.stub.StreamDetectEyes(
            iter(request(raw_frame(f), "cam", seq=i, timestamp_us=i * 33_333) for i, f in enumerate(frames)),
            timeout=60,
        )
    )
    assert [r.seq for r in responses] == list(range(len(frames)))
    assert [r.timestamp_us for r in responses] == [i * 33_333 for i in range(len(frames))]
    assert {(len(r.faces), r.faces[0].track_id) for r in responses} == {(1, 1)}


def test_a_bad_frame_ends_the_stream_after_the_good_ones(service, video_frames):
    requests = [request(raw_frame(video_frames[0]), "cam", 0), request(types_pb2.Image(encoded=b"junk"), "cam", 1)]
    received = []
    with pytest.raises(grpc.RpcError) as error:
        for response in service.stub.StreamDetectEyes(iter(requests), timeout=30):
            received.append(response.seq)
    assert received == [0]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "frame.image: cannot decode" in error.value.details()


BAD_REQUESTS = {
    "no frame": (detector_pb2.DetectEyesRequest(), "request has no frame"),
    "no image": (detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(stream_id="cam")), "frame.image is missing"),
    "bad stream id": (request(types_pb2.Image(encoded=b"x"), stream_id="cam/1"), "is not 1..128 characters"),
    "undecodable": (request(types_pb2.Image(encoded=b"not an image")), "frame.image: cannot decode"),
    "raw size mismatch": (
        request(types_pb2.Image(raw=types_pb2.RawImage(pixels=bytes(10), width=4, height=4, format=1))),
        "raw size mismatch",
    ),
    "too large": (
        request(types_pb2.Image(raw=types_pb2.RawImage(pixels=bytes(5000), width=5000, height=1, format=1))),
        "exceeds the 4096x4096 limit",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_is_invalid_argument_and_the_server_keeps_serving(service, video_frames, case):
    bad, message = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as error:
        service.stub.DetectEyes(bad, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()
    assert len(service.stub.DetectEyes(request(raw_frame(video_frames[0])), timeout=10).faces) == 1


def test_oversized_message_is_resource_exhausted(service):
    with pytest.raises(grpc.RpcError) as error:
        service.stub.DetectEyes(request(types_pb2.Image(encoded=bytes(MAX_MESSAGE_BYTES + 1))), timeout=10)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_frame_without_faces_gives_an_empty_answer(service):
    response = service.stub.DetectEyes(request(raw_frame(np.full((240, 320), 128, np.uint8))), timeout=10)
    assert list(response.faces) == [] and response.frame_width == 320


# --- the CLI -------------------------------------------------------------------------------------------------


def test_cli_serves_detects_annotates_and_drains(tmp_path, video_frames):
    port = free_port()
    env = {**os.environ, "BLINKSTACK_DETECTOR_PORT": str(port), "BLINKSTACK_DETECTOR_METRICS_PORT": "0"}
    server = subprocess.Popen(
        [*CLI, "serve", "detector"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_health(f"127.0.0.1:{port}", SERVING)
        image, annotated = tmp_path / "frame.jpg", tmp_path / "annotated.png"
        cv2.imwrite(str(image), video_frames[0])
        out = subprocess.run(
            [*CLI, "detect", str(image), "--target", f"127.0.0.1:{port}", "--annotate", str(annotated)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "640x480, 1 face(s)" in out and "left eye: centre" in out and "right eye: centre" in out
        drawn = cv2.imread(str(annotated))
        assert drawn.shape == (480, 640, 3) and np.any(drawn != video_frames[0])
        missing = subprocess.run(
            [*CLI, "detect", str(tmp_path / "nope.jpg"), "--target", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert missing.returncode == 2 and "not a file" in missing.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        start = time.monotonic()
        code = server.wait(timeout=30)
    assert code == 0 and time.monotonic() - start < 10


@pytest.mark.parametrize(
    "argv, message",
    [
        (["detector", "--detect-every", "0"], "--detect-every must be >= 1 (got 0)"),
        (["detector", "--input-width", "33"], "input width must be a positive multiple of 32 (got 33)"),
        (["eyestate", "--max-batch", "0"], "--max-batch must be >= 1 (got 0)"),
        (["eyestate", "--run-batch", "-1"], "--run-batch must be >= 1 (got -1)"),
    ],
)
def test_serve_refuses_a_bad_setting_with_one_error_line(argv, message):
    result = subprocess.run(
        [*CLI, "serve", *argv, "--port", "0", "--metrics-port", "0"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {message}"
    assert "Traceback" not in result.stderr
