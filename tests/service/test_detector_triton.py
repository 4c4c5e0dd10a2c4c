"""The detector service with its Triton backend, against a real `tritonserver` serving the committed repository:
the face detector and the landmark model both run there."""

from __future__ import annotations

import grpc
import pytest

from tests.helpers import SERVING
from tests.helpers.messages import detect_request as request
from tests.helpers.messages import raw_frame
from tests.helpers.servers import detector_service, wait_for_health


@pytest.fixture(scope="module")
def services(triton):
    via_triton = detector_service(backend="triton", triton_url=triton.grpc_url, triton_timeout=5.0)
    embedded = detector_service()
    wait_for_health(via_triton.address, SERVING)
    wait_for_health(embedded.address, SERVING)
    yield via_triton, embedded
    via_triton.close()
    embedded.close()


def test_triton_detections_equal_embedded_detections(services, video_frames):
    via_triton, embedded = services
    for index in (0, 500, 1500):
        frame = request(raw_frame(video_frames[index]), "cam", seq=index)
        got = via_triton.stub.DetectEyes(frame, timeout=20)
        expected = embedded.stub.DetectEyes(frame, timeout=20)
        assert len(got.faces) == len(expected.faces) == 1
        for a, b in ((got.faces[0].left_eye, expected.faces[0].left_eye), (got.faces[0].box, expected.faces[0].box)):
            for field in ("x", "y"):
                assert getattr(getattr(a, "center", a), field) == pytest.approx(
                    getattr(getattr(b, "center", b), field), abs=0.05
                )
        assert got.faces[0].score == pytest.approx(expected.faces[0].score, abs=1e-4)
        (face,), (reference,) = got.faces, expected.faces
        for a, b in ((face.left_eye, reference.left_eye), (face.right_eye, reference.right_eye)):
            assert a.landmarks.aperture == pytest.approx(b.landmarks.aperture, abs=1e-3)
            assert a.box.angle_deg == pytest.approx(b.box.angle_deg, abs=0.05)
    infos = [backend.info for backend in via_triton.backend.backends]
    assert [(i.name, i.model_name, i.model_version) for i in infos] == [
        ("triton", "face_detector", "1"),
        ("triton", "face_landmarks", "1"),
    ]


def test_triton_down_is_unavailable(services, triton, video_frames):
    via_triton, _ = services
    triton.stop()
    try:
        with pytest.raises(grpc.RpcError) as error:
            via_triton.stub.DetectEyes(request(raw_frame(video_frames[0])), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Triton" in error.value.details()
    finally:
        triton.start()
    wait_for_health(via_triton.address, SERVING, timeout=30)
