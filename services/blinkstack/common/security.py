"""TLS and bearer tokens: what a server accepts and what a client presents.

Server side: TLS from a certificate and key (PEM files, mounted from Kubernetes Secrets), optionally requiring
client certificates signed by a CA (mTLS); and, with a tokens file, every call of ours needs
`authorization: Bearer <token>` whose scopes cover the method and, where the token names streams, the streams
the call touches. Health checks stay open (probes carry no token). A server refuses to start with tokens but
without TLS unless told to (`--allow-plaintext-tokens`): any peer on the path could read them.

Client side: a channel verifies the server against a CA, presents a client certificate for mTLS, and sends a
token. Tokens travel only over TLS: a bearer token on a plaintext channel would be readable by any peer.

Tokens file (JSON):
    {"tokens": [{"name": "camera-7", "token": "...", "scopes": ["publish"], "streams": ["cam-7"]},
                {"name": "site-a", "token": "...", "scopes": ["subscribe"], "streams": ["site-a/*"]},
                {"name": "dashboard", "token": "...", "scopes": ["subscribe", "stats"]}]}
Streams: a stream id matches exactly; one ending in `*` matches every id that starts with what comes before it
(`cam-7` is cam-7 alone, `cam-7*` is cam-7, cam-70, cam-7b...). No `streams`: every stream.
Scopes: classify (ClassifyEyes, GetModelInfo), detect (DetectEyes, StreamDetectEyes), publish
(PublishEyeStates, PublishEyeStateBatches, TrackFrames), subscribe (SubscribeBlinks), stats (GetStats).
"""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import hmac
import json
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from blinkstack.common.config import env_option
from blinkstack.common.errors import PermissionDenied, Unauthenticated, quoted

METHOD_SCOPES = {
    "ClassifyEyes": "classify",
    "GetModelInfo": "classify",
    "DetectEyes": "detect",
    "StreamDetectEyes": "detect",
    "PublishEyeStates": "publish",
    "PublishEyeStateBatches": "publish",
    "TrackFrames": "publish",
    "SubscribeBlinks": "subscribe",
    "GetStats": "stats",
}
SCOPES = frozenset(METHOD_SCOPES.values())


@dataclass(frozen=True)
class Grant:
    """What the caller's token allows."""

    name: str
    scopes: frozenset[str]
    streams: tuple[str, ...] = ()  # exact stream ids, or prefixes written `prefix*`; empty: every stream

    def allows_stream(self, stream_id: str) -> bool:
        if not self.streams:
            return True
        # Exact by default: a prefix rule let the cam-7 token write into cam-70.
        return any(stream_id.startswith(s[:-1]) if s.endswith("*") else stream_id == s for s in self.streams)


# The grant of the call being handled (None: the server checks no tokens). Set by the RPC boundary, read by the
# handlers that touch streams; each call runs in its own task, which has its own copy.
GRANT: contextvars.ContextVar[Grant | None] = contextvars.ContextVar("grant", default=None)


def require_stream(stream_id: str, what: str) -> None:
    """Refuse a stream the caller's token does not cover (nothing to do when tokens are off)."""
    grant = GRANT.get()
    if grant is not None and not grant.allows_stream(stream_id):
        raise PermissionDenied(f"{what}: token {grant.name!r} may not use stream {quoted(stream_id)}")


def stream_visible(stream_id: str) -> bool:
    grant = GRANT.get()
    return grant is None or grant.allows_stream(stream_id)


class TokenTable:
    """The tokens a server accepts, kept as SHA-256 digests; loaded from the tokens file."""

    def __init__(self, grants: dict[bytes, Grant]) -> None:
        self._grants = grants

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        try:
            entries = json.loads(Path(path).read_text())["tokens"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"tokens file {path}: {exc}") from None
        grants = {}
        for i, entry in enumerate(entries):
            scopes = frozenset(entry.get("scopes", ()))
            if not entry.get("token") or not entry.get("name") or not scopes <= SCOPES:
                raise ValueError(
                    f"tokens file {path}: entry {i} needs a name, a token and scopes from {sorted(SCOPES)}"
                )
            streams = entry.get("streams", [])
            if not isinstance(streams, list) or not all(isinstance(s, str) and s.strip("*") for s in streams):
                raise ValueError(f"tokens file {path}: entry {i}: streams must be a list of stream ids or `prefix*`")
            if any("*" in s[:-1] for s in streams):
                raise ValueError(f"tokens file {path}: entry {i}: `*` may only end a stream pattern")
            grant = Grant(entry["name"], scopes, tuple(streams))
            grants[hashlib.sha256(entry["token"].encode()).digest()] = grant
        return cls(grants)

    def authorize(self, metadata: Iterable[tuple[str, str | bytes]] | None, method: str) -> Grant:
        """The grant of the call's bearer token, if it covers `method`."""
        header = next((str(v) for k, v in metadata or () if k == "authorization"), "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("this service needs `authorization: Bearer <token>`")
        digest = hashlib.sha256(token.strip().encode()).digest()
        grant = next((g for d, g in self._grants.items() if hmac.compare_digest(d, digest)), None)
        if grant is None:
            raise Unauthenticated("unknown token")
        scope = METHOD_SCOPES.get(method)
        if scope is not None and scope not in grant.scopes:
            raise PermissionDenied(f"token {grant.name!r} lacks the {scope!r} scope that {method} needs")
        return grant


def read_secret(path: str, flag: str) -> str:
    """A secret kept in a file (a token, a signing key): its text without surrounding whitespace; ValueError naming
    `flag` if the file cannot be read or holds nothing."""
    try:
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise ValueError(f"{flag}: {exc}") from None
    if not secret:
        raise ValueError(f"{flag} {path} is empty")
    return secret


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials | None:
    """TLS from PEM files (None: plaintext); with `client_ca`, clients must present a certificate it signed."""
    if not cert and not key:
        if client_ca:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not cert or not key:
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    try:
        # gRPC finds a key that does not belong to the certificate only when it binds ("Failed to bind", a
        # traceback); the ssl module checks the pair now and says which files.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ValueError(f"--tls-key {key} does not fit --tls-cert {cert} (or is not PEM): {exc.reason}") from None
    except OSError as exc:
        raise ValueError(f"cannot read a TLS file: {exc}") from None
    try:
        pair = (Path(key).read_bytes(), Path(cert).read_bytes())  # both given: checked above
        return grpc.ssl_server_credentials(
            [pair], root_certificates=_read(client_ca), require_client_auth=bool(client_ca)
        )
    except OSError as exc:
        raise ValueError(f"cannot read a TLS file: {exc}") from None


@dataclass(frozen=True)
class ClientSecurity:
    """How a client reaches a service: CA to verify it, client certificate for mTLS, bearer token file."""

    ca: str = ""
    cert: str = ""
    key: str = ""
    token_file: str = ""

    def credentials(self) -> grpc.ChannelCredentials | None:
        """None: plaintext (no CA given)."""
        if not self.ca:
            if self.token_file or self.cert:
                raise ValueError("a token or client certificate needs TLS: give the server's CA (BLINKSTACK_TLS_CA)")
            return None
        try:
            creds = grpc.ssl_channel_credentials(_read(self.ca), _read(self.key), _read(self.cert))
            if self.token_file:
                token = Path(self.token_file).read_text().strip()
                creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
        except OSError as exc:
            raise ValueError(f"cannot read a TLS or token file: {exc}") from None
        return creds

    def channel(self, target: str, options: Sequence[tuple[str, object]] = ()) -> grpc.Channel:
        creds = self.credentials()
        if creds is None:
            return grpc.insecure_channel(target, options=options)
        return grpc.secure_channel(target, creds, options=options)

    def aio_channel(self, target: str, options: Sequence[tuple[str, object]] = ()) -> grpc.aio.Channel:
        creds = self.credentials()
        if creds is None:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, creds, options=options)


def add_client_security_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--tls-ca, --tls-client-cert, --tls-client-key, --token-file: how this client reaches TLS services."""
    env_option(parser, "--tls-ca", "BLINKSTACK_TLS_CA", "", help="PEM CA that signed the services' certificates: TLS")
    env_option(parser, "--tls-client-cert", "BLINKSTACK_TLS_CLIENT_CERT", "", help="PEM client certificate (mTLS)")
    env_option(parser, "--tls-client-key", "BLINKSTACK_TLS_CLIENT_KEY", "", help="PEM key of --tls-client-cert")
    env_option(parser, "--token-file", "BLINKSTACK_CLIENT_TOKEN_FILE", "", help="file holding the bearer token to send")


def client_security(args: argparse.Namespace) -> ClientSecurity:
    security = ClientSecurity(
        ca=args.tls_ca, cert=args.tls_client_cert, key=args.tls_client_key, token_file=args.token_file
    )
    security.credentials()  # a missing file or a token without TLS is refused now, not on the first call
    return security
