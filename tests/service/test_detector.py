"""The detector service on real frames, with each front end (the landmark model following each face, and
CenterFace alone): landmark tracking and flow, DetectEyes/StreamDetectEyes, bad input, the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import grpc
import numpy as np
import pytest

from blinkstack.detector import eye_crops
from blinkstack.detector.adapters import centerface
from blinkstack.detector.front_end import FrontEndModels, embedded_models
from blinkstack.detector.landmark_flow import LandmarkFlow
from blinkstack.local.processes import free_port
from blinkstack.v1 import detector_pb2, types_pb2
from tests.helpers import MODEL_REPOSITORY, SERVING
from tests.helpers.messages import detect_request as request
from tests.helpers.messages import raw_frame
from tests.helpers.servers import MAX_MESSAGE_BYTES, detector_service, wait_for_health

CLI = (sys.executable, "-m", "blinkstack.cli")


@pytest.fixture(scope="module", params=["landmarks", "centerface"])
def service(request):
    running = detector_service(front_end=request.param)
    wait_for_health(running.address, SERVING)
    running.front_end = request.param
    yield running
    running.close()


# --- detect every N frames, landmark flow in between ------------------------------------------------------


def test_landmark_flow_detects_every_nth_frame_follows_motion_and_falls_back_on_a_cut(video_frames):
    frames = video_frames[:6]

    async def run() -> None:
        models = embedded_models(MODEL_REPOSITORY, "centerface")
        await models.start()
        try:
            flow = LandmarkFlow(models.detector, detect_every=3)
            assert [(await flow.faces(f))[2] for f in frames] == [False, True, True, False, True, True]

            flow = LandmarkFlow(models.detector, detect_every=100)
            (first,), _, _ = await flow.faces(frames[0])
            (moved,), times, tracked = await flow.faces(np.roll(frames[0], 40, axis=1))
            assert tracked and times.flow > 0 and times.infer == 0
            np.testing.assert_allclose(moved.landmarks - first.landmarks, [[40, 0]] * 5, atol=1.5)
            np.testing.assert_allclose(moved.box - first.box, [40, 0, 40, 0], atol=1.5)
            # A jump LK cannot follow (a hard cut) is re-detected, not tracked to a wrong place.
            (jumped,), _, tracked = await flow.faces(np.roll(frames[0], 190, axis=1))
            assert not tracked
            np.testing.assert_allclose(jumped.landmarks - first.landmarks, [[190, 0]] * 5, atol=6)
            # A frame without faces leaves nothing to track: the next frame is detected though not due.
            assert (await flow.faces(np.full_like(frames[0], 120)))[0] == []
            assert (await flow.faces(frames[1]))[2] is False
        finally:
            await models.close()

    asyncio.run(run())


def test_landmark_tracking_detects_once_follows_the_face_and_detects_again_when_it_is_lost(video_frames):
    async def run() -> None:
        models = embedded_models(MODEL_REPOSITORY, detect_every=4)
        await models.start()
        try:
            stream = models.stream()
            followed = [(await stream.faces(f))[2] for f in video_frames[:9]]
            assert followed == [False, True, True, True, False, True, True, True, False]  # every 4th: new faces?
            (first,), _, _ = await stream.faces(video_frames[9])
            (moved,), times, tracked = await stream.faces(np.roll(video_frames[9], 30, axis=1))
            assert tracked and times.infer > 0  # the landmark model followed the face 30 px along
            np.testing.assert_allclose(moved.left_eye.centre - first.left_eye.centre, [30, 0], atol=2)
            # No face any more: lost at once, the detector runs in the same frame and finds nothing.
            empty, _, tracked = await stream.faces(np.full_like(video_frames[0], 120))
            assert empty == [] and not tracked
            (back,), _, tracked = await stream.faces(video_frames[9])
            assert not tracked and back.left_eye.outline is not None
        finally:
            await models.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"detect_every": -1}, "detect_every must be >= 0 (got -1; 0: the front end's default)"),
        ({"max_faces": 0}, "max_faces must be >= 1 (got 0)"),
    ],
)
def test_front_end_settings_out_of_range_are_refused(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        FrontEndModels(detector=None, **settings)


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
    assert len(face.landmarks) == 3
    left, right = face.left_eye, face.right_eye
    if service.front_end == "centerface":
        iod = np.hypot(left.center.x - right.center.x, left.center.y - right.center.y)
        assert left.box.width == pytest.approx(centerface.EYE_BOX_SCALE * iod, rel=1e-4)
        assert not left.HasField("landmarks") and left.box.angle_deg == 0
        return
    roll = np.degrees(np.arctan2(left.center.y - right.center.y, left.center.x - right.center.x))
    for eye in (left, right):
        marks = eye.landmarks
        width = np.hypot(marks.outer_corner.x - marks.inner_corner.x, marks.outer_corner.y - marks.inner_corner.y)
        assert eye.box.width == pytest.approx(eye_crops.SIDE_PER_EYE_WIDTH * width, rel=1e-4)
        assert eye.center.x == pytest.approx((marks.outer_corner.x + marks.inner_corner.x) / 2, abs=1e-3)
        assert eye.box.angle_deg == pytest.approx(roll, abs=1e-3)
        assert len(marks.upper_lid) == len(marks.lower_lid) == 7
        assert all(u.y < d.y for u, d in zip(marks.upper_lid, marks.lower_lid, strict=True))  # upper lid above
        assert 0.15 < marks.aperture < 0.5  # open eyes
        assert abs(marks.iris_center.x - eye.center.x) < width / 2
    # The outer corners point away from the nose: the subject's right eye's outer corner is on the image left.
    assert right.landmarks.outer_corner.x < right.landmarks.inner_corner.x
    assert left.landmarks.outer_corner.x > left.landmarks.inner_corner.x


def test_raw_bgr_gray_and_png_frames_agree_and_timestamps_are_echoed(service, video_frames):
    frame = video_frames[10]
    png = cv2.imencode(".png", frame)[1]
    by_png = service.stub.DetectEyes(request(types_pb2.Image(encoded=png.tobytes())), timeout=10)
    by_raw = service.stub.DetectEyes(request(raw_frame(frame), timestamp_us=123456), timeout=10)
    assert by_raw.timestamp_us == 123456 and not by_raw.timestamp_from_server
    # The detector works on luma: PNG's own gray conversion and OpenCV's of the raw BGR pixels round differently.
    (png_face,), (raw_face,) = by_png.faces, by_raw.faces
    for a, b in ((png_face.left_eye, raw_face.left_eye), (png_face.right_eye, raw_face.right_eye)):
        assert abs(a.center.x - b.center.x) < 0.5 and abs(a.center.y - b.center.y) < 0.5
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
        # Ranges are the flags' own: argparse names the flag, the code behind it knows none.
        (["detector", "--detect-every", "-1"], "argument --detect-every: must be >= 0 (got -1)"),
        (["detector", "--input-width", "33"], "error: input width must be a positive multiple of 32 (got 33)"),
        (["detector", "--min-presence", "2"], "error: min presence must be in [0, 1] (got 2.0)"),
        (["eyestate", "--max-batch", "0"], "argument --max-batch: must be >= 1 (got 0)"),
        (["eyestate", "--run-batch", "-1"], "argument --run-batch: must be >= 1 (got -1)"),
        (["eyestate", "--uncertain-band", "0.5"], "argument --uncertain-band: must be < 0.5 (got 0.5)"),
    ],
)
def test_serve_refuses_a_bad_setting_with_one_error_line(argv, message):
    result = subprocess.run(
        [*CLI, "serve", *argv, "--port", "0", "--metrics-port", "0"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(message)
    assert "Traceback" not in result.stderr
