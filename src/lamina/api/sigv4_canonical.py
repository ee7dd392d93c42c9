"""SigV4 wire formats: the signature parameters a request carries, and canonical forms
byte-exact with botocore's ``SigV4Auth`` for non-S3 services.

Pure functions with no knowledge of keys or clocks, so the verifier and
``presign_url`` build the very same bytes and the AWS test suite can check them directly.

The rules, as botocore applies them when it signs and as AWS applies them when it checks:

* path: the path as sent on the wire, dot segments removed and runs of ``/`` collapsed,
  then percent-encoded *again* (everything but unreserved characters, ``/`` and ``~``);
  so ``arn%3Aaws`` on the wire is ``arn%253Aaws`` in the canonical request.
* query: every ``name=value`` pair decoded and re-encoded with AWS's URI encoding (only
  ``A-Z a-z 0-9 - _ . ~`` left as is, ``+`` is a literal plus), sorted by encoded name then
  encoded value, a missing ``=`` meaning an empty value.
* headers: names lowercased; each value trimmed with runs of whitespace folded to one space
  (Python's ``str.split()``, as botocore does); repeated headers joined with ``,`` in the
  order received.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote

from lamina.errors import IncompleteSignature, InvalidSignature, MissingAuthenticationToken

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_PRESIGN_EXPIRES = 604800
MSG_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_PATH_SAFE = _UNRESERVED | {"/"}


def uri_encode(value: str, safe: str = "-_.~") -> str:
    """AWS's URI encoding: percent-encode UTF-8 bytes of all but unreserved characters.

    Undecodable input (lone surrogates from a ``surrogateescape`` decode of raw bytes) is
    encoded byte for byte rather than raising, so hostile wire bytes only ever fail the
    signature check.
    """
    return quote(value.encode("utf-8", "surrogateescape"), safe=safe)


def normalize_path(path: str) -> str:
    """Remove ``.``/``..`` segments and empty segments (RFC 3986 5.2.4 plus AWS's ``//`` rule)."""
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if segments:
                segments.pop()
        else:
            segments.append(segment)
    lead = "/" if path[0] == "/" else ""
    trail = "/" if path[-1] == "/" and segments else ""
    return lead + "/".join(segments) + trail


def canonical_path(raw_path: str) -> str:
    """The canonical URI of a non-S3 request from the path exactly as sent."""
    if raw_path == "/":
        return "/"
    normalized = normalize_path(raw_path)
    if all(ch in _PATH_SAFE for ch in normalized):
        return normalized
    return uri_encode(normalized, safe="/~")


def parse_query(query_string: str) -> list[tuple[str, str]]:
    """Decoded ``(name, value)`` pairs in wire order; empty pieces (``a&&b``) are skipped."""
    pairs: list[tuple[str, str]] = []
    if not query_string:
        return pairs
    for piece in query_string.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append(
            (unquote(name, errors="surrogateescape"), unquote(value, errors="surrogateescape"))
        )
    return pairs


def canonical_query(pairs: Iterable[tuple[str, str]], exclude: str | None = None) -> str:
    """Sorted, re-encoded ``name=value`` pairs joined with ``&``; ``exclude`` drops one name."""
    encoded = sorted(
        (uri_encode(name), uri_encode(value)) for name, value in pairs if name != exclude
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


def header_map(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Lowercased name -> values in received order."""
    result: dict[str, list[str]] = {}
    for name, value in headers:
        result.setdefault(name.lower(), []).append(value)
    return result


def canonical_headers(headers: Mapping[str, Sequence[str]], signed: Sequence[str]) -> str:
    """One ``name:value`` line per signed header (a header absent from the request is left out,
    which can only make the signature differ), each line ending in a newline."""
    lines = []
    for name in signed:
        values = headers.get(name)
        if values is None:
            continue
        folded = ",".join(" ".join(value.split()) for value in values)
        lines.append(f"{name}:{folded}\n")
    return "".join(lines)


def canonical_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, Sequence[str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """The six-part canonical request; ``path`` and ``query`` are already canonical."""
    return "\n".join(
        (
            method.upper(),
            path,
            query,
            canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            payload_hash,
        )
    )


def credential_scope(date: str, region: str, service: str) -> str:
    return f"{date}/{region}/{service}/{TERMINATOR}"


def string_to_sign(amz_date: str, scope: str, creq: str) -> str:
    digest = hashlib.sha256(creq.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


@lru_cache(maxsize=512)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The derived key for one day, region and service; cached because every request of a
    principal on one day reuses it and deriving costs four HMACs."""
    key = hmac.digest(("AWS4" + secret).encode("utf-8"), date.encode("utf-8"), "sha256")
    for part in (region, service, TERMINATOR):
        key = hmac.digest(key, part.encode("utf-8"), "sha256")
    return key


def signature(key: bytes, sts: str) -> str:
    return hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()


def fmt_amz_date(moment: datetime) -> str:
    return moment.strftime(AMZ_DATE_FORMAT)


# --- parsing the signature out of the request -------------------------------------------------

_PRESIGN_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders")
_QUERY_REQUIRED = (*_PRESIGN_PARAMS, "X-Amz-Date", "X-Amz-Expires")
_HEX = frozenset("0123456789abcdef")
_SCOPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


@dataclass(frozen=True)
class AuthParams:
    """The signature parameters of one request, syntactically valid but not yet verified."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    signed_at: datetime
    presigned: bool
    expires: int
    session_token: str | None
    content_sha256: str | None


def parse_auth(
    headers: Mapping[str, Sequence[str]], pairs: Sequence[tuple[str, str]]
) -> AuthParams:
    """Read the Authorization header, else the presigned query parameters."""
    authz = headers.get("authorization")
    if authz is not None:
        if len(authz) != 1:
            raise IncompleteSignature("Only one Authorization header is allowed.")
        return _from_header(authz[0].strip(), headers, pairs)
    query = {name: value for name, value in pairs if name.startswith("X-Amz-")}
    if any(name in query for name in _PRESIGN_PARAMS):
        return _from_query(query, headers)
    raise MissingAuthenticationToken("Missing Authentication Token")


def _from_header(
    value: str, headers: Mapping[str, Sequence[str]], pairs: Sequence[tuple[str, str]]
) -> AuthParams:
    scheme, _, rest = value.partition(" ")
    fields: dict[str, str] = {}
    if scheme == ALGORITHM:
        for piece in rest.replace(",", " ").split():
            name, sep, field = piece.partition("=")
            if sep:
                fields.setdefault(name, field)
    amz_date = _first(headers, "x-amz-date")
    http_date = _first(headers, "date")
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not fields.get(name)
    ]
    if amz_date is None and http_date is None:
        missing.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if missing:
        raise IncompleteSignature(" ".join(missing) + f" Authorization={value}")
    token = _first(headers, "x-amz-security-token")
    if token is None:
        token = next((v for n, v in pairs if n == "X-Amz-Security-Token"), None)
    return _build(
        credential=fields["Credential"],
        signed_headers=fields["SignedHeaders"],
        signature=fields["Signature"],
        amz_date=amz_date if amz_date is not None else _http_to_amz(http_date or ""),
        presigned=False,
        expires=0,
        session_token=token,
        content_sha256=_first(headers, "x-amz-content-sha256"),
    )


def _from_query(query: Mapping[str, str], headers: Mapping[str, Sequence[str]]) -> AuthParams:
    missing = [
        f"AWS query-string parameters must include '{name}'."
        for name in _QUERY_REQUIRED
        if not query.get(name)
    ]
    if missing:
        raise IncompleteSignature(" ".join(missing) + " Re-examine the query-string parameters.")
    algorithm = query["X-Amz-Algorithm"]
    if algorithm != ALGORITHM:
        raise IncompleteSignature(f"Unsupported AWS 'algorithm': '{algorithm}'")
    raw_expires = query["X-Amz-Expires"]
    if not raw_expires.isdigit() or not raw_expires.isascii():
        raise IncompleteSignature("X-Amz-Expires should be a number")
    expires = int(raw_expires)
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise IncompleteSignature(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given "
            f"X-Amz-Expires must be less than {MAX_PRESIGN_EXPIRES} seconds"
            if expires
            else "X-Amz-Expires must be a positive number of seconds"
        )
    content = query.get("X-Amz-Content-Sha256")
    return _build(
        credential=query["X-Amz-Credential"],
        signed_headers=query["X-Amz-SignedHeaders"],
        signature=query["X-Amz-Signature"],
        amz_date=query["X-Amz-Date"],
        presigned=True,
        expires=expires,
        session_token=query.get("X-Amz-Security-Token", _first(headers, "x-amz-security-token")),
        content_sha256=content if content is not None else _first(headers, "x-amz-content-sha256"),
    )


def _build(
    *,
    credential: str,
    signed_headers: str,
    signature: str,
    amz_date: str,
    presigned: bool,
    expires: int,
    session_token: str | None,
    content_sha256: str | None,
) -> AuthParams:
    parts = credential.split("/")
    scope_ok = all(parts[:4]) and all(_SCOPE_CHARS.issuperset(p) for p in parts[1:4])
    if len(parts) != 5 or not scope_ok:
        raise IncompleteSignature(
            f"Credential is mal-formed; expecting "
            f'"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request": \'{credential}\'.'
        )
    access_key_id, date, region, service, terminator = parts
    if terminator != TERMINATOR:
        raise IncompleteSignature(
            "Credential should be scoped with a valid terminator: 'aws4_request', "
            f"not '{terminator}'."
        )
    signed_at = _parse_amz_date(amz_date)
    if date != amz_date[:8]:
        raise InvalidSignature(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{date}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    if len(signature) != 64 or not _HEX.issuperset(signature):
        raise InvalidSignature(MSG_BAD_SIGNATURE)
    return AuthParams(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=tuple(signed_headers.split(";")),
        signature=signature,
        amz_date=amz_date,
        signed_at=signed_at,
        presigned=presigned,
        expires=expires,
        session_token=session_token,
        content_sha256=content_sha256,
    )


def _first(headers: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0].strip() if values else None


def _parse_amz_date(value: str) -> datetime:
    """Strict ``YYYYMMDDTHHMMSSZ`` (strptime is slower and accepts short fields)."""
    if len(value) == 16 and value[8] == "T" and value[15] == "Z":
        digits = value[:8] + value[9:15]
        if digits.isdigit() and digits.isascii():
            try:
                return datetime(
                    int(value[0:4]), int(value[4:6]), int(value[6:8]),
                    int(value[9:11]), int(value[11:13]), int(value[13:15]),
                    tzinfo=timezone.utc,
                )
            except ValueError:
                pass
    raise IncompleteSignature(
        f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
        "See http://en.wikipedia.org/wiki/ISO_8601"
    )


def _http_to_amz(value: str) -> str:
    """An RFC 7231 ``Date`` header in SigV4's basic format (what the string to sign uses)."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError) as exc:
        raise IncompleteSignature(f"Date header is not a valid HTTP date: '{value}'.") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return fmt_amz_date(parsed.astimezone(timezone.utc))


def scope_service_of(headers: Sequence[tuple[str, str]], query_string: str) -> str | None:
    """The service field of the credential scope, found with string operations only."""
    credential: str | None = None
    for name, value in headers:
        if name.lower() == "authorization":
            start = value.find("Credential=")
            if start < 0:
                return None
            rest = value[start + len("Credential="):]
            credential = rest.replace(",", " ").split(" ", 1)[0]
            break
    else:
        start = query_string.find("X-Amz-Credential=")
        if start < 0 or (start > 0 and query_string[start - 1] != "&"):
            return None
        credential = unquote(query_string[start + len("X-Amz-Credential="):].split("&", 1)[0])
    parts = credential.split("/")
    return parts[3] or None if len(parts) == 5 else None

