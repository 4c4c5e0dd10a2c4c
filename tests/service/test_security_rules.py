"""Who may touch which stream, and what a server refuses to start with: the token rules without a server."""

from __future__ import annotations

import argparse
import json

import pytest

from blinkstack.common.backend_options import add_backend_options, backend_options
from blinkstack.common.grpc_server import add_server_options, settings_from_args
from blinkstack.common.security import Grant, TokenTable, read_secret
from blinkstack.services import AGGREGATOR, EYESTATE
from tests.helpers.pki import make_pki


def test_stream_names_match_exactly_and_a_trailing_star_is_a_prefix():
    camera = Grant("camera-7", frozenset({"publish"}), ("cam-7",))
    assert camera.allows_stream("cam-7")
    assert not camera.allows_stream("cam-70") and not camera.allows_stream("cam-7b") and not camera.allows_stream("cam")
    site = Grant("site", frozenset({"subscribe"}), ("site-a/*", "cam-9"))
    assert site.allows_stream("site-a/door") and site.allows_stream("site-a/") and site.allows_stream("cam-9")
    assert not site.allows_stream("site-b/door") and not site.allows_stream("cam-90")
    assert Grant("all", frozenset({"stats"})).allows_stream("anything")


@pytest.mark.parametrize(
    "streams, message",
    [("cam-7", "must be a list"), (["*"], "must be a list"), (["cam-*-x"], "may only end"), ([7], "must be a list")],
)
def test_a_tokens_file_with_a_bad_stream_pattern_is_refused(tmp_path, streams, message):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"name": "n", "token": "t", "scopes": ["publish"], "streams": streams}]}))
    with pytest.raises(ValueError, match=message):
        TokenTable.load(path)


def server_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_server_options(parser, AGGREGATOR)
    return parser.parse_args(list(argv))


def test_tokens_without_tls_stop_the_server_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv("BLINKSTACK_ALLOW_PLAINTEXT_TOKENS", raising=False)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"name": "n", "token": "t", "scopes": ["stats"]}]}))
    with pytest.raises(ValueError, match="in the clear"):
        settings_from_args(server_args("--tokens-file", str(tokens)))
    allowed = settings_from_args(server_args("--tokens-file", str(tokens), "--allow-plaintext-tokens", "1"))
    assert allowed.tokens is not None and allowed.credentials is None
    pki = make_pki(tmp_path)
    secured = settings_from_args(
        server_args("--tokens-file", str(tokens), "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))
    )
    assert secured.credentials is not None


def test_a_key_that_does_not_fit_its_certificate_is_named_at_start(tmp_path):
    pki = make_pki(tmp_path)
    with pytest.raises(ValueError, match="does not fit --tls-cert"):
        settings_from_args(server_args("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.client_key)))


def test_a_secret_file_that_is_missing_or_empty_is_named(tmp_path):
    empty, missing, token = tmp_path / "empty", tmp_path / "missing", tmp_path / "token"
    empty.write_text("\n")
    token.write_text("  s3cret \n")
    assert read_secret(str(token), "--view-token-file") == "s3cret"
    with pytest.raises(ValueError, match=r"--webhook-secret-file .*empty is empty"):
        read_secret(str(empty), "--webhook-secret-file")
    with pytest.raises(ValueError, match=r"--view-token-file: .*No such file"):
        read_secret(str(missing), "--view-token-file")


def test_a_triton_client_certificate_without_its_ca_stops_the_service():
    parser = argparse.ArgumentParser()
    add_backend_options(parser, EYESTATE, "eye_state")
    with pytest.raises(ValueError, match="need --triton-ca"):
        backend_options(parser.parse_args(["--backend", "triton", "--triton-client-cert", "c.pem"]))
