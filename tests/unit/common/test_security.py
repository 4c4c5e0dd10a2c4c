"""Bearer tokens and their grants (common/security.py TokenTable, Grant), without TLS: the table is pure."""

from __future__ import annotations

import json

import pytest

from blinkstack.common.errors import PermissionDenied, Unauthenticated
from blinkstack.common.security import Grant, TokenTable


@pytest.fixture
def table(tmp_path) -> TokenTable:
    tokens = [
        {"name": "cam-7", "token": "t-cam7", "scopes": ["publish"], "streams": ["cam-7"]},
        {"name": "site-a", "token": "t-site", "scopes": ["subscribe", "stats"], "streams": ["site-a/*"]},
        {"name": "ops", "token": "t-ops", "scopes": ["classify", "detect", "publish", "subscribe", "stats"]},
    ]
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": tokens}))
    return TokenTable.load(path)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_a_token_is_granted_the_methods_of_its_scopes_only(table):
    assert table.authorize(bearer("t-cam7"), "TrackFrames").name == "cam-7"
    with pytest.raises(PermissionDenied, match="lacks the 'subscribe' scope"):
        table.authorize(bearer("t-cam7"), "SubscribeBlinks")


@pytest.mark.parametrize("metadata", [[], [("authorization", "t-ops")], bearer("nope"), bearer("")])
def test_no_token_a_malformed_header_or_an_unknown_token_is_unauthenticated(table, metadata):
    with pytest.raises(Unauthenticated):
        table.authorize(metadata, "GetStats")


def test_streams_match_exactly_or_by_an_explicit_prefix(table):
    cam7 = table.authorize(bearer("t-cam7"), "TrackFrames")
    assert cam7.allows_stream("cam-7") and not cam7.allows_stream("cam-70")
    site = table.authorize(bearer("t-site"), "GetStats")
    assert site.allows_stream("site-a/door") and not site.allows_stream("site-b/door")
    assert Grant("any", frozenset()).allows_stream("whatever")  # no streams listed: all of them


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"name": "x", "token": "t", "scopes": ["admin"]}, "needs a name, a token and scopes"),
        ({"name": "x", "token": "", "scopes": ["stats"]}, "needs a name, a token and scopes"),
        ({"name": "x", "token": "t", "scopes": ["stats"], "streams": "cam-7"}, "must be a list"),
        ({"name": "x", "token": "t", "scopes": ["stats"], "streams": ["a*b"]}, "may only end a stream pattern"),
    ],
)
def test_a_bad_tokens_file_is_refused_at_load_naming_the_entry(tmp_path, entry, says):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [entry]}))
    with pytest.raises(ValueError, match=f"entry 0.*{says}|{says}"):
        TokenTable.load(path)
