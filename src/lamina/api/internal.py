"""Lamina's own routes under ``/_lamina/``: health, code and layer downloads, metrics,
configuration history and traces.

None of them speaks an AWS protocol. Health and metrics are unauthenticated (a load
balancer's probe, a Prometheus scrape); downloads carry their own presigned signature
(:mod:`lamina.api.downloads`); history and traces are SigV4-signed by an administrator.
Calls relayed from inside sandboxes are refused every platform route but health and
downloads, whatever credentials they hold.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

from lamina.api import sigv4
from lamina.api.http import Receive, Scope, Send, check_scope, http_request, send_response
from lamina.api.wire import header_map, parse_query
from lamina.errors import AccessDenied, MissingAuthenticationToken, ResourceNotFound
from lamina.telemetry import traces
from lamina.telemetry.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE


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


@dataclass(frozen=True)
class InternalRoutes:
    """Everything ``App`` hands over for a path under ``/_lamina/``."""

    verifier: sigv4.Verifier
    region: str
    code_download: Callable[[sigv4.HttpRequest], Awaitable[bytes]]
    ready: Callable[[], bool]
    status: Callable[[], dict[str, Any]]
    observability: Observability | None
    # Client (host, port) pairs of calls relayed from inside sandboxes: the platform's own
    # routes (metrics, history, traces) are not theirs to read, whatever credentials they hold.
    sandbox_peers: Container[tuple[str, int]]

    async def handle(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        path: str = scope["path"]
        if path == "/_lamina/health" and scope["method"] in ("GET", "HEAD"):
            ok = self.ready()
            body = json.dumps({"status": "ok" if ok else "starting", **self.status()}).encode()
            await send_response(send, 200 if ok else 503, body, "application/json", request_id)
            return
        if path.startswith(("/_lamina/code/", "/_lamina/layer/")) and scope["method"] == "GET":
            data = await self.code_download(http_request(scope, b""))
            await send_response(send, 200, data, "application/zip", request_id)
            return
        if self.observability is not None and scope["method"] == "GET":
            client = scope.get("client")
            if client and (client[0], client[1]) in self.sandbox_peers:
                raise AccessDenied("Lamina's platform routes cannot be reached from inside a function.")
            if path == "/_lamina/metrics":
                body = await self.observability.metrics()
                await send_response(send, 200, body, METRICS_CONTENT_TYPE, request_id)
                return
            if path.startswith("/_lamina/history/"):
                await self._history(scope, send, request_id, self.observability)
                return
            if path == "/_lamina/traces" or path.startswith("/_lamina/traces/"):
                await self._traces(scope, send, request_id, self.observability)
                return
        await send_response(send, 404, b'{"message":"Not Found"}', "application/json", request_id)

    async def _history(self, scope: Scope, send: Send, request_id: str, obs: Observability) -> None:
        """GET /_lamina/history/<function>?Marker=&MaxItems=, signed by an administrator."""
        self._admin(scope, obs, "configuration history")
        function = scope["path"][len("/_lamina/history/"):]
        query = {k: v[0] for k, v in parse_query(scope.get("query_string", b"")).items() if v}
        doc = obs.history(function, query)
        await send_response(send, 200, json.dumps(doc).encode(), "application/json", request_id)

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
        await send_response(send, 200, json.dumps(doc).encode(), "application/json", request_id)

    def _admin(self, scope: Scope, obs: Observability, what: str) -> None:
        """Verifies a SigV4-signed GET (scope service lambda) by one of ``obs.admins``."""
        raw_query: bytes = scope.get("query_string", b"")
        if "authorization" not in header_map(scope["headers"]) and "X-Amz-Signature" not in parse_query(raw_query):
            raise MissingAuthenticationToken("Missing Authentication Token")
        identity = self.verifier.verify(http_request(scope, b""))
        check_scope(identity, self.region, "lambda")
        if identity.principal_arn not in obs.admins:
            raise AccessDenied(f"{identity.principal_arn} is not authorized to read {what}")
