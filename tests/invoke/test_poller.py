"""AsyncInvoker on the memory queue, a fake clock and a scripted ``run``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lamina.errors import ResourceNotFound, ServiceError, TooManyRequests
from lamina.invoke.destinations import DestinationRouter, FunctionDestination, UnsupportedDestination
from lamina.invoke.events import QueuedEvent
from lamina.invoke.memory_queue import MemoryEventQueue
from lamina.invoke.poller import AsyncInvoker, PollerSettings
from lamina.invoke.queue import SqliteEventQueue
from lamina.invoke.retry import EventConfig

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn:$LATEST"
FAIL_ARN = "arn:aws:lambda:us-east-1:000000000000:function:on-failure"
OK_ARN = "arn:aws:lambda:us-east-1:000000000000:function:on-success"
T0 = 1_700_000_000.0


@dataclass(frozen=True)
class Outcome:
    status: int = 200
    payload: bytes = b'"done"'
    executed_version: str | None = "$LATEST"
    function_error: str | None = None


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Script:
    """Answers each run with the next step: "ok", "error", "throttle", "platform", "gone"."""

    steps: list[str]
    seen: list[QueuedEvent] = field(default_factory=list)

    async def __call__(self, event: QueuedEvent) -> Outcome:
        self.seen.append(event)
        step = self.steps.pop(0) if self.steps else "ok"
        if step == "throttle":
            raise TooManyRequests(
                "Rate Exceeded.", Reason="ReservedFunctionConcurrentInvocationLimitExceeded"
            )
        if step == "platform":
            raise ServiceError("worker crashed")
        if step == "gone":
            raise ResourceNotFound("Function not found: fn")
        if step == "error":
            return Outcome(
                payload=b'{"errorMessage": "boom", "errorType": "Exception"}', function_error="Unhandled"
            )
        return Outcome()


@dataclass
class Sink:
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail: bool = False

    async def send(self, record: dict[str, Any], destination_arn: str) -> None:
        if self.fail:
            raise UnsupportedDestination(f"no destination handles {destination_arn}")
        self.records.append((destination_arn, record))


class Rig:
    def __init__(self, steps: list[str], config: EventConfig | None = None, **settings: Any) -> None:
        self.clock = Clock()
        self.queue = MemoryEventQueue(clock=self.clock)
        self.script = Script(list(steps))
        self.sink = Sink()
        self.config = config or EventConfig()
        self.invoker = AsyncInvoker(
            self.queue,
            self.script,
            lambda fn, q: self.config,
            self.sink,
            lambda fn, q: f"arn:aws:lambda:us-east-1:000000000000:function:{fn}:{q or '$LATEST'}",
            settings=PollerSettings(**settings),
            clock=self.clock,
            new_id=lambda: "req-1",
        )

    async def step(self, advance: float = 0.0) -> int:
        self.clock.now += advance
        started = await self.invoker.poll_once()
        await self.invoker.drain()
        return started

    async def rows(self) -> list[tuple[str, int, float, str | None]]:
        return [(s.state, s.event.attempts, s.due - T0, s.reason) for s in await self.queue.events()]


def go(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def test_success_without_destination_is_acked() -> None:
    async def body() -> None:
        rig = Rig(["ok"])
        await rig.invoker.enqueue("fn", None, b'{"a": 1}')
        assert await rig.step() == 1
        assert await rig.queue.events() == []
        assert [e.request_id for e in rig.script.seen] == ["req-1"]

    go(body)


def test_function_errors_follow_the_schedule_with_a_stable_request_id() -> None:
    async def body() -> None:
        rig = Rig(["error", "error", "ok"])
        await rig.invoker.enqueue("fn", None, b"{}")
        await rig.step()
        assert await rig.rows() == [("ready", 1, 60.0, None)]
        assert await rig.step(59.0) == 0  # not yet
        await rig.step(1.0)
        assert await rig.rows() == [("ready", 2, 180.0, None)]
        await rig.step(120.0)
        assert await rig.rows() == []
        assert [e.request_id for e in rig.script.seen] == ["req-1"] * 3
        assert [e.attempts for e in rig.script.seen] == [0, 1, 2]

    go(body)


def test_retries_exhausted_goes_to_on_failure_with_aws_record() -> None:
    async def body() -> None:
        rig = Rig(["error"], EventConfig(max_retries=0, on_failure=FAIL_ARN))
        await rig.invoker.enqueue("fn", None, b'{"order": 7}')
        await rig.step(0.25)
        assert await rig.queue.events() == []
        [(arn, record)] = rig.sink.records
        assert arn == FAIL_ARN
        assert record == {
            "version": "1.0",
            "timestamp": "2023-11-14T22:13:20.250Z",
            "requestContext": {
                "requestId": "req-1",
                "functionArn": ARN,
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 1,
            },
            "requestPayload": {"order": 7},
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {"errorMessage": "boom", "errorType": "Exception"},
        }
        assert list(record) == [
            "version", "timestamp", "requestContext", "requestPayload", "responseContext", "responsePayload",
        ]  # fmt: skip

    go(body)


def test_success_goes_to_on_success() -> None:
    async def body() -> None:
        rig = Rig(["ok"], EventConfig(on_success=OK_ARN, on_failure=FAIL_ARN))
        await rig.invoker.enqueue("fn", "live", b"")
        await rig.step()
        [(arn, record)] = rig.sink.records
        assert arn == OK_ARN
        assert record["requestContext"]["condition"] == "Success"
        assert record["requestContext"]["functionArn"].endswith(":function:fn:live")
        assert record["requestPayload"] == {}
        assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
        assert record["responsePayload"] == "done"

    go(body)


def test_exhausted_without_destination_is_dead_lettered() -> None:
    async def body() -> None:
        rig = Rig(["error", "error", "error"])
        await rig.invoker.enqueue("fn", None, b"{}")
        await rig.step()
        await rig.step(60.0)
        await rig.step(120.0)
        assert await rig.rows() == [("dead", 3, 180.0, "RetriesExhausted: Unhandled")]
        assert rig.sink.records == []

    go(body)


def test_throttles_wait_without_using_attempts_then_age_out() -> None:
    async def body() -> None:
        rig = Rig(["throttle"] * 100, EventConfig(max_age=60, on_failure=FAIL_ARN))
        await rig.invoker.enqueue("fn", None, b"{}")
        dues = []
        while await rig.queue.events():
            await rig.step()
            rows = await rig.rows()
            if rows:
                assert rows[0][:2] == ("ready", 0)
                dues.append(rows[0][2])
                rig.clock.now = T0 + rows[0][2]
        assert dues == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
        [(_, record)] = rig.sink.records
        assert record["requestContext"]["condition"] == "EventAgeExceeded"
        assert record["requestContext"]["approximateInvokeCount"] == 0
        assert "responseContext" not in record and "responsePayload" not in record

    go(body)


def test_platform_error_is_requeued_and_then_runs() -> None:
    async def body() -> None:
        rig = Rig(["platform", "ok"])
        await rig.invoker.enqueue("fn", None, b"{}")
        await rig.step()
        assert await rig.rows() == [("ready", 0, 1.0, None)]
        await rig.step(1.0)
        assert await rig.queue.events() == []

    go(body)


def test_failed_destination_keeps_the_event() -> None:
    async def body() -> None:
        rig = Rig(["error"], EventConfig(max_retries=0, on_failure="arn:aws:sqs:us-east-1:000000000000:q"))
        rig.sink.fail = True
        await rig.invoker.enqueue("fn", None, b"{}")
        await rig.step()
        [(state, attempts, _, reason)] = await rig.rows()
        assert (state, attempts) == ("dead", 1)
        assert reason is not None and reason.startswith(
            "RetriesExhausted: Unhandled; destination arn:aws:sqs"
        )

    go(body)


def test_deleted_function_is_dead_lettered() -> None:
    async def body() -> None:
        rig = Rig(["gone"])
        await rig.invoker.enqueue("fn", None, b"{}")
        await rig.step()
        assert await rig.rows() == [("dead", 0, 0.0, "Function not found: fn")]

    go(body)


def test_too_old_at_lease_time_never_runs() -> None:
    async def body() -> None:
        rig = Rig(["ok"], EventConfig(max_age=60))
        await rig.invoker.enqueue("fn", None, b"{}")
        await rig.step(61.0)
        assert rig.script.seen == []
        assert await rig.rows() == [("dead", 0, 61.0, "EventAgeExceeded")]

    go(body)


def test_restart_counts_the_interrupted_run_and_respects_max_retries() -> None:
    async def body() -> None:
        rig = Rig([], EventConfig(max_retries=0))
        await rig.invoker.enqueue("fn", None, b"{}")
        await rig.queue.lease(1, rig.clock.now, 960.0)  # a run was in flight when the server died
        rig.queue.restart()
        await rig.step()
        assert rig.script.seen == []
        assert await rig.rows() == [("dead", 1, 0.0, "RetriesExhausted: interrupted")]

    go(body)


def test_in_flight_limit() -> None:
    async def body() -> None:
        release = asyncio.Event()
        running = 0
        peak = 0

        async def slow(event: QueuedEvent) -> Outcome:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1
            return Outcome()

        rig = Rig([], max_in_flight=3, batch_size=2)
        rig.invoker._run = slow
        for i in range(10):
            await rig.invoker.enqueue("fn", None, b"{}", request_id=f"r{i}")
        assert await rig.invoker.poll_once() == 2
        assert await rig.invoker.poll_once() == 1
        assert await rig.invoker.poll_once() == 0
        await asyncio.sleep(0)
        assert rig.invoker.in_flight == 3 and peak == 3
        release.set()
        await rig.invoker.drain()
        assert len(await rig.queue.events()) == 7

    go(body)


def test_poll_loop_runs_events_and_stops_cleanly() -> None:
    async def body() -> None:
        queue = MemoryEventQueue()
        done = asyncio.Event()
        seen: list[str] = []

        async def run(event: QueuedEvent) -> Outcome:
            seen.append(event.request_id)
            if len(seen) == 20:
                done.set()
            return Outcome()

        invoker = AsyncInvoker(queue, run, lambda f, q: EventConfig(), Sink(), lambda f, q: f)
        invoker.start()
        for i in range(20):
            await invoker.enqueue("fn", None, b"{}", request_id=f"r{i}")
            if i % 7 == 0:
                await asyncio.sleep(0.03)  # let the loop go idle and back off
        await asyncio.wait_for(done.wait(), 5.0)
        await invoker.stop()
        assert sorted(seen) == sorted(f"r{i}" for i in range(20))
        assert await queue.events() == []

    go(body)


def test_function_destination_enqueues_the_record() -> None:
    async def body() -> None:
        sent: list[tuple[str, bytes]] = []

        async def enqueue(arn: str, payload: bytes) -> None:
            sent.append((arn, payload))

        router = DestinationRouter({"lambda": FunctionDestination(enqueue)})
        await router.send({"version": "1.0"}, FAIL_ARN)
        assert sent == [(FAIL_ARN, b'{"version":"1.0"}')]
        assert json.loads(sent[0][1]) == {"version": "1.0"}
        with pytest.raises(UnsupportedDestination):
            await router.send({}, "arn:aws:sqs:us-east-1:000000000000:q")
        with pytest.raises(UnsupportedDestination):
            await router.send({}, "not-an-arn")

    go(body)


def test_config_for_may_answer_a_plain_policy_tuple() -> None:
    async def body() -> None:
        rig = Rig(["error"])
        rig.invoker._config_for = lambda fn, q: (0, 3600, None, FAIL_ARN)
        await rig.invoker.enqueue("fn", None, b"{}")
        await rig.step()
        [(arn, record)] = rig.sink.records
        assert (arn, record["requestContext"]["condition"]) == (FAIL_ARN, "RetriesExhausted")

    go(body)


def test_poll_loop_on_the_sqlite_queue(tmp_path: Path) -> None:
    async def body() -> None:
        queue = await SqliteEventQueue.open(tmp_path / "events.db")
        seen: list[str] = []
        all_ran = asyncio.Event()

        async def run(event: QueuedEvent) -> Outcome:
            seen.append(event.request_id)
            if len(seen) == 50:
                all_ran.set()
            return Outcome()

        invoker = AsyncInvoker(queue, run, lambda f, q: EventConfig(), Sink(), lambda f, q: f)
        invoker.start()
        await asyncio.gather(*(invoker.enqueue("fn", None, b"{}", request_id=f"r{i}") for i in range(50)))
        await asyncio.wait_for(all_ran.wait(), 5.0)
        await invoker.stop()
        assert sorted(seen) == sorted(f"r{i}" for i in range(50))
        assert await queue.events() == []
        await queue.close()

    go(body)
