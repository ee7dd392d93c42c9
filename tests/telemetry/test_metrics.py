"""The metric set and its Prometheus text exposition; the poller's and the invoke probe's counts."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from lamina.errors import ServiceError, TooManyRequests
from lamina.invoke.events import QueuedEvent
from lamina.invoke.memory_queue import MemoryEventQueue
from lamina.invoke.poller import AsyncInvoker
from lamina.invoke.queue import SqliteEventQueue
from lamina.invoke.retry import EventConfig
from lamina.telemetry.metrics import (
    CONTENT_TYPE,
    Counter,
    Histogram,
    Labels,
    LambdaMetrics,
    event_queue_depth,
)

FN = ("fn", "$LATEST")


def render(metrics: LambdaMetrics) -> list[str]:
    return asyncio.run(metrics.exposition()).decode().splitlines()


def test_content_type_is_prometheus_text_0_0_4() -> None:
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_counter_lines_escape_label_values() -> None:
    counter = Counter("x_total", "help")
    counter.inc(('a"b\\c\nd', "1"), 2)
    counter.inc(("plain", "$LATEST"))
    assert list(counter.lines()) == [
        'x_total{function="a\\"b\\\\c\\nd",version="1"} 2',
        'x_total{function="plain",version="$LATEST"} 1',
    ]


def test_histogram_buckets_are_cumulative_with_le_inclusive() -> None:
    hist = Histogram("d_seconds", "help", (0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0):
        hist.observe(FN, value)
    assert list(hist.lines()) == [
        'd_seconds_bucket{function="fn",version="$LATEST",le="0.1"} 2',
        'd_seconds_bucket{function="fn",version="$LATEST",le="1"} 3',
        'd_seconds_bucket{function="fn",version="$LATEST",le="+Inf"} 4',
        'd_seconds_sum{function="fn",version="$LATEST"} 2.65',
        'd_seconds_count{function="fn",version="$LATEST"} 4',
    ]


def test_probe_counts_success_error_cold_and_duration() -> None:
    metrics = LambdaMetrics()
    with metrics.invoking(*FN) as probe:
        assert metrics.concurrent.value(FN) == 1
        probe.ran(cold=True, duration_ms=12.0, error=False)
    with metrics.invoking(*FN) as probe:
        probe.ran(cold=False, duration_ms=8.0, error=True)
    assert metrics.invocations.value(FN) == 2
    assert metrics.errors.value(FN) == 1
    assert metrics.cold_starts.value(FN) == 1
    assert metrics.duration.count(FN) == 2
    assert metrics.concurrent.value(FN) == 0
    assert metrics.throttles.value(FN) == 0
    lines = render(metrics)
    assert 'lamina_duration_seconds_sum{function="fn",version="$LATEST"} 0.02' in lines
    assert "# TYPE lamina_invocations_total counter" in lines


def test_probe_counts_a_throttle_but_not_an_invocation() -> None:
    metrics = LambdaMetrics()
    with pytest.raises(TooManyRequests), metrics.invoking(*FN):
        raise TooManyRequests("Rate Exceeded.", Reason="ReservedFunctionConcurrentInvocationLimitExceeded")
    assert metrics.throttles.value(FN) == 1
    assert metrics.invocations.value(FN) == 0
    assert metrics.concurrent.value(FN) == 0


def test_platform_failure_before_the_run_counts_nowhere() -> None:
    metrics = LambdaMetrics()
    with pytest.raises(ServiceError), metrics.invoking(*FN):
        raise ServiceError("worker crashed")
    assert (metrics.invocations.value(FN), metrics.errors.value(FN), metrics.throttles.value(FN)) == (0, 0, 0)


def test_queue_depth_is_read_at_scrape_time() -> None:
    depths: dict[Labels, int] = {("fn", "$LATEST", "ready"): 3}

    async def source() -> Mapping[Labels, int]:
        return dict(depths)

    metrics = LambdaMetrics(queue_depth=source)
    assert 'lamina_async_queue_depth{function="fn",version="$LATEST",state="ready"} 3' in render(metrics)
    depths.clear()
    assert not any(line.startswith("lamina_async_queue_depth{") for line in render(metrics))


def test_event_queue_depth_counts_ready_and_leased_not_dead(tmp_path: Path) -> None:
    async def body() -> dict[Labels, int]:
        queue = await SqliteEventQueue.open(tmp_path / "events.db")
        try:
            for i in range(4):
                await queue.put(QueuedEvent(f"r{i}", "fn", "live" if i == 3 else None, b"{}", enqueued_at=1.0))
            leased = await queue.lease(1, 2.0, 60.0)
            await queue.dead_letter(leased[0].event.request_id, attempts=1, reason="x")
            await queue.lease(1, 2.0, 60.0)
            return dict(await event_queue_depth(tmp_path / "events.db")())
        finally:
            await queue.close()

    assert asyncio.run(body()) == {
        ("fn", "$LATEST", "ready"): 1, ("fn", "$LATEST", "leased"): 1, ("fn", "live", "ready"): 1,
    }
    async def missing() -> Mapping[Labels, int]:
        return await event_queue_depth(tmp_path / "missing.db")()

    assert asyncio.run(missing()) == {}


@dataclass(frozen=True)
class Outcome:
    status: int = 200
    payload: bytes = b"{}"
    executed_version: str | None = "$LATEST"
    function_error: str | None = "Unhandled"


def test_poller_records_received_event_age_and_dead_letters() -> None:
    now = [1000.0]

    async def failing(event: QueuedEvent) -> Outcome:
        return Outcome()

    async def body() -> LambdaMetrics:
        metrics = LambdaMetrics()
        invoker = AsyncInvoker(
            MemoryEventQueue(clock=lambda: now[0]), failing, lambda fn, q: EventConfig(max_retries=0),
            destinations=_NoDestinations(), function_arn=lambda fn, q: fn,
            clock=lambda: now[0], metrics=metrics,
        )  # fmt: skip
        await invoker.enqueue("fn", "live", b"{}")
        now[0] += 2.5
        await invoker.poll_once()
        await invoker.drain()
        return metrics

    metrics = asyncio.run(body())
    labels = ("fn", "live")
    assert metrics.events_received.value(labels) == 1
    assert metrics.event_age.count(labels) == 1
    assert metrics.event_age.series[labels][1][0] == 2.5
    assert metrics.dead_lettered.value(labels) == 1


class _NoDestinations:
    async def send(self, record: dict[str, object], destination_arn: str) -> None:
        raise AssertionError("no destination is configured")
