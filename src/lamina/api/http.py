"""The ASGI plumbing every protocol of the edge shares.

The request context handed to handlers, the bounded body reader (413 before buffering past
the limit), the SigV4 view of an ASGI scope, the global condition keys and the one way a
response is written. It imports nothing else of :mod:`lamina.api`, so the protocol modules
(``app``, ``internal``, ``query_app``) can all import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lamina.api import sigv4
from lamina.errors import ApiError, InvalidSignature

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    identity: sigv4.Identity
    endpoint: str  # scheme://host[:port] the client used, for URLs we hand back
    headers: Mapping[str, str]
    # The request's global condition keys (aws:SourceIp, aws:SecureTransport), for handlers
    # that evaluate a policy themselves (AssumeRole's trust policy).
    conditions: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[dict[str, Any] | None]]


def http_request(scope: Scope, body: bytes) -> sigv4.HttpRequest:
    """The request as SigV4 sees it: the raw path and query exactly as the client sent them."""
    return sigv4.HttpRequest(
        method=scope["method"],
        raw_path=(scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
        body=body,
    )


def check_scope(identity: sigv4.Identity, region: str, service: str) -> None:
    """Lambda's wording for a signature scoped to another region or service."""
    if identity.region != region:
        raise InvalidSignature("Credential should be scoped to a valid region. ")
    if identity.service != service:
        raise InvalidSignature(f"Credential should be scoped to correct service: '{service}'. ")


async def read_body(
    receive: Receive, headers: Mapping[str, str], max_size: int, too_large: Callable[[], ApiError],
) -> bytes:
    """The whole body, refused with ``too_large()`` as soon as it (or its declared
    Content-Length) exceeds ``max_size`` bytes, so an oversized body is never buffered."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_size:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_size:
            raise too_large()
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def conditions(scope: Scope) -> dict[str, str]:
    """The global condition keys a request carries (aws:SecureTransport, aws:SourceIp)."""
    client = scope.get("client")
    context = {"aws:SecureTransport": "true" if scope.get("scheme") == "https" else "false"}
    if client:
        context["aws:SourceIp"] = str(client[0])
    return context


def endpoint(scope: Scope, headers: Mapping[str, str]) -> str:
    scheme = scope.get("scheme", "http")
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}"


async def send_response(
    send: Send, status: int, body: bytes, content_type: str, request_id: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", request_id.encode()),
    ]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
