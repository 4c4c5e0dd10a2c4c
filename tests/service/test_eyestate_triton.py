"""The eye-state service on a real `tritonserver` (nvidia-pytriton's binary) serving the committed repository."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from tests.helpers.messages import encoded_request, probs_of
from tests.helpers.servers import eyestate_args, eyestate_service, wait_for_health

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def services(triton):
    via_triton = eyestate_service(eyestate_args(backend="triton", triton_url=triton.grpc_url, triton_timeout=2.0))
    embedded = eyestate_service(eyestate_args())
    wait_for_health(via_triton.address, SERVING)
    wait_for_health(embedded.address, SERVING)
    yield via_triton, embedded
    via_triton.close()
    embedded.close()


def test_triton_results_equal_embedded_results(services, real_crops):
    via_triton, embedded = services
    request = encoded_request(real_crops)
    got, expected = via_triton.stub.ClassifyEyes(request, timeout=10), embedded.stub.ClassifyEyes(request, timeout=10)
    np.testing.assert_allclose(probs_of(got), probs_of(expected), atol=1e-5)
    assert [r.state for r in got.results] == [r.state for r in expected.results]
    assert got.model.name == "eye_state" and got.model.version == "1"
    # The eye gate, served by Triton beside the eye-state model, gives the same prob_eye as the embedded one.
    assert all(r.HasField("prob_eye") for r in got.results)
    np.testing.assert_allclose([r.prob_eye for r in got.results], [r.prob_eye for r in expected.results], atol=1e-5)


def test_batches_larger_than_max_batch_size_are_split(services, real_crops):
    via_triton, embedded = services
    blobs = (real_crops * 3)[:256]
    assert 0 < via_triton.backend.info.max_batch_size < len(blobs)
    got = probs_of(via_triton.stub.ClassifyEyes(encoded_request(blobs), timeout=20))
    np.testing.assert_allclose(got, probs_of(embedded.stub.ClassifyEyes(encoded_request(blobs), timeout=20)), atol=1e-5)


def test_health_follows_triton_and_calls_fail_fast_while_it_is_down(services, triton, real_crops):
    via_triton, _ = services
    triton.stop()
    try:
        wait_for_health(via_triton.address, NOT_SERVING, timeout=15)
        with pytest.raises(grpc.RpcError) as error:
            via_triton.stub.ClassifyEyes(encoded_request(real_crops[:2]), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Triton" in error.value.details()
    finally:
        triton.start()
    wait_for_health(via_triton.address, SERVING, timeout=30)
    assert len(via_triton.stub.ClassifyEyes(encoded_request(real_crops[:2]), timeout=10).results) == 2
