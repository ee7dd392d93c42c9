"""Traces of the platform's own phases: X-Ray trace headers, sampling, spans, a ring of recent traces.

An invoke that is sampled (TracingConfig Active unless the caller said ``Sampled=0``;
PassThrough only when the caller said ``Sampled=1``) records one segment: a root span (the
front end of an Invoke request, or the queued event's attempt) and its phases (queue wait,
environment acquire, cold init, invoke, response). Ids are X-Ray's (trace ``1-<8 hex epoch>-
<24 hex>``, spans 16 hex) so the id a caller sent, the one the function sees in
``_X_AMZN_TRACE_ID`` and the one in the recorder are the same string. Finished segments go to
a bounded ring (the recent ones stay queryable) and to an optional exporter (OTLP).

An invoke that is not sampled costs a string comparison: nothing here is allocated for it.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

# Where the invoke being served started, set by whoever received it: ("frontend", arrival
# epoch) by the API for an Invoke request, ("queue", enqueued_at) by the async poller.
origin: ContextVar[tuple[str, float] | None] = ContextVar("lamina_trace_origin", default=None)
# A segment the API still has to finish once the response is written (its "lamina.response").
pending: ContextVar[TraceBuilder | None] = ContextVar("lamina_trace_pending", default=None)


@dataclass(frozen=True)
class TraceHeader:
    """The parts of an X-Amzn-Trace-Id header Lamina acts on (others are dropped)."""

    root: str
    parent: str | None = None
    sampled: bool | None = None  # None: the caller left the decision to us

    def encode(self) -> str:
        parts = [f"Root={self.root}"]
        if self.parent:
            parts.append(f"Parent={self.parent}")
        if self.sampled is not None:
            parts.append(f"Sampled={1 if self.sampled else 0}")
        return ";".join(parts)


def new_root(now: float | None = None) -> str:
    return f"1-{int(time.time() if now is None else now):08x}-{secrets.token_hex(12)}"


def new_span_id() -> str:
    return secrets.token_hex(8)


def _valid_root(root: str) -> bool:
    parts = root.split("-")
    if len(parts) != 3 or parts[0] != "1" or len(parts[1]) != 8 or len(parts[2]) != 24:
        return False
    try:
        int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return False
    return True


def parse_header(value: str | None) -> TraceHeader | None:
    """``Root=1-...;Parent=...;Sampled=1`` → TraceHeader; None when there is no valid Root."""
    if not value:
        return None
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key.strip()] = val.strip()
    root = fields.get("Root", "")
    if not _valid_root(root):
        return None
    sampled = {"1": True, "0": False}.get(fields.get("Sampled", ""))
    parent = fields.get("Parent") or None
    return TraceHeader(root=root, parent=parent, sampled=sampled)


def should_sample(mode: str, header: TraceHeader | None) -> bool:
    """Active samples unless told Sampled=0; PassThrough only follows an upstream Sampled=1."""
    told = header.sampled if header is not None else None
    if mode == "Active":
        return told is not False
    return told is True


@dataclass(frozen=True)
class Span:
    trace_id: str  # X-Ray form, 1-xxxxxxxx-yyyy...
    span_id: str
    parent_id: str | None
    name: str
    start: float  # epoch seconds
    end: float
    attributes: tuple[tuple[str, str], ...] = ()
    error: bool = False

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "TraceId": self.trace_id, "Id": self.span_id, "Name": self.name,
            "StartTime": self.start, "EndTime": self.end,
            "Duration": round(self.end - self.start, 6), "Attributes": dict(self.attributes),
        }
        if self.parent_id is not None:
            doc["ParentId"] = self.parent_id
        if self.error:
            doc["Error"] = True
        return doc


@dataclass
class TraceBuilder:
    """One segment while it runs: a root span opened at ``start`` and its child phases."""

    recorder: TraceRecorder
    trace_id: str
    name: str
    start: float
    parent_id: str | None = None  # the caller's Parent, when it sent one
    attributes: dict[str, str] = field(default_factory=dict)
    root_id: str = field(default_factory=new_span_id)
    spans: list[Span] = field(default_factory=list)
    response_from: float | None = None  # set when the API writes the response after us
    finished: bool = False

    def span(
        self, name: str, start: float, end: float, parent: str | None = None, **attributes: str
    ) -> str:
        """Records a closed span (under the root unless ``parent``); returns its id."""
        span_id = new_span_id()
        self.spans.append(Span(
            self.trace_id, span_id, parent or self.root_id, name, start, max(start, end),
            tuple(sorted(attributes.items())),
        ))
        return span_id

    @contextmanager
    def timed(self, name: str, parent: str | None = None, **attributes: str) -> Iterator[str]:
        """Records the enclosed block as span ``name`` (closed even when it raises)."""
        span_id = new_span_id()
        started = time.time()
        failed = False
        try:
            yield span_id
        except BaseException:
            failed = True
            raise
        finally:
            self.spans.append(Span(
                self.trace_id, span_id, parent or self.root_id, name, started, time.time(),
                tuple(sorted(attributes.items())), failed,
            ))

    def finish(self, end: float, error: bool = False) -> None:
        """Closes the root (and the response phase, if the API wrote one) and publishes."""
        if self.finished:
            return
        self.finished = True
        if self.response_from is not None:
            self.span("lamina.response", self.response_from, end)
        root = Span(
            self.trace_id, self.root_id, self.parent_id, self.name, self.start, max(self.start, end),
            tuple(sorted(self.attributes.items())), error,
        )
        self.recorder.publish([root, *self.spans])


Exporter = Callable[[Sequence[Span]], None]


class TraceRecorder:
    """The most recent ``capacity`` traces in memory (oldest evicted first), plus an exporter."""

    def __init__(self, capacity: int = 1000, exporter: Exporter | None = None) -> None:
        self.capacity = capacity
        self.exporter = exporter
        self._traces: OrderedDict[str, list[Span]] = OrderedDict()

    def begin(
        self, trace_id: str, name: str, start: float, parent_id: str | None = None, **attributes: str
    ) -> TraceBuilder:
        return TraceBuilder(self, trace_id, name, start, parent_id, dict(attributes))

    def publish(self, spans: Sequence[Span]) -> None:
        """Adds a finished segment; segments with the same trace id join one trace."""
        if not spans:
            return
        trace_id = spans[0].trace_id
        entry = self._traces.pop(trace_id, None) or []
        entry.extend(spans)
        self._traces[trace_id] = entry
        while len(self._traces) > self.capacity:
            self._traces.popitem(last=False)
        if self.exporter is not None:
            self.exporter(spans)

    def get(self, trace_id: str) -> list[Span] | None:
        spans = self._traces.get(trace_id)
        return sorted(spans, key=lambda s: (s.start, s.parent_id is not None)) if spans else None

    def summaries(self, limit: int = 100, function: str | None = None) -> list[dict[str, Any]]:
        """Newest first: one line per trace (its roots' names, span count, time range)."""
        out: list[dict[str, Any]] = []
        for trace_id, spans in reversed(self._traces.items()):
            roots = [s for s in spans if s.parent_id is None or s.parent_id not in {x.span_id for x in spans}]
            functions = sorted({v for s in roots for k, v in s.attributes if k == "function"})
            if function is not None and function not in functions:
                continue
            start, end = min(s.start for s in spans), max(s.end for s in spans)
            out.append({
                "Id": trace_id, "Functions": functions, "Segments": [s.name for s in roots],
                "StartTime": start, "Duration": round(end - start, 6), "Spans": len(spans),
                "HasError": any(s.error for s in spans),
            })
            if len(out) >= limit:
                break
        return out
