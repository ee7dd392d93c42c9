"""OpenTelemetry export of recorded spans: OTLP/HTTP with the JSON encoding, no new dependency.

``offer`` only appends to a bounded buffer (spans beyond it are dropped and counted), so the
invoke path never waits on a collector; ``run`` posts batches from a background task, the
blocking urllib call in a thread. The endpoint comes from the standard variables:
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from lamina.telemetry.traces import Span

log = logging.getLogger(__name__)

SPAN_KIND_INTERNAL = 1
SPAN_KIND_SERVER = 2
STATUS_ERROR = 2


def endpoint_from_env(environ: Mapping[str, str]) -> str | None:
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None


def otel_trace_id(xray_id: str) -> str:
    """X-Ray's 1-5759e988-bd862e3fe1be46a994272793 is OTel's 5759e988bd862e3fe1be46a994272793."""
    return xray_id[2:].replace("-", "") if xray_id.startswith("1-") else xray_id


def encode(spans: Sequence[Span], service_name: str = "lamina") -> bytes:
    """An ExportTraceServiceRequest in OTLP's JSON encoding (hex ids, nanoseconds as strings)."""
    out: list[dict[str, Any]] = []
    for span in spans:
        doc: dict[str, Any] = {
            "traceId": otel_trace_id(span.trace_id),
            "spanId": span.span_id,
            "name": span.name,
            "kind": SPAN_KIND_SERVER if span.parent_id is None else SPAN_KIND_INTERNAL,
            "startTimeUnixNano": str(int(span.start * 1e9)),
            "endTimeUnixNano": str(int(span.end * 1e9)),
            "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in span.attributes],
        }
        if span.parent_id is not None:
            doc["parentSpanId"] = span.parent_id
        if span.error:
            doc["status"] = {"code": STATUS_ERROR}
        out.append(doc)
    request = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service_name}}]},
        "scopeSpans": [{"scope": {"name": "lamina"}, "spans": out}],
    }]}
    return json.dumps(request, separators=(",", ":")).encode()


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return int(resp.status)


class OtlpExporter:
    def __init__(
        self, url: str, *, max_buffer: int = 8192, batch_size: int = 512, interval: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.interval = interval
        self.timeout = timeout
        self.dropped = 0  # spans that found the buffer full
        self.failed = 0  # spans whose POST failed (not retried: traces are best effort)
        self.exported = 0
        self._buffer: deque[Span] = deque()
        self._wake = asyncio.Event()

    def offer(self, spans: Sequence[Span]) -> None:
        """Buffers ``spans`` for the next batch; never blocks (a full buffer drops them)."""
        room = self.max_buffer - len(self._buffer)
        if room < len(spans):
            self.dropped += len(spans) - max(room, 0)
            spans = spans[: max(room, 0)]
        self._buffer.extend(spans)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    async def flush(self) -> None:
        """Posts everything buffered now, batch by batch."""
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            try:
                await asyncio.to_thread(_post, self.url, encode(batch), self.timeout)
                self.exported += len(batch)
            except (OSError, urllib.error.URLError, ValueError) as exc:
                self.failed += len(batch)
                log.warning("OTLP export to %s failed: %s", self.url, exc)

    async def run(self) -> None:
        """The background task: a batch every ``interval`` (sooner when one fills); flushes on cancel."""
        try:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.interval)
                except TimeoutError:
                    pass
                self._wake.clear()
                await self.flush()
        except asyncio.CancelledError:
            await asyncio.shield(self.flush())
            raise
