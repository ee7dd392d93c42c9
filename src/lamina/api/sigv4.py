"""SigV4 verification of every API request (header-signed and presigned), and presigned URLs.

The verifier sits on the invoke hot path, so it does the cheap rejections first (shape,
scope, clock) and only then the key lookup and two SHA-256 passes; derived signing keys are
cached in ``sigv4_canonical.signing_key``. Signatures and session tokens are compared with
``hmac.compare_digest``. Error codes and texts are AWS's (all 403), see ``lamina.errors``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from lamina.api import sigv4_canonical as canon
from lamina.api.sigv4_canonical import (
    MAX_PRESIGN_EXPIRES,
    MSG_BAD_SIGNATURE,
    AuthParams,
    fmt_amz_date,
    parse_auth,
    scope_service_of,
)
from lamina.errors import (
    IncompleteSignature,
    InvalidSignature,
    SignatureExpired,
    UnrecognizedClient,
)

__all__ = [
    "HttpRequest",
    "Identity",
    "SecretKey",
    "Verifier",
    "presign_url",
    "scope_service",
]

MSG_INVALID_TOKEN = "The security token included in the request is invalid."


@dataclass(frozen=True)
class HttpRequest:
    """A request exactly as received.

    ``raw_path`` is the percent-encoded path as sent (bytes outside ASCII decoded as UTF-8
    with ``surrogateescape``), ``query_string`` the raw query without ``?``; ``headers`` keep
    the received order, any case, repeats allowed.
    """

    method: str
    raw_path: str
    query_string: str
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class SecretKey:
    """An access key; ``session_token`` (when not None) must be sent with and match each request."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None
    principal_arn: str


@dataclass(frozen=True)
class Identity:
    """Who signed a request that verified, and the scope they signed it for."""

    access_key_id: str
    principal_arn: str
    service: str
    region: str
    presigned: bool


def scope_service(request: HttpRequest) -> str | None:
    """Cheap: the service named in the credential scope (Authorization header or
    X-Amz-Credential), for routing before verification. Not authenticated."""
    return scope_service_of(request.headers, request.query_string)


class Verifier:
    """Checks SigV4 signatures against keys from ``lookup`` and the time from ``clock``."""

    def __init__(
        self,
        lookup: Callable[[str], SecretKey | None],
        clock: Callable[[], datetime],
        skew: timedelta = timedelta(minutes=5),
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self._skew = skew

    def verify(self, request: HttpRequest) -> Identity:
        """Return the signer's identity or raise an ``AuthError`` subclass."""
        headers = canon.header_map(request.headers)
        pairs = canon.parse_query(request.query_string)
        auth = parse_auth(headers, pairs)
        self._check_time(auth)
        key = self._lookup(auth.access_key_id)
        if key is None:
            raise UnrecognizedClient(MSG_INVALID_TOKEN)
        _check_token(key, auth.session_token)
        if "host" not in auth.signed_headers:
            raise IncompleteSignature(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            )
        payload_hash = _payload_hash(request.body, auth.content_sha256, auth.presigned)
        creq = canon.canonical_request(
            method=request.method,
            path=canon.canonical_path(request.raw_path),
            query=canon.canonical_query(pairs, "X-Amz-Signature" if auth.presigned else None),
            headers=headers,
            signed_headers=auth.signed_headers,
            payload_hash=payload_hash,
        )
        scope = canon.credential_scope(auth.date, auth.region, auth.service)
        sts = canon.string_to_sign(auth.amz_date, scope, creq)
        signing = canon.signing_key(key.secret_access_key, auth.date, auth.region, auth.service)
        expected = canon.signature(signing, sts)
        if not hmac.compare_digest(expected, auth.signature):
            raise InvalidSignature(MSG_BAD_SIGNATURE)
        return Identity(
            access_key_id=key.access_key_id,
            principal_arn=key.principal_arn,
            service=auth.service,
            region=auth.region,
            presigned=auth.presigned,
        )

    def _check_time(self, auth: AuthParams) -> None:
        """AWS's skew window both ways; a presigned URL also dies ``expires`` seconds on."""
        now = self._clock().astimezone(timezone.utc).replace(microsecond=0)
        signed_at = auth.signed_at
        minutes = int(self._skew.total_seconds() // 60)
        if signed_at > now + self._skew:
            raise SignatureExpired(
                f"Signature not yet current: {auth.amz_date} is still later than "
                f"{fmt_amz_date(now + self._skew)} ({fmt_amz_date(now)} + {minutes} min.)"
            )
        if auth.presigned:
            if now > signed_at + timedelta(seconds=auth.expires):
                raise SignatureExpired("Request has expired")
        elif signed_at < now - self._skew:
            raise SignatureExpired(
                f"Signature expired: {auth.amz_date} is now earlier than "
                f"{fmt_amz_date(now - self._skew)} ({fmt_amz_date(now)} - {minutes} min.)"
            )


def _check_token(key: SecretKey, sent: str | None) -> None:
    """A key with a token needs exactly that token; a key without one accepts none."""
    if key.session_token is None:
        if sent is not None:
            raise UnrecognizedClient(MSG_INVALID_TOKEN)
        return
    if sent is None or not hmac.compare_digest(
        sent.encode("utf-8", "surrogateescape"), key.session_token.encode("utf-8")
    ):
        raise UnrecognizedClient(MSG_INVALID_TOKEN)


def _payload_hash(body: bytes, declared: str | None, presigned: bool) -> str:
    """The payload hash to sign: the body's, or UNSIGNED-PAYLOAD in a presigned URL that says so."""
    if declared is None:
        return hashlib.sha256(body).hexdigest() if body else canon.EMPTY_SHA256
    if declared == canon.UNSIGNED_PAYLOAD:
        if presigned:
            return declared
        raise InvalidSignature("UNSIGNED-PAYLOAD is accepted only in presigned URLs.")
    actual = hashlib.sha256(body).hexdigest() if body else canon.EMPTY_SHA256
    sent = declared.lower().encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(actual.encode(), sent):
        raise InvalidSignature(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return declared


def presign_url(
    *,
    method: str,
    endpoint: str,
    path: str,
    query: Mapping[str, str],
    key: SecretKey,
    region: str,
    service: str,
    expires: int,
    now: datetime,
) -> str:
    """A SigV4 query-signed URL (UNSIGNED-PAYLOAD) that ``Verifier.verify`` accepts.

    ``endpoint`` is ``scheme://host[:port]``; the host header is signed as a client sends it
    (default ports dropped). ``path`` is the wire path, already percent-encoded; ``query``
    holds decoded values.
    """
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise ValueError(f"expires must be 1..{MAX_PRESIGN_EXPIRES}, not {expires}")
    parts = urlsplit(endpoint)
    host = parts.netloc.lower()
    default_port = {"http": ":80", "https": ":443"}.get(parts.scheme)
    if default_port and host.endswith(default_port):
        host = host[: -len(default_port)]
    amz_date = fmt_amz_date(now.astimezone(timezone.utc))
    date = amz_date[:8]
    scope = canon.credential_scope(date, region, service)
    pairs = list(query.items()) + [
        ("X-Amz-Algorithm", canon.ALGORITHM),
        ("X-Amz-Content-Sha256", canon.UNSIGNED_PAYLOAD),
        ("X-Amz-Credential", f"{key.access_key_id}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    if key.session_token is not None:
        pairs.append(("X-Amz-Security-Token", key.session_token))
    query_string = canon.canonical_query(pairs)
    creq = canon.canonical_request(
        method=method,
        path=canon.canonical_path(path),
        query=query_string,
        headers={"host": [host]},
        signed_headers=["host"],
        payload_hash=canon.UNSIGNED_PAYLOAD,
    )
    sts = canon.string_to_sign(amz_date, scope, creq)
    sig = canon.signature(canon.signing_key(key.secret_access_key, date, region, service), sts)
    return f"{parts.scheme}://{parts.netloc}{path}?{query_string}&X-Amz-Signature={sig}"
