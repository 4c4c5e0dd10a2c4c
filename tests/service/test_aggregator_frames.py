"""TrackFrames end to end: real detector and eye-state services, real Redis, frames of the real webcam video."""

from __future__ import annotations

import cv2
import grpc
import numpy as np
import pytest

from blinkstack.aggregator.frames import classify_request
from blinkstack.common import images
from blinkstack.v1 import aggregator_pb2, detector_pb2, detector_pb2_grpc, eyestate_pb2, eyestate_pb2_grpc, types_pb2
from blinkstack_train import data
from tests.helpers import SERVING
from tests.helpers.servers import aggregator_service, detector_service, eyestate_args, eyestate_service, wait_for_health


@pytest.fixture(scope="module")
def stack(redis_server):
    detector = detector_service()
    eyestate = eyestate_service(eyestate_args())
    for running in (detector, eyestate):
        wait_for_health(running.address, SERVING)
    yield {"detector_addr": detector.address, "eyestate_addr": eyestate.address}
    detector.close()
    eyestate.close()


@pytest.fixture(scope="module")
def jpegs(video_frames):
    return [cv2.imencode(".jpg", f)[1].tobytes() for f in video_frames[:90]]


def frames(stream_id: str, jpegs: list[bytes], first: int = 0, run_id: int = 0):
    for i, jpeg in enumerate(jpegs[first:], start=first):
        yield types_pb2.Frame(
            stream_id=stream_id,
            seq=i,
            run_id=run_id,
            timestamp_us=1_000_000 + i * 33_333,
            image=types_pb2.Image(encoded=jpeg),
        )


def test_frames_come_back_with_tracked_faces_eye_states_and_timings(redis_server, stack, jpegs):
    running = aggregator_service(redis_server.url, **stack)
    try:
        wait_for_health(running.address, SERVING)
        results = list(running.stub.TrackFrames(frames("cam-1", jpegs[:60]), timeout=120))
        assert [r.seq for r in results] == list(range(60))
        assert {r.status for r in results} == {aggregator_pb2.FRAME_STATUS_PROCESSED}
        assert {(len(r.faces), r.faces[0].track_id) for r in results} == {(1, 1)}
        opened = [r.faces[0].left_eye.state == types_pb2.EYE_STATE_OPEN for r in results]
        assert sum(opened) > len(results) // 2  # the subject looks at the camera with open eyes most of the time
        face = results[0].faces[0]
        assert face.left_eye.eye == types_pb2.EYE_LEFT and face.left_eye.box.x > face.right_eye.box.x
        assert 0.0 <= face.left_eye.prob_open <= 1.0 and results[0].model.name == "eye_state"
        assert results[0].timings.detect_us > 0 and results[0].timings.classify_us > 0
        assert (results[0].frame_width, results[0].frame_height) == (640, 480)

        # Re-sent frames are duplicates; a frame older than the newest is late and leaves the engine alone.
        again = list(running.stub.TrackFrames(frames("cam-1", jpegs[:60], first=55), timeout=60))
        assert [r.status for r in again] == [aggregator_pb2.FRAME_STATUS_DUPLICATE] * 5
        late = types_pb2.Frame(
            stream_id="cam-1", seq=100, timestamp_us=1_000_000, image=types_pb2.Image(encoded=jpegs[0])
        )
        (result,) = running.stub.TrackFrames(iter([late]), timeout=60)
        assert result.status == aggregator_pb2.FRAME_STATUS_LATE and len(result.faces) == 1
    finally:
        running.close()


def test_a_restarted_aggregator_keeps_the_track_ids(redis_server, stack, jpegs):
    first = aggregator_service(redis_server.url, **stack)
    wait_for_health(first.address, SERVING)
    list(first.stub.TrackFrames(frames("cam-2", jpegs[:30]), timeout=120))
    first.close()
    second = aggregator_service(redis_server.url, **stack)
    try:
        wait_for_health(second.address, SERVING)
        results = list(second.stub.TrackFrames(frames("cam-2", jpegs[:45]), timeout=120))
        assert [r.status for r in results[:30]] == [aggregator_pb2.FRAME_STATUS_DUPLICATE] * 30
        assert {r.faces[0].track_id for r in results[30:]} == {1}
        stats = second.stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="cam-2", track_id=1), timeout=5)
        assert stats.last_timestamp_us == 1_000_000 + 44 * 33_333
    finally:
        second.close()


def test_a_restarted_camera_is_a_new_run_and_a_stray_seq_cannot_blind_the_stream(redis_server, stack, jpegs):
    running = aggregator_service(redis_server.url, **stack)
    processed = aggregator_pb2.FRAME_STATUS_PROCESSED
    try:
        wait_for_health(running.address, SERVING)
        first = list(running.stub.TrackFrames(frames("cam-r", jpegs[:20], run_id=1), timeout=120))
        assert {r.status for r in first} == {processed} and {r.faces[0].track_id for r in first} == {1}
        resent = list(running.stub.TrackFrames(frames("cam-r", jpegs[:20], first=15, run_id=1), timeout=60))
        assert [r.status for r in resent] == [aggregator_pb2.FRAME_STATUS_DUPLICATE] * 5
        # The camera restarts: seq from 0 again, its clock from the start of the video again, a new run id.
        again = list(running.stub.TrackFrames(frames("cam-r", jpegs[:20], run_id=2), timeout=120))
        assert [r.status for r in again] == [processed] * 20
        assert {r.faces[0].track_id for r in again} == {2}  # the previous run's face ended; ids are not reused

        def refused(frame: types_pb2.Frame) -> grpc.RpcError:
            with pytest.raises(grpc.RpcError) as error:
                list(running.stub.TrackFrames(iter([frame]), timeout=30))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            return error.value

        (stray,) = frames("cam-r", jpegs[:1], run_id=2)
        stray.seq = 19 + 1_000_001
        assert "--max-seq-jump" in refused(stray).details()
        stray.seq, stray.run_id = 2**53 - 1, 3  # a run has to start near 0
        assert "number a camera's frames from 0" in refused(stray).details()
        (ok,) = running.stub.TrackFrames(frames("cam-r", jpegs[:21], first=20, run_id=2), timeout=60)
        assert ok.status == processed and ok.faces[0].track_id == 2
    finally:
        running.close()


def test_bad_frames_and_a_missing_detector_are_clear_errors(redis_server, stack, jpegs):
    running = aggregator_service(redis_server.url, **stack)
    try:
        wait_for_health(running.address, SERVING)
        bad = types_pb2.Frame(stream_id="cam-3", seq=0, image=types_pb2.Image(encoded=b"junk"))
        with pytest.raises(grpc.RpcError) as error:
            list(running.stub.TrackFrames(iter([bad]), timeout=30))
        assert (
            error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "detector: frame.image" in error.value.details()
        )
        mixed = [*frames("cam-4", jpegs[:1]), *frames("cam-5", jpegs[:2], first=1)]
        with pytest.raises(grpc.RpcError) as error:
            list(running.stub.TrackFrames(iter(mixed), timeout=30))
        assert "differs from this call's stream" in error.value.details()
    finally:
        running.close()
    nowhere = aggregator_service(redis_server.url, detector_addr="127.0.0.1:1", eyestate_addr=stack["eyestate_addr"])
    try:
        wait_for_health(nowhere.address, SERVING)
        with pytest.raises(grpc.RpcError) as error:
            list(nowhere.stub.TrackFrames(frames("cam-6", jpegs[:1]), timeout=10))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE and "detector failed" in error.value.details()
    finally:
        nowhere.close()


def test_a_real_clip_with_spurious_edge_faces_streams_to_the_end(redis_server, stack):
    # s09_FBN (ZJU dev) used to end its TrackFrames stream with INVALID_ARGUMENT on a face at the frame edge.
    from blinkstack.tools.watch import FrameEncoding, read_video

    video = data.DEFAULT_DATA_DIR / "video" / "zju_dev" / "videos" / "s09_FBN.mp4"
    clip = [FrameEncoding().jpeg(frame) for frame in read_video(video)]
    running = aggregator_service(redis_server.url, **stack)
    try:
        wait_for_health(running.address, SERVING)
        results = list(running.stub.TrackFrames(frames("zju-s09-FBN", clip), timeout=120))
    finally:
        running.close()
    assert [r.seq for r in results] == list(range(len(clip))) and len(clip) == 136
    assert {r.status for r in results} == {aggregator_pb2.FRAME_STATUS_PROCESSED}
    for result in results:
        for face in result.faces:
            for eye in (face.left_eye, face.right_eye):
                assert 0 <= eye.box.x + eye.box.width / 2 < result.frame_width
                assert 0 <= eye.box.y + eye.box.height / 2 < result.frame_height
    subject = {r.faces[0].track_id for r in results if r.faces}
    assert len(subject) == 1 and sum(bool(r.faces) for r in results) >= 130


def test_eyes_too_small_to_judge_are_unknown_and_invent_nothing(redis_server, stack, video_frames):
    # The webcam subject shrunk to a ~50 px face on a grey frame: tracked and reported, eyes not judged.
    small = cv2.resize(video_frames[0], (0, 0), fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 120, np.uint8)
    canvas[200 : 200 + small.shape[0], 250 : 250 + small.shape[1]] = small
    jpeg = cv2.imencode(".jpg", canvas)[1].tobytes()
    running = aggregator_service(redis_server.url, **stack)
    try:
        wait_for_health(running.address, SERVING)
        results = list(running.stub.TrackFrames(frames("cam-small", [jpeg] * 10), timeout=60))
    finally:
        running.close()
    assert all(len(r.faces) == 1 and r.faces[0].track_id == 1 for r in results)
    for result in results:
        for eye in (result.faces[0].left_eye, result.faces[0].right_eye):
            assert eye.box.width < 16 and eye.state == types_pb2.EYE_STATE_UNKNOWN
            assert eye.reason == types_pb2.UNKNOWN_REASON_EYE_TOO_SMALL and not eye.HasField("prob_open")
        assert not result.events


def test_the_detectors_eye_crops_classify_exactly_like_the_frame_and_boxes(stack, jpegs):
    """TrackFrames sends the detector's crops instead of the frame: the eye-state answer must not change."""
    with (
        grpc.insecure_channel(stack["detector_addr"]) as detector_channel,
        grpc.insecure_channel(stack["eyestate_addr"]) as eyestate_channel,
    ):
        detector = detector_pb2_grpc.DetectorServiceStub(detector_channel)
        eyestate = eyestate_pb2_grpc.EyeStateServiceStub(eyestate_channel)
        compared = 0
        for jpeg in jpegs[::10]:
            image = types_pb2.Image(encoded=jpeg)
            request = detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(image=image), eye_crops=True)
            eyes = [
                eye
                for face in detector.DetectEyes(request, timeout=10).faces
                for eye in (face.left_eye, face.right_eye)
            ]
            assert eyes and all(eye.crop.raw.format == types_pb2.PIXEL_FORMAT_GRAY8 for eye in eyes)
            for eye in eyes:
                x0, y0, x1, y1 = images.check_box(eye.box, 640, 480, "eye")
                assert (eye.crop.raw.width, eye.crop.raw.height) == (x1 - x0, y1 - y0)
            by_crops = eyestate.ClassifyEyes(classify_request(image, eyes), timeout=10)
            by_frame = eyestate.ClassifyEyes(
                eyestate_pb2.ClassifyEyesRequest(
                    frame=eyestate_pb2.FrameWithBoxes(frame=image, eye_boxes=[eye.box for eye in eyes])
                ),
                timeout=10,
            )
            assert [r.prob_open for r in by_crops.results] == [r.prob_open for r in by_frame.results]
            compared += len(eyes)
        assert compared >= 18


def test_a_face_leaving_the_frame_goes_unknown_then_ends_its_track_without_events(redis_server, stack, video_frames):
    # The webcam subject (eyes open, no blink in the first two seconds) slides out of the frame to the left.
    shifted = []
    for i, frame in enumerate(video_frames[:90]):
        dx = -max(0, i - 15) * 6.0  # still for 15 frames, then 6 px per frame: out of the frame by frame 90
        moved = cv2.warpAffine(frame, np.float32([[1, 0, dx], [0, 1, 0]]), (640, 480), borderValue=(120, 120, 120))
        shifted.append(cv2.imencode(".jpg", moved)[1].tobytes())
    running = aggregator_service(redis_server.url, **stack)
    try:
        wait_for_health(running.address, SERVING)
        results = list(running.stub.TrackFrames(frames("cam-leaving", shifted), timeout=120))
    finally:
        running.close()
    assert not any(r.events for r in results), "a face leaving the frame must not look like a blink or a closure"
    assert {f.track_id for r in results for f in r.faces} == {1}
    assert not results[-1].faces  # gone: no face, no track
    readings = [(eye.state, eye.reason) for r in results for f in r.faces for eye in (f.left_eye, f.right_eye)]
    assert (types_pb2.EYE_STATE_UNKNOWN, types_pb2.UNKNOWN_REASON_EYE_OUTSIDE_FRAME) in readings
    assert {state for state, _ in readings} <= {types_pb2.EYE_STATE_OPEN, types_pb2.EYE_STATE_UNKNOWN}
