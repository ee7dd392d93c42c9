"""The AWS Lambda Runtime API over HTTP/1.1, served to one env from the Lamina process.

Hot path: every warm invoke is one GET /next answer plus one POST /response, so this is an
``asyncio.Protocol`` over httptools with no framework, no task per request and no header dict:
only the three headers the API needs are kept. Keep-alive is honoured; pipelining is not
(runtimes wait for each answer). Replies copy RIE's status codes and JSON bodies, including
Go's trailing newline, so runtimes written against AWS see the same bytes.

Malformed HTTP closes the connection. A body over ``max_body`` is counted and dropped, never
buffered; for the current request id it ends the invocation as Function.ResponseSizeTooLarge.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import socket
from typing import Final, cast

import httptools

from lamina.runtime.channel import Outcome, RuntimeChannel
from lamina.runtime.models import RESPONSE_SIZE_TOO_LARGE, Invocation

DEFAULT_MAX_BODY: Final = 6_291_456 + 1024
_PREFIX: Final = b"/2018-06-01/runtime/"
_NEXT: Final = b"invocation/next"
_INIT_ERROR: Final = b"init/error"
_ASSIGNMENT: Final = b"lamina/assignment"
_MAX_URL: Final = 2048
_MAX_HEADER_BYTES: Final = 64 * 1024
_ERROR_TYPE_HEADER: Final = b"lambda-runtime-function-error-type"


def _json_reply(status: bytes, doc: dict[str, str], close: bool = False) -> bytes:
    # Go's json.Encoder (what RIE renders with) ends the document with a newline.
    body = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
    return _reply(status, b"application/json", body, close)


def _reply(status: bytes, ctype: bytes, body: bytes, close: bool = False) -> bytes:
    conn = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status, ctype, len(body), conn, body,
    )


_ACCEPTED: Final = _json_reply(b"202 Accepted", {"status": "OK"})
_INVALID_ID: Final = _json_reply(
    b"400 Bad Request", {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}
)
_NOT_FOUND: Final = _reply(b"404 Not Found", b"text/plain; charset=utf-8", b"404 page not found\n")
_NOT_ALLOWED: Final = _reply(b"405 Method Not Allowed", b"text/plain; charset=utf-8", b"")
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

# RIE's runtime state names, for its InvalidStateTransition message.
_STATE_FOR: Final = {
    "next": ("InvocationResponse", "Ready"),
    "response": ("RuntimeResponseSentState", "InvocationResponse"),
    "error": ("RuntimeResponseSentState", "InvocationErrorResponse"),
    "init": ("RuntimeResponseSentState", "InitError"),
}


def _invalid_state(action: str) -> bytes:
    src, dst = _STATE_FOR[action]
    msg = f"State transition from {src} to {dst} failed for runtime. Error: State transition is not allowed"
    return _json_reply(b"403 Forbidden", {"errorMessage": msg, "errorType": "InvalidStateTransition"})


def _too_large(limit: int) -> bytes:
    msg = f"Exceeded maximum allowed payload size ({limit} bytes)."
    return _json_reply(
        b"413 Request Entity Too Large", {"errorMessage": msg, "errorType": "RequestEntityTooLarge"}
    )


def _client_context_json(b64: str | None) -> str | None:
    """The Runtime API carries the client context as JSON; the Invoke API takes it base64."""
    if not b64:
        return None
    try:
        return base64.b64decode(b64, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return b64  # the API layer validates; never let a bad value break delivery


def render_next(inv: Invocation) -> bytes:
    """The 200 answer to GET /next: the event and its Lambda-Runtime-* headers."""
    parts = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: ",
        inv.request_id.encode(),
        b"\r\nLambda-Runtime-Deadline-Ms: %d\r\nLambda-Runtime-Invoked-Function-Arn: " % inv.deadline_ms,
        inv.function_arn.encode(),
    ]
    for name, value in (
        (b"Trace-Id", inv.trace_id),
        (b"Client-Context", _client_context_json(inv.client_context)),
        (b"Cognito-Identity", inv.cognito_identity),
    ):
        if value:
            if "\r" in value or "\n" in value:
                raise ValueError("invocation header values must not contain CR or LF")
            parts += (b"\r\nLambda-Runtime-", name, b": ", value.encode())
    parts.append(b"\r\nContent-Length: %d\r\n\r\n" % len(inv.payload))
    for value in (inv.request_id, inv.function_arn):
        if "\r" in value or "\n" in value:
            raise ValueError("invocation header values must not contain CR or LF")
    return b"".join(parts)


class RuntimeApiProtocol(asyncio.Protocol):
    """One runtime connection: parse with httptools, route, answer from the channel."""

    def __init__(self, channel: RuntimeChannel, max_body: int) -> None:
        self._channel = channel
        self._max_body = max_body
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._header_bytes = 0
        self._header_name = b""
        self._error_type: str | None = None
        self._expect_continue = False
        self._body: list[bytes] = []
        self._body_len = 0
        self._parked = False

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio only sets this when the listener was made with proto=IPPROTO_TCP; without
            # it every answer split over two segments waits ~40 ms for a delayed ACK.
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # the connection is already gone; connection_lost follows
        self._channel.connected(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._channel.disconnected(self)

    def data_received(self, data: bytes) -> None:
        if self._parked:
            self.abort()  # pipelining is not supported: a parked /next gets no company
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.abort()

    # -- httptools callbacks --------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > _MAX_URL:
            raise httptools.HttpParserError("url too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > _MAX_HEADER_BYTES:
            raise httptools.HttpParserError("headers too large")
        lname = name.lower()
        if lname == _ERROR_TYPE_HEADER:
            self._error_type = value.decode("latin-1")
        elif lname == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True

    def on_headers_complete(self) -> None:
        if self._expect_continue and self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len <= self._max_body:
            self._body.append(body)
        elif self._body:
            self._body = []  # over the cap: count the rest, keep nothing

    def on_message_complete(self) -> None:
        try:
            self._dispatch()
        finally:
            if not self._parked:
                self._reset()

    # -- routing --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        method = self._parser.get_method()
        path = self._url.split(b"?", 1)[0]
        if not path.startswith(_PREFIX):
            self._send(_NOT_FOUND)
            return
        rest = path[len(_PREFIX):]
        if rest == _NEXT:
            if method != b"GET":
                self._send(_NOT_ALLOWED)
            else:
                self._next()
            return
        if rest == _ASSIGNMENT:
            if method != b"GET":
                self._send(_NOT_ALLOWED)
            else:
                self._assignment()
            return
        if rest == _INIT_ERROR:
            if method != b"POST":
                self._send(_NOT_ALLOWED)
            elif self._body_len > self._max_body:
                self._send(_too_large(self._max_body))
            else:
                outcome = self._channel.post_init_error(self._error_type, b"".join(self._body))
                self._send_outcome(outcome, "init")
            return
        parts = rest.split(b"/")
        if len(parts) == 3 and parts[0] == b"invocation" and parts[2] in (b"response", b"error"):
            if method != b"POST":
                self._send(_NOT_ALLOWED)
            else:
                self._post(parts[1].decode("latin-1"), parts[2] == b"response")
            return
        self._send(_NOT_FOUND)

    def _next(self) -> None:
        got = self._channel.request_next(self)
        if isinstance(got, Outcome):
            self._send(_invalid_state("next"))
        elif got is None:
            self._parked = True  # long poll: the channel calls deliver() later
        else:
            self._write_invocation(got)

    def _assignment(self) -> None:
        got = self._channel.request_assignment(self)
        if isinstance(got, Outcome):
            self._send(_NOT_FOUND)  # used up, or never a standby: the path does not exist
        elif got is None:
            self._parked = True
        else:
            self._send(_reply(b"200 OK", b"application/json", got))

    def _post(self, request_id: str, ok: bool) -> None:
        if self._body_len > self._max_body:
            doc = {
                "errorMessage": f"Response payload size ({self._body_len} bytes) exceeded "
                f"maximum allowed payload size ({self._max_body} bytes).",
                "errorType": RESPONSE_SIZE_TOO_LARGE,
            }
            body = json.dumps(doc).encode()
            outcome = self._channel.post_result(request_id, False, body, RESPONSE_SIZE_TOO_LARGE)
            if outcome is Outcome.ACCEPTED:
                self._send(_too_large(self._max_body))
            else:
                self._send_outcome(outcome, "response" if ok else "error")
            return
        error_type = None if ok else self._error_type
        outcome = self._channel.post_result(request_id, ok, b"".join(self._body), error_type)
        self._send_outcome(outcome, "response" if ok else "error")

    def _send_outcome(self, outcome: Outcome, action: str) -> None:
        if outcome is Outcome.ACCEPTED:
            self._send(_ACCEPTED)
        elif outcome is Outcome.INVALID_REQUEST_ID:
            self._send(_INVALID_ID)
        else:
            self._send(_invalid_state(action))

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(data)
        if not self._parser.should_keep_alive():
            transport.close()

    def _write_invocation(self, inv: Invocation) -> None:
        transport = self._transport
        if transport is None:
            return
        head = render_next(inv)
        if len(inv.payload) < 65536:
            transport.write(head + inv.payload)
        else:
            transport.write(head)
            transport.write(inv.payload)
        if not self._parser.should_keep_alive():
            transport.close()

    # -- NextWaiter -----------------------------------------------------------------------

    def deliver(self, inv: Invocation) -> None:
        self._parked = False
        self._reset()
        self._write_invocation(inv)

    def deliver_assignment(self, document: bytes) -> None:
        self._parked = False
        self._reset()
        self._send(_reply(b"200 OK", b"application/json", document))

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def serve(
    sock: socket.socket, channel: RuntimeChannel, *, max_body: int = DEFAULT_MAX_BODY
) -> asyncio.Server:
    """Serve the Runtime API for ``channel`` on an already bound, listening ``sock``.

    The caller owns the socket's origin (in production it was bound to 127.0.0.1:9001 inside
    the env's network namespace) and closes the returned server and the channel together.
    """
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: RuntimeApiProtocol(channel, max_body), sock=sock, start_serving=True
    )
