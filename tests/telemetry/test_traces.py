"""Trace headers, sampling rules, the span recorder and the OTLP/HTTP JSON exporter."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from lamina.telemetry import otlp, traces
from lamina.telemetry.traces import Span, TraceHeader, TraceRecorder

ROOT = "1-5759e988-bd862e3fe1be46a994272793"


def test_parse_header_keeps_root_parent_and_sampled() -> None:
    header = traces.parse_header(f"Root={ROOT}; Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a:0")
    assert header == TraceHeader(ROOT, "53995c3f42cd8ad8", True)
    assert traces.parse_header(f"Root={ROOT}") == TraceHeader(ROOT, None, None)
    assert traces.parse_header(f"Root={ROOT};Sampled=0") == TraceHeader(ROOT, None, False)
    assert header is not None and header.encode() == f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.mark.parametrize("value", [None, "", "Sampled=1", "Root=2-5759e988-bd862e3fe1be46a994272793",
                                   "Root=1-5759e988-short", "Root=1-zzzzzzzz-bd862e3fe1be46a994272793"])
def test_parse_header_rejects_missing_or_malformed_roots(value: str | None) -> None:
    assert traces.parse_header(value) is None


def test_new_ids_have_xray_shapes() -> None:
    root = traces.new_root(now=0x5759E988)
    assert root.startswith("1-5759e988-") and len(root) == 35
    assert traces.parse_header(f"Root={root}") is not None
    assert len(traces.new_span_id()) == 16


@pytest.mark.parametrize(
    ("mode", "sampled", "expected"),
    [("Active", None, True), ("Active", True, True), ("Active", False, False),
     ("PassThrough", None, False), ("PassThrough", True, True), ("PassThrough", False, False)],
)
def test_sampling_follows_tracing_mode(mode: str, sampled: bool | None, expected: bool) -> None:
    assert traces.should_sample(mode, TraceHeader(ROOT, None, sampled)) is expected


def test_sampling_without_header() -> None:
    assert traces.should_sample("Active", None) is True
    assert traces.should_sample("PassThrough", None) is False


def test_segment_nests_phases_under_its_root_and_closes_response() -> None:
    recorder = TraceRecorder()
    segment = recorder.begin(ROOT, "lamina.frontend", 10.0, "aaaaaaaaaaaaaaaa", function="f")
    acquire = segment.span("lamina.acquire", 10.1, 10.3)
    segment.span("lamina.init", 10.2, 10.3, acquire)
    segment.span("lamina.invoke", 10.3, 10.5, function_error="Unhandled")
    segment.response_from = 10.5
    assert recorder.get(ROOT) is None  # nothing is visible before the segment finishes
    segment.finish(10.6)
    segment.finish(99.0)  # finishing twice publishes once
    spans = recorder.get(ROOT)
    assert spans is not None
    named = {s.name: s for s in spans}
    assert len(spans) == 5
    root = named["lamina.frontend"]
    assert root.parent_id == "aaaaaaaaaaaaaaaa" and (root.start, root.end) == (10.0, 10.6)
    assert named["lamina.init"].parent_id == acquire == named["lamina.acquire"].span_id
    assert named["lamina.response"].parent_id == root.span_id
    assert (named["lamina.response"].start, named["lamina.response"].end) == (10.5, 10.6)
    assert dict(named["lamina.invoke"].attributes) == {"function_error": "Unhandled"}
    assert named["lamina.invoke"].to_json()["Duration"] == pytest.approx(0.2)


def test_timed_span_records_errors() -> None:
    recorder = TraceRecorder()
    segment = recorder.begin(ROOT, "lamina.invocation", 1.0)
    with pytest.raises(RuntimeError), segment.timed("lamina.work"):
        raise RuntimeError("boom")
    segment.finish(2.0, error=True)
    spans = recorder.get(ROOT) or []
    assert [s.error for s in spans] == [True, True]


def test_ring_evicts_oldest_and_joins_segments_of_one_trace() -> None:
    recorder = TraceRecorder(capacity=2)
    ids = [f"1-5759e988-{i:024x}" for i in range(3)]
    for i, trace_id in enumerate(ids):
        recorder.begin(trace_id, "lamina.frontend", float(i), function="f" if i else "g").finish(i + 0.5)
    assert recorder.get(ids[0]) is None
    recorder.begin(ids[1], "lamina.event", 5.0, function="f").finish(6.0)
    assert [s.name for s in recorder.get(ids[1]) or []] == ["lamina.frontend", "lamina.event"]
    summaries = recorder.summaries()
    assert [s["Id"] for s in summaries] == [ids[1], ids[2]]  # newest (last touched) first
    assert summaries[0]["Segments"] == ["lamina.frontend", "lamina.event"]
    assert summaries[0]["Duration"] == pytest.approx(5.0)
    assert recorder.summaries(function="g") == []
    assert [s["Id"] for s in recorder.summaries(limit=1)] == [ids[1]]


def test_recorder_hands_finished_segments_to_the_exporter() -> None:
    exported: list[Span] = []
    recorder = TraceRecorder(exporter=exported.extend)
    recorder.begin(ROOT, "lamina.invocation", 1.0).finish(2.0)
    assert [s.name for s in exported] == ["lamina.invocation"]


def test_endpoint_from_env_prefers_the_traces_variable() -> None:
    assert otlp.endpoint_from_env({}) is None
    assert otlp.endpoint_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == "http://c:4318/v1/traces"
    assert otlp.endpoint_from_env({
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x",
    }) == "http://t/x"


def test_encode_is_otlp_json() -> None:
    root = Span(ROOT, "53995c3f42cd8ad8", None, "lamina.frontend", 1.5, 2.0, (("function", "f"),))
    child = Span(ROOT, "0123456789abcdef", root.span_id, "lamina.invoke", 1.6, 1.9, (), True)
    doc = json.loads(otlp.encode([root, child]))
    resource = doc["resourceSpans"][0]
    assert resource["resource"]["attributes"] == [{"key": "service.name", "value": {"stringValue": "lamina"}}]
    first, second = resource["scopeSpans"][0]["spans"]
    assert first["traceId"] == "5759e988bd862e3fe1be46a994272793"
    assert first["startTimeUnixNano"] == "1500000000" and first["kind"] == otlp.SPAN_KIND_SERVER
    assert first["attributes"] == [{"key": "function", "value": {"stringValue": "f"}}]
    assert "parentSpanId" not in first
    assert second["parentSpanId"] == "53995c3f42cd8ad8" and second["status"] == {"code": otlp.STATUS_ERROR}


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    received: list[tuple[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/traces", received
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_exporter_posts_batches_and_drops_when_full(collector: tuple[str, list[tuple[str, Any]]]) -> None:
    url, received = collector
    exporter = otlp.OtlpExporter(url, max_buffer=3, batch_size=2, interval=0.01)
    spans = [Span(ROOT, f"{i:016x}", None, f"s{i}", 1.0, 2.0) for i in range(5)]
    exporter.offer(spans)
    assert exporter.dropped == 2

    async def scenario() -> None:
        task = asyncio.create_task(exporter.run())
        for _ in range(200):
            if exporter.exported == 3:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert exporter.exported == 3 and exporter.failed == 0
    assert [path for path, _ in received] == ["/v1/traces", "/v1/traces"]
    names = [s["name"] for _, doc in received for s in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    assert names == ["s0", "s1", "s2"]


def test_exporter_counts_failed_posts() -> None:
    exporter = otlp.OtlpExporter("http://127.0.0.1:9/v1/traces", timeout=1.0)  # discard port: refused
    exporter.offer([Span(ROOT, "0" * 16, None, "s", 1.0, 2.0)])
    asyncio.run(exporter.flush())
    assert exporter.failed == 1 and exporter.exported == 0
