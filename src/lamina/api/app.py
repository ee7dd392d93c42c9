"""The ASGI application: one port for every AWS service Lamina speaks.

A request goes: health/code-download routes (no SigV4) → the Authorization header must be
present → the credential scope's service picks the protocol → the route picks the operation
→ the body is read up to the operation's limit (413 before buffering more) → SigV4 is
verified over the exact bytes → the input is parsed and checked against the model → the
handler runs → the output is serialized by the model. Every error becomes AWS's error shape
here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lamina.api import sigv4
from lamina.api.guard import Guard
from lamina.api.query import QueryService, parse_form
from lamina.api.wire import Operation, ServiceModel, header_map, parse_query
from lamina.errors import (
    AccessDenied,
    ApiError,
    IamError,
    InvalidSignature,
    LaminaError,
    MissingAuthenticationToken,
    NotImplementedOperation,
    RequestTooLarge,
    ResourceNotFound,
    ServiceError,
)
from lamina.telemetry import history, traces
from lamina.telemetry.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    identity: sigv4.Identity
    endpoint: str  # scheme://host[:port] the client used, for URLs we hand back
    headers: Mapping[str, str]


Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[dict[str, Any] | None]]


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


@dataclass(frozen=True)
class Observability:
    """The /_lamina/metrics and /_lamina/history/<function> routes.

    History is SigV4-signed like any Lambda call (scope service "lambda", so curl --aws-sigv4
    or botocore's signer work) and answered only for ``admins``: it names principals and shows
    configurations. Metrics follow Prometheus's convention of an unauthenticated scrape; they
    name functions and counts, nothing more, and the server listens on loopback."""

    metrics: Callable[[], Awaitable[bytes]]
    history: Callable[[str, Mapping[str, str]], dict[str, Any]]
    admins: frozenset[str]
    # GET /_lamina/traces[/<trace id>]: signed by an admin like history (spans name functions).
    tracer: traces.TraceRecorder | None = None


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
        sandbox_sources: frozenset[str] = frozenset(),
    ) -> None:
        self.guard = guard
        # Client addresses of calls relayed from inside sandboxes: the platform's own routes
        # (metrics, history, traces) are not theirs to read, whatever credentials they hold.
        self.sandbox_sources = sandbox_sources
        self.query_services = dict(query_services or {})
        self.observability = observability
        self.json_services = dict(json_services or {})
        self.region = region
        self.verifier = verifier
        self.lambda_service = lambda_service
        self.code_download = code_download
        self.ready = ready
        self.status = status

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
        except LaminaError:
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
            await self._internal(scope, receive, send, request_id)
            return
        headers = header_map(scope["headers"])
        raw_query: bytes = scope.get("query_string", b"")
        query = parse_query(raw_query)
        if "authorization" not in headers and "X-Amz-Signature" not in query:
            raise MissingAuthenticationToken("Missing Authentication Token")
        scoped = sigv4.scope_service(
            sigv4.HttpRequest(
                method=method,
                raw_path=path,
                query_string=raw_query.decode("latin-1"),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                body=b"",
            )
        )
        json_service = self.json_services.get(scoped or "")
        if json_service is not None:
            await self._handle_json(json_service, scoped or "", scope, receive, send, request_id, headers)
            return
        query_service = self.query_services.get(scoped or "")
        if query_service is not None:
            await self._handle_query(query_service, scoped or "", scope, receive, send, request_id, headers)
            return
        service = self.lambda_service
        op, path_params = service.model.route(method, path, query)
        if op.name == "Invoke":
            traces.origin.set(("frontend", scope["lamina.arrived"]))
        limit = service.body_limits.get(op.name, service.default_body_limit)
        body = await _read_body(receive, headers, limit, op)
        request = sigv4.HttpRequest(
            method=method,
            raw_path=(scope.get("raw_path") or path.encode()).decode("latin-1"),
            query_string=raw_query.decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            body=body,
        )
        identity = self.verifier.verify(request)
        if identity.region != self.region:
            raise InvalidSignature("Credential should be scoped to a valid region. ")
        if identity.service != "lambda":
            raise InvalidSignature("Credential should be scoped to correct service: 'lambda'. ")
        handler = service.handlers.get(op.name)
        if handler is None:
            raise NotImplementedOperation(f"Lamina does not implement {op.name} yet.")
        params = service.model.parse_input(op, path_params, query, headers, body)
        service.model.validate(op, params)
        if self.guard is not None:
            self.guard.check("lambda", identity, op.name, params, _conditions(scope))
        ctx = RequestContext(request_id, identity, _endpoint(scope, headers), headers)
        token = history.principal.set(identity.principal_arn)  # who made a configuration change
        try:
            result = await handler(ctx, params)
        finally:
            history.principal.reset(token)
        status, out_headers, out_body, content_type = service.model.serialize_output(op, result)
        await _send(send, status, out_body, content_type, request_id, out_headers)

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
            request = sigv4.HttpRequest(
                method="POST",
                raw_path=(scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
                query_string=scope.get("query_string", b"").decode("latin-1"),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                body=body,
            )
            identity = self.verifier.verify(request)
            if identity.region != self.region:
                raise InvalidSignature("Credential should be scoped to a valid region. ")
            handler = service.handlers.get(name)
            if handler is None:
                raise JsonError("UnknownOperationException", f"Lamina does not implement {name} yet.")
            params = service.model.parse_input(op, {}, {}, headers, body)
            service.model.validate(op, params)
            if self.guard is not None:
                self.guard.check(service_name, identity, name, params, _conditions(scope))
            ctx = RequestContext(request_id, identity, _endpoint(scope, headers), headers)
            result = await handler(ctx, params)
            _, _, out_body, _ = service.model.serialize_output(op, result or {})
            await _send(send, 200, out_body or b"{}", "application/x-amz-json-1.1", request_id)
        except ApiError as exc:
            code = exc.code
            status = 400 if exc.status < 500 else exc.status
            doc = {"__type": code, "message": exc.message}
            await _send(send, status, json.dumps(doc).encode(), "application/x-amz-json-1.1", request_id)

    async def _handle_query(
        self, service: QueryService, service_name: str, scope: Scope, receive: Receive, send: Send,
        request_id: str, headers: Mapping[str, str],
    ) -> None:
        """AWS's query protocol (IAM, STS): Action and parameters form-encoded, XML answers."""
        model = service.model
        try:
            raw_query: bytes = scope.get("query_string", b"")
            body = await _read_query_body(receive, headers, service.body_limit)
            request = sigv4.HttpRequest(
                method=scope["method"],
                raw_path=(scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
                query_string=raw_query.decode("latin-1"),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                body=body,
            )
            identity = self.verifier.verify(request)
            # IAM is global: AWS's own endpoint is signed for us-east-1; a client given Lamina's
            # endpoint signs with its configured region, which must be Lamina's like for Lambda.
            if identity.region not in (self.region, "us-east-1"):
                raise InvalidSignature("Credential should be scoped to a valid region. ")
            form = parse_form(body) if scope["method"] == "POST" else parse_form(raw_query)
            name, params = model.parse(form)
            handler = service.handlers.get(name)
            if handler is None:
                raise IamError("InvalidAction", f"Lamina does not implement {name} yet.", 400)
            model.validate(name, params)
            if self.guard is not None:
                self.guard.check(service_name, identity, name, params, _conditions(scope))
            ctx = RequestContext(request_id, identity, _endpoint(scope, headers), headers)
            result = await handler(ctx, params)
            await _send(send, 200, model.serialize(name, result, request_id), "text/xml", request_id)
        except ApiError as exc:
            status = exc.status if exc.status < 500 else 500
            await _send(send, status, model.error(exc, request_id), "text/xml", request_id)

    async def _internal(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        path: str = scope["path"]
        if path == "/_lamina/health" and scope["method"] in ("GET", "HEAD"):
            ok = self.ready()
            body = json.dumps({"status": "ok" if ok else "starting", **self.status()}).encode()
            await _send(send, 200 if ok else 503, body, "application/json", request_id)
            return
        if path.startswith(("/_lamina/code/", "/_lamina/layer/")) and scope["method"] == "GET":
            request = sigv4.HttpRequest(
                method="GET",
                raw_path=(scope.get("raw_path") or path.encode()).decode("latin-1"),
                query_string=scope.get("query_string", b"").decode("latin-1"),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                body=b"",
            )
            data = await self.code_download(request)
            await _send(send, 200, data, "application/zip", request_id)
            return
        if self.observability is not None and scope["method"] == "GET":
            client = scope.get("client")
            if client and client[0] in self.sandbox_sources:
                raise AccessDenied("Lamina's platform routes cannot be reached from inside a function.")
            if path == "/_lamina/metrics":
                body = await self.observability.metrics()
                await _send(send, 200, body, METRICS_CONTENT_TYPE, request_id)
                return
            if path.startswith("/_lamina/history/"):
                await self._history(scope, send, request_id, self.observability)
                return
            if path == "/_lamina/traces" or path.startswith("/_lamina/traces/"):
                await self._traces(scope, send, request_id, self.observability)
                return
        await _send(send, 404, b'{"message":"Not Found"}', "application/json", request_id)

    async def _history(self, scope: Scope, send: Send, request_id: str, obs: Observability) -> None:
        """GET /_lamina/history/<function>?Marker=&MaxItems=, signed by an administrator."""
        self._admin(scope, obs, "configuration history")
        function = scope["path"][len("/_lamina/history/"):]
        query = {k: v[0] for k, v in parse_query(scope.get("query_string", b"")).items() if v}
        doc = obs.history(function, query)
        await _send(send, 200, json.dumps(doc).encode(), "application/json", request_id)

    async def _traces(self, scope: Scope, send: Send, request_id: str, obs: Observability) -> None:
        """GET /_lamina/traces?MaxItems=&FunctionName= (summaries, newest first) or
        /_lamina/traces/<trace id> (its spans), signed by an administrator."""
        self._admin(scope, obs, "traces")
        recorder = obs.tracer
        trace_id = scope["path"][len("/_lamina/traces/"):] if scope["path"] != "/_lamina/traces" else ""
        if trace_id:
            spans = recorder.get(trace_id) if recorder is not None else None
            if spans is None:
                raise ResourceNotFound(f"Trace not found: {trace_id}")
            doc: dict[str, Any] = {"Id": trace_id, "Spans": [s.to_json() for s in spans]}
        else:
            query = {k: v[0] for k, v in parse_query(scope.get("query_string", b"")).items() if v}
            limit = query.get("MaxItems", "100")
            count = min(int(limit), 1000) if limit.isdigit() else 100
            found = recorder.summaries(count, query.get("FunctionName")) if recorder is not None else []
            doc = {"TraceSummaries": found}
        await _send(send, 200, json.dumps(doc).encode(), "application/json", request_id)

    def _admin(self, scope: Scope, obs: Observability, what: str) -> None:
        """Verifies a SigV4-signed GET (scope service lambda) by one of ``obs.admins``."""
        raw_query: bytes = scope.get("query_string", b"")
        if "authorization" not in header_map(scope["headers"]) and "X-Amz-Signature" not in parse_query(raw_query):
            raise MissingAuthenticationToken("Missing Authentication Token")
        request = sigv4.HttpRequest(
            method="GET",
            raw_path=(scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
            query_string=raw_query.decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            body=b"",
        )
        identity = self.verifier.verify(request)
        if identity.region != self.region:
            raise InvalidSignature("Credential should be scoped to a valid region. ")
        if identity.service != "lambda":
            raise InvalidSignature("Credential should be scoped to correct service: 'lambda'. ")
        if identity.principal_arn not in obs.admins:
            raise AccessDenied(f"{identity.principal_arn} is not authorized to read {what}")


async def _read_body(receive: Receive, headers: Mapping[str, str], limit: int, op: Operation) -> bytes:
    def too_large() -> ApiError:
        if op.name == "Invoke":
            return RequestTooLarge(
                f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            )
        return BodyTooLarge(f"Request must be smaller than {limit} bytes for the {op.name} operation")

    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) >= limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size >= limit:
            raise too_large()
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _read_query_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise IamError("RequestEntityTooLarge", f"Request must be smaller than {limit} bytes", 413)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise IamError("RequestEntityTooLarge", f"Request must be smaller than {limit} bytes", 413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _conditions(scope: Scope) -> dict[str, str]:
    """The global condition keys a request carries (aws:SecureTransport, aws:SourceIp)."""
    client = scope.get("client")
    context = {"aws:SecureTransport": "true" if scope.get("scheme") == "https" else "false"}
    if client:
        context["aws:SourceIp"] = str(client[0])
    return context


def _endpoint(scope: Scope, headers: Mapping[str, str]) -> str:
    scheme = scope.get("scheme", "http")
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}"


async def _send(
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


async def _send_error(send: Send, exc: ApiError, request_id: str) -> None:
    body = json.dumps(exc.body()).encode()
    extra = [(b"x-amzn-errortype", exc.code.encode())]
    retry_after = exc.fields.get("retryAfterSeconds") if exc.fields else None
    if retry_after is not None:
        extra.append((b"retry-after", str(retry_after).encode()))
    await _send(send, exc.status, body, "application/json", request_id, extra)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
