"""The ASGI application: one port for every AWS service Lamina speaks.

A request goes: health/code-download routes (no SigV4) → the Authorization header must be
present → the credential scope's service picks the protocol → the route picks the operation
→ the body is read up to the operation's limit (413 before buffering more) → SigV4 is
verified over the exact bytes → the input is parsed and checked against the model → the
handler runs → the output is serialized by the model. Every error becomes AWS's error shape
here and nowhere else.

``App`` only dispatches and runs the REST-JSON (Lambda) and JSON (Logs) protocols itself: the
``/_lamina/`` routes live in :mod:`lamina.api.internal`, the query protocol (IAM, STS) in
:mod:`lamina.api.query_app`, the shared ASGI plumbing in :mod:`lamina.api.http`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

from lamina.api import sigv4
from lamina.api.guard import Guard
from lamina.api.http import (
    Handler,
    Receive,
    RequestContext,
    Scope,
    Send,
    check_scope,
    conditions,
    endpoint,
    http_request,
    read_body,
    send_response,
)
from lamina.api.internal import InternalRoutes, Observability
from lamina.api.query import QueryService
from lamina.api.query_app import handle_query
from lamina.api.wire import Operation, ServiceModel, header_map, parse_query
from lamina.errors import (
    ApiError,
    InvalidSignature,
    MissingAuthenticationToken,
    NotImplementedOperation,
    RequestTooLarge,
    ServiceError,
)
from lamina.telemetry import history, traces

# Handlers, services and the platform routes import these names from here.
__all__ = [
    "App", "BodyTooLarge", "Handler", "JsonError", "JsonService", "LambdaService", "Observability",
    "RequestContext",
]

log = logging.getLogger(__name__)


class BodyTooLarge(RequestTooLarge):
    """413 for control-plane bodies, with AWS's wording."""

    code = "RequestEntityTooLargeException"


class JsonError(ApiError):
    """An error of a JSON-protocol service, by AWS code (always a client error, 400)."""

    status = 400
    message_key = "message"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class JsonService:
    """A service on AWS's JSON protocol (``X-Amz-Target: <prefix>.<Operation>``)."""

    model: ServiceModel
    target_prefix: str
    handlers: dict[str, Handler]
    body_limit: int = 1024 * 1024


@dataclass
class LambdaService:
    model: ServiceModel
    handlers: dict[str, Handler]
    body_limits: dict[str, int]
    default_body_limit: int = 6 * 1024 * 1024


class App:
    def __init__(
        self,
        verifier: sigv4.Verifier,
        lambda_service: LambdaService,
        code_download: Callable[[sigv4.HttpRequest], Awaitable[bytes]],
        ready: Callable[[], bool],
        region: str,
        status: Callable[[], dict[str, Any]] = dict,
        json_services: Mapping[str, JsonService] | None = None,
        observability: Observability | None = None,
        query_services: Mapping[str, QueryService] | None = None,
        guard: Guard | None = None,
        sandbox_peers: Container[tuple[str, int]] = frozenset(),
    ) -> None:
        self.guard = guard
        # Client addresses of calls relayed from inside sandboxes (see InternalRoutes).
        self.sandbox_peers = sandbox_peers
        self.query_services = dict(query_services or {})
        self.observability = observability
        self.json_services = dict(json_services or {})
        self.region = region
        self.verifier = verifier
        self.lambda_service = lambda_service
        self.code_download = code_download
        self.ready = ready
        self.status = status
        self.internal = InternalRoutes(
            verifier, region, code_download, ready, status, observability, sandbox_peers,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        scope["lamina.arrived"] = time.time()  # the front end span of a traced Invoke starts here
        try:
            await self._handle(scope, receive, send, request_id)
        except ApiError as exc:
            await _send_error(send, exc, request_id)
        except Exception:  # LaminaError or a bug: never a bare 500 without AWS's shape
            log.exception("request %s failed", request_id)
            await _send_error(send, ServiceError("An internal error occurred."), request_id)
        finally:
            segment = traces.pending.get()
            if segment is not None:  # a sampled invoke: its response has been written now
                segment.finish(time.time())

    async def _handle(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/_lamina/"):
            await self.internal.handle(scope, receive, send, request_id)
            return
        headers = header_map(scope["headers"])
        raw_query: bytes = scope.get("query_string", b"")
        query = parse_query(raw_query)
        if "authorization" not in headers and "X-Amz-Signature" not in query:
            raise MissingAuthenticationToken("Missing Authentication Token")
        scoped = sigv4.scope_service(http_request(scope, b""))
        json_service = self.json_services.get(scoped or "")
        if json_service is not None:
            await self._handle_json(json_service, scoped or "", scope, receive, send, request_id, headers)
            return
        query_service = self.query_services.get(scoped or "")
        if query_service is not None:
            await handle_query(
                query_service, scoped or "", scope, receive, send, request_id, headers,
                verifier=self.verifier, region=self.region, guard=self.guard,
            )
            return
        service = self.lambda_service
        op, path_params = service.model.route(method, path, query)
        if op.name == "Invoke":
            traces.origin.set(("frontend", scope["lamina.arrived"]))
        limit = service.body_limits.get(op.name, service.default_body_limit)
        body = await _read_body(receive, headers, limit, op)
        identity = self.verifier.verify(http_request(scope, body))
        check_scope(identity, self.region, "lambda")
        handler = service.handlers.get(op.name)
        if handler is None:
            raise NotImplementedOperation(f"Lamina does not implement {op.name} yet.")
        params = service.model.parse_input(op, path_params, query, headers, body)
        service.model.validate(op, params)
        if self.guard is not None:
            self.guard.check("lambda", identity, op.name, params, conditions(scope))
        ctx = RequestContext(request_id, identity, endpoint(scope, headers), headers)
        token = history.principal.set(identity.principal_arn)  # who made a configuration change
        try:
            result = await handler(ctx, params)
        finally:
            history.principal.reset(token)
        status, out_headers, out_body, content_type = service.model.serialize_output(op, result)
        await send_response(send, status, out_body, content_type, request_id, out_headers)

    async def _handle_json(
        self, service: JsonService, service_name: str, scope: Scope, receive: Receive, send: Send, request_id: str,
        headers: Mapping[str, str],
    ) -> None:
        """AWS's JSON protocol (CloudWatch Logs, ...): POST /, the operation in X-Amz-Target."""
        try:
            target = headers.get("x-amz-target", "")
            prefix, _, name = target.partition(".")
            if scope["method"] != "POST" or prefix != service.target_prefix or name not in service.model.operations:
                raise JsonError("UnknownOperationException", f"Unknown operation {target}")
            op = service.model.operations[name]
            body = await _read_body(receive, headers, service.body_limit, op)
            identity = self.verifier.verify(http_request(scope, body))
            if identity.region != self.region:
                raise InvalidSignature("Credential should be scoped to a valid region. ")
            handler = service.handlers.get(name)
            if handler is None:
                raise JsonError("UnknownOperationException", f"Lamina does not implement {name} yet.")
            params = service.model.parse_input(op, {}, {}, headers, body)
            service.model.validate(op, params)
            if self.guard is not None:
                self.guard.check(service_name, identity, name, params, conditions(scope))
            ctx = RequestContext(request_id, identity, endpoint(scope, headers), headers)
            result = await handler(ctx, params)
            _, _, out_body, _ = service.model.serialize_output(op, result or {})
            await send_response(send, 200, out_body or b"{}", "application/x-amz-json-1.1", request_id)
        except ApiError as exc:
            code = exc.code
            status = 400 if exc.status < 500 else exc.status
            doc = {"__type": code, "message": exc.message}
            await send_response(send, status, json.dumps(doc).encode(), "application/x-amz-json-1.1", request_id)


async def _read_body(receive: Receive, headers: Mapping[str, str], limit: int, op: Operation) -> bytes:
    """The operation's body; AWS refuses one of ``limit`` bytes or more, hence ``limit - 1``."""

    def too_large() -> ApiError:
        if op.name == "Invoke":
            return RequestTooLarge(
                f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            )
        return BodyTooLarge(f"Request must be smaller than {limit} bytes for the {op.name} operation")

    return await read_body(receive, headers, limit - 1, too_large)


async def _send_error(send: Send, exc: ApiError, request_id: str) -> None:
    body = json.dumps(exc.body()).encode()
    extra = [(b"x-amzn-errortype", exc.code.encode())]
    retry_after = exc.fields.get("retryAfterSeconds") if exc.fields else None
    if retry_after is not None:
        extra.append((b"retry-after", str(retry_after).encode()))
    await send_response(send, exc.status, body, "application/json", request_id, extra)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
