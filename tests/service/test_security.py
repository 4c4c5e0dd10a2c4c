"""TLS, mTLS and bearer tokens end to end: between the services (TrackFrames calls the detector and eye-state
service over mTLS with its own token), from the Python clients and from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import cv2
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from blinkstack.common.security import ClientSecurity
from blinkstack.local.processes import free_port
from blinkstack.local.triton_server import TritonServer
from blinkstack.v1 import aggregator_pb2, aggregator_pb2_grpc, types_pb2
from tests.helpers import MODEL_REPOSITORY, SERVING
from tests.helpers.messages import encoded_request
from tests.helpers.pki import make_pki
from tests.helpers.servers import aggregator_service, detector_service, eyestate_args, eyestate_service, wait_for_health

TOKENS = {
    "camera": ("tok-camera-7", ["publish"], ["cam-7"]),
    "viewer": ("tok-viewer", ["subscribe", "stats"], []),
    "aggregator": ("tok-aggregator", ["detect", "classify"], []),
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory, redis_server, video_frames):
    folder = tmp_path_factory.mktemp("pki")
    pki = make_pki(folder)
    tokens = folder / "tokens.json"
    entries = [{"name": n, "token": t, "scopes": s, "streams": p} for n, (t, s, p) in TOKENS.items()]
    tokens.write_text(json.dumps({"tokens": entries}))
    token_files = {}
    for name, (token, _, _) in TOKENS.items():
        token_files[name] = folder / f"{name}.token"
        token_files[name].write_text(token + "\n")
    server_tls = {
        "tls_cert": str(pki.server_cert),
        "tls_key": str(pki.server_key),
        "tls_client_ca": str(pki.ca),  # mTLS: every caller shows a certificate this CA signed
        "tokens_file": str(tokens),
        "reflection": False,
    }
    eyestate = eyestate_service(eyestate_args(**server_tls))
    detector = detector_service(**server_tls, health_port=free_port())
    downstream = {  # the aggregator's own certificate and token towards the detector and eye-state service
        "tls_ca": str(pki.ca),
        "tls_client_cert": str(pki.server_cert),
        "tls_client_key": str(pki.server_key),
        "token_file": str(token_files["aggregator"]),
    }
    aggregator = aggregator_service(
        redis_server.url,
        redis_prefix="secure",
        detector_addr=detector.address,
        eyestate_addr=eyestate.address,
        **server_tls,
        **downstream,
    )
    services = {"detector": detector, "eyestate": eyestate, "aggregator": aggregator}
    for running in services.values():
        wait_secure_serving(running.address, pki)
    yield pki, token_files, services, cv2.imencode(".jpg", video_frames[0])[1].tobytes()
    for running in services.values():
        running.close()


def client(pki, token_file=None, cert=True) -> ClientSecurity:
    return ClientSecurity(
        str(pki.ca),
        str(pki.client_cert) if cert else "",
        str(pki.client_key) if cert else "",
        str(token_file or ""),
    )


def wait_secure_serving(address: str, pki) -> None:
    """Health is open (probes carry no token) but, with mTLS, only to a client with a certificate."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with client(pki).channel(address) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == SERVING:
                    return
            except grpc.RpcError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"{address} never became SERVING over TLS")


def aggregator_stub(pki, address, token_file=None, cert=True):
    channel = client(pki, token_file, cert).channel(address)
    return channel, aggregator_pb2_grpc.AggregatorServiceStub(channel)


def frame(stream_id: str, jpeg: bytes, seq: int = 0) -> types_pb2.Frame:
    return types_pb2.Frame(
        stream_id=stream_id, seq=seq, timestamp_us=1_000_000 + seq, image=types_pb2.Image(encoded=jpeg)
    )


def test_track_frames_over_mtls_with_tokens_reaches_detector_and_eyestate(secured):
    pki, tokens, services, jpeg = secured
    channel, stub = aggregator_stub(pki, services["aggregator"].address, tokens["camera"])
    with channel:
        (result,) = list(stub.TrackFrames(iter([frame("cam-7", jpeg)]), timeout=30))
    assert len(result.faces) == 1 and result.faces[0].left_eye.state != types_pb2.EYE_STATE_UNSPECIFIED


def test_plaintext_and_certificate_less_clients_cannot_connect(secured):
    pki, tokens, services, _ = secured
    address = services["aggregator"].address
    with grpc.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as plaintext:
            stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="cam-7", track_id=1), timeout=3)
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
    channel, stub = aggregator_stub(pki, address, tokens["viewer"], cert=False)
    with channel, pytest.raises(grpc.RpcError) as no_cert:
        stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="cam-7", track_id=1), timeout=3)
    assert no_cert.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tokens_and_scopes_refuse_reading_forging_and_poisoning(secured, tmp_path):
    pki, tokens, services, jpeg = secured
    address = services["aggregator"].address
    forged = aggregator_pb2.EyeObservation(stream_id="cam-7", track_id=1, seq=2**40, timestamp_us=5_000_000)
    forged_70 = aggregator_pb2.EyeObservation(stream_id="cam-70", track_id=1, seq=1, timestamp_us=5_000_000)
    unknown = tmp_path / "unknown.token"
    unknown.write_text("not-a-token")
    cases = [
        (
            None,
            lambda s: s.GetStats(aggregator_pb2.GetStatsRequest(stream_id="cam-7", track_id=1), timeout=5),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        (unknown, lambda s: s.PublishEyeStates(iter([forged]), timeout=5), grpc.StatusCode.UNAUTHENTICATED),
        (tokens["viewer"], lambda s: s.PublishEyeStates(iter([forged]), timeout=5), grpc.StatusCode.PERMISSION_DENIED),
        (
            tokens["camera"],
            lambda s: list(s.TrackFrames(iter([frame("cam-8", jpeg)]), timeout=10)),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (  # the cam-7 token names cam-7 exactly: not cam-70, which a prefix rule let it forge
            tokens["camera"],
            lambda s: s.PublishEyeStates(iter([forged_70]), timeout=5),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            tokens["camera"],
            lambda s: next(s.SubscribeBlinks(aggregator_pb2.SubscribeBlinksRequest(), timeout=5)),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            tokens["aggregator"],
            lambda s: s.GetStats(aggregator_pb2.GetStatsRequest(stream_id="x", track_id=1), timeout=5),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    ]
    for token, call, code in cases:
        channel, stub = aggregator_stub(pki, address, token)
        with channel, pytest.raises(grpc.RpcError) as refused:
            call(stub)
        assert refused.value.code() == code, (token, refused.value.details())
        assert "tok-" not in refused.value.details()  # tokens are never echoed
    # The camera's own stream still works: the poison seq above was never stored.
    channel, stub = aggregator_stub(pki, address, tokens["camera"])
    with channel:
        (result,) = list(stub.TrackFrames(iter([frame("cam-7", jpeg, seq=1)]), timeout=30))
    assert result.status == aggregator_pb2.FRAME_STATUS_PROCESSED


def test_cli_uses_the_ca_and_token_and_says_what_is_missing(secured):
    pki, tokens, services, _ = secured
    base = [sys.executable, "-m", "blinkstack.cli", "stats", "--target", services["aggregator"].address]
    base += ["--stream-id", "cam-7", "--tls-ca", str(pki.ca), "--tls-client-cert", str(pki.client_cert)]
    base += ["--tls-client-key", str(pki.client_key)]
    ok = subprocess.run([*base, "--token-file", str(tokens["viewer"])], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "stream cam-7 track 1" in ok.stdout
    missing = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "UNAUTHENTICATED" in missing.stderr
    plaintext_token = subprocess.run(
        [sys.executable, "-m", "blinkstack.cli", "stats", "--stream-id", "x", "--token-file", str(tokens["viewer"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plaintext_token.returncode != 0 and "needs TLS" in plaintext_token.stderr


def test_probes_get_health_alone_in_plaintext_on_the_health_port(secured):
    detector = secured[2]["detector"]
    health_address = f"127.0.0.1:{detector.host.settings.health_port}"
    with grpc.insecure_channel(health_address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == SERVING
        detect = channel.unary_unary("/blinkstack.v1.DetectorService/DetectEyes")
        with pytest.raises(grpc.RpcError) as nothing_else:
            detect(b"", timeout=5)
    assert nothing_else.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_eyestate_reaches_triton_over_mtls_and_refuses_a_plaintext_triton_client(secured, tmp_path, real_crops):
    pki = secured[0]
    triton = TritonServer(
        MODEL_REPOSITORY, free_port(), free_port(), free_port(), log_path=tmp_path / "triton.log",
        tls=(pki.server_cert, pki.server_key, pki.ca),
    )  # fmt: skip
    triton.start()
    try:
        tls = {"triton_ca": str(pki.ca), "triton_client_cert": str(pki.client_cert)}
        tls["triton_client_key"] = str(pki.client_key)
        via_tls = eyestate_service(eyestate_args(backend="triton", triton_url=triton.grpc_url, **tls))
        plaintext = eyestate_service(eyestate_args(backend="triton", triton_url=triton.grpc_url, triton_timeout=1.0))
        try:
            wait_for_health(via_tls.address, SERVING)
            reply = via_tls.stub.ClassifyEyes(encoded_request(real_crops[:4]), timeout=10)
            assert len(reply.results) == 4 and reply.model.name == "eye_state"
            with pytest.raises(grpc.RpcError) as refused:
                plaintext.stub.ClassifyEyes(encoded_request(real_crops[:1]), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            via_tls.close()
            plaintext.close()
    finally:
        triton.stop()


@pytest.mark.parametrize("wrong", ["token", "ca"])
def test_an_aggregator_whose_own_credentials_are_refused_is_not_ready_and_says_why(
    secured, tmp_path, redis_server, wrong
):
    """Its token (or the CA it checks the services against) is wrong: health says NOT_SERVING, and TrackFrames
    answers FAILED_PRECONDITION naming the setting, not a retryable UNAVAILABLE that a camera retries for ever."""
    pki, tokens, services, jpeg = secured
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other", "another CA")
    bad_token = tmp_path / "bad.token"
    bad_token.write_text("not-the-aggregators-token\n")
    downstream = {
        "tls_ca": str(other.ca if wrong == "ca" else pki.ca),
        "tls_client_cert": str(pki.server_cert),
        "tls_client_key": str(pki.server_key),
        "token_file": str(bad_token if wrong == "token" else tokens["aggregator"]),
    }
    aggregator = aggregator_service(
        redis_server.url,
        redis_prefix=f"refused-{wrong}",
        detector_addr=services["detector"].address,
        eyestate_addr=services["eyestate"].address,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tokens_file=str(pki.ca.parent / "tokens.json"),
        **downstream,
    )
    try:
        channel, stub = aggregator_stub(pki, aggregator.address, tokens["camera"])
        with channel:
            deadline = time.monotonic() + 20
            status = None
            while time.monotonic() < deadline:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
                if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                time.sleep(0.2)
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.TrackFrames(iter([frame("cam-7", jpeg)]), timeout=30))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value.details()
        assert "refused this aggregator's credentials" in refused.value.details()
    finally:
        aggregator.close()
