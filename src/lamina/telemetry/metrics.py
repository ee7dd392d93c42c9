"""Lambda's metric set, served as Prometheus text exposition (format 0.0.4) on /_lamina/metrics.

The metrics mirror CloudWatch's AWS/Lambda namespace (Invocations, Errors, Throttles, Duration,
ConcurrentExecutions, plus cold starts and the async AsyncEventAge / dead-letter counts),
labelled by ``function`` and ``version``. For invokes ``version`` is the version that ran
($LATEST or a number); async metrics are labelled with the qualifier the caller used, since
an event is counted before (or without) a version being picked.

Why not ``prometheus_client``: everything here runs on one event loop, so the library's
per-sample locks buy nothing on the hot path; its default registry is process-global (tests
run several servers in one process) and its ``*_created`` series are switched off only by a
process-wide flag; and the queue-depth gauge is read from the event database at scrape time,
which wants an ``await`` the library's synchronous collectors cannot make. The text format is
small and stable, so writing it is less code than adapting the library.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

from lamina.errors import StoreError, TooManyRequests

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = tuple[str, ...]
FUNCTION_VERSION = ("function", "version")
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)
# (function, qualifier, state) -> events: ready and leased events of the durable queue.
DepthSource = Callable[[], Awaitable[Mapping[Labels, int]]]


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _selector(names: Labels, values: Labels, extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


class Counter:
    """A monotonically increasing value per label set (plain dict: one event loop, no locks)."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Labels = FUNCTION_VERSION) -> None:
        self.name, self.help, self.labelnames = name, help_text, labelnames
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def value(self, labels: Labels) -> float:
        return self.values.get(labels, 0.0)

    def lines(self) -> Iterator[str]:
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_selector(self.labelnames, labels)} {_number(value)}"


class Gauge(Counter):
    kind = "gauge"

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = value


class Histogram:
    """Cumulative buckets (``le``), ``_sum`` and ``_count`` per label set."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, buckets: tuple[float, ...], labelnames: Labels = FUNCTION_VERSION
    ) -> None:
        self.name, self.help, self.labelnames = name, help_text, labelnames
        self.buckets = tuple(sorted(buckets))
        # Per label set: observations per bucket (the last one is +Inf), then the sum.
        self.series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = ([0] * (len(self.buckets) + 1), [0.0])
        series[0][bisect_left(self.buckets, value)] += 1
        series[1][0] += value

    def count(self, labels: Labels) -> int:
        series = self.series.get(labels)
        return sum(series[0]) if series else 0

    def lines(self) -> Iterator[str]:
        for labels, (counts, total) in sorted(self.series.items()):
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_selector(self.labelnames, labels, le)} {running}"
            yield f"{self.name}_sum{_selector(self.labelnames, labels)} {_number(total[0])}"
            yield f"{self.name}_count{_selector(self.labelnames, labels)} {running}"


class InvokeProbe:
    """One synchronous attempt, as a context manager around the concurrency lease and the run.

    Entering counts the attempt as a concurrent execution; a TooManyRequests leaving the block
    is a throttle (not an invocation, as on AWS); ``ran`` records what the environment did.
    An attempt that fails in the platform before the function ran counts nowhere, like
    Lambda's Invocations, which exclude invocation errors."""

    __slots__ = ("_metrics", "_labels", "_ran")

    def __init__(self, metrics: LambdaMetrics, labels: Labels) -> None:
        self._metrics, self._labels = metrics, labels
        self._ran: tuple[bool, float, bool] | None = None

    def ran(self, *, cold: bool, duration_ms: float, error: bool) -> None:
        self._ran = (cold, duration_ms, error)

    def __enter__(self) -> InvokeProbe:
        self._metrics.concurrent.inc(self._labels)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        m, labels = self._metrics, self._labels
        m.concurrent.inc(labels, -1.0)
        if exc_type is not None and issubclass(exc_type, TooManyRequests):
            m.throttles.inc(labels)
        if self._ran is None:
            return
        cold, duration_ms, error = self._ran
        m.invocations.inc(labels)
        m.duration.observe(labels, duration_ms / 1000.0)
        if error:
            m.errors.inc(labels)
        if cold:
            m.cold_starts.inc(labels)


class LambdaMetrics:
    """The platform's metrics; one instance per server, shared by the invoke path and poller."""

    def __init__(self, queue_depth: DepthSource | None = None) -> None:
        self.invocations = Counter("lamina_invocations_total", "Invocations that ran function code (errors included).")
        self.errors = Counter("lamina_errors_total", "Invocations that ended in a function error.")
        self.throttles = Counter("lamina_throttles_total", "Invoke attempts refused for lack of concurrency (429).")
        self.duration = Histogram("lamina_duration_seconds", "Time the function code ran.", DURATION_BUCKETS)
        self.concurrent = Gauge("lamina_concurrent_executions", "Invocations in flight.")
        self.cold_starts = Counter("lamina_cold_starts_total", "Invocations that initialised a new environment.")
        self.events_received = Counter("lamina_async_events_received_total", "Event invokes durably queued.")
        self.event_age = Histogram(
            "lamina_async_event_age_seconds", "Age of an event when an attempt to run it starts.", AGE_BUCKETS
        )
        self.dead_lettered = Counter(
            "lamina_dead_lettered_total", "Events that ran out of retries or age without a destination taking them."
        )
        self.queue_depth = Gauge(
            "lamina_async_queue_depth", "Queued events not yet done, by state (ready, leased).",
            ("function", "version", "state"),
        )  # fmt: skip
        self.queue_depth_source = queue_depth

    def invoking(self, function: str, version: str) -> InvokeProbe:
        return InvokeProbe(self, (function, version))

    def event_received(self, function: str, qualifier: str | None) -> None:
        self.events_received.inc((function, qualifier or "$LATEST"))

    def event_started(self, function: str, qualifier: str | None, age_seconds: float) -> None:
        self.event_age.observe((function, qualifier or "$LATEST"), max(age_seconds, 0.0))

    def event_dead_lettered(self, function: str, qualifier: str | None) -> None:
        self.dead_lettered.inc((function, qualifier or "$LATEST"))

    async def exposition(self) -> bytes:
        """The text format; reads the queue depth first (a scrape sees the queue as it is)."""
        if self.queue_depth_source is not None:
            depths = await self.queue_depth_source()
            self.queue_depth.values = {k: float(v) for k, v in depths.items()}
        out: list[str] = []
        metrics: tuple[Counter | Histogram, ...] = (
            self.invocations, self.errors, self.throttles, self.duration, self.concurrent,
            self.cold_starts, self.events_received, self.event_age, self.dead_lettered, self.queue_depth,
        )  # fmt: skip
        for metric in metrics:
            out.append(f"# HELP {metric.name} {metric.help}")
            out.append(f"# TYPE {metric.name} {metric.kind}")
            out.extend(metric.lines())
        return ("\n".join(out) + "\n").encode()


def event_queue_depth(path: Path) -> DepthSource:
    """Counts unfinished events in the queue database at ``path`` (read-only, off the loop).

    Reads the ``events`` table of lamina.invoke.queue (columns function, qualifier, state) over
    its own connection, so a scrape never waits behind the queue's group commits."""

    def count() -> dict[Labels, int]:
        if not path.exists():
            return {}
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
            try:
                rows = db.execute(
                    "SELECT function, COALESCE(qualifier, '$LATEST'), state, COUNT(*) FROM events "
                    "WHERE state != 'dead' GROUP BY 1, 2, 3"
                ).fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read event queue depth from {path}: {exc}") from exc
        return {(str(f), str(q), str(s)): int(n) for f, q, s, n in rows}

    async def depth() -> Mapping[Labels, int]:
        return await asyncio.to_thread(count)

    return depth
