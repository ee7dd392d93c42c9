"""Both EventQueue implementations against one set of semantics; SQLite-only durability tests."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from lamina import cli_events
from lamina.errors import StoreError
from lamina.invoke.events import QueuedEvent
from lamina.invoke.memory_queue import MemoryEventQueue
from lamina.invoke.queue import SqliteEventQueue, events_db_path, read_events, replay

Queue = MemoryEventQueue | SqliteEventQueue


def ev(rid: str, at: float = 100.0, payload: bytes = b'{"k": 1}') -> QueuedEvent:
    return QueuedEvent(request_id=rid, function="fn", qualifier="$LATEST", payload=payload, enqueued_at=at)


@asynccontextmanager
async def open_queue(kind: str, path: Path) -> AsyncIterator[Queue]:
    queue: Queue = (
        MemoryEventQueue(clock=lambda: 500.0)
        if kind == "memory"
        else await SqliteEventQueue.open(path, clock=lambda: 500.0)
    )
    try:
        yield queue
    finally:
        await queue.close()


def run(kind: str, tmp_path: Path, body: Callable[[Queue], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with open_queue(kind, tmp_path / "events.db") as queue:
            return await body(queue)

    return asyncio.run(main())


KINDS = ["memory", "sqlite"]


@pytest.mark.parametrize("kind", KINDS)
def test_put_lease_ack_round_trip(kind: str, tmp_path: Path) -> None:
    async def body(q: Queue) -> None:
        await q.put(ev("a", payload=b"\x00binary"))
        await q.put(ev("b", at=101.0))
        leases = await q.lease(10, now=200.0, lease_seconds=30.0)
        assert [lease.event.request_id for lease in leases] == ["a", "b"]  # oldest first
        assert leases[0].event == ev("a", payload=b"\x00binary")
        assert leases[0].expires == 230.0
        assert await q.lease(10, now=200.0, lease_seconds=30.0) == []  # hidden while leased
        await q.ack("a")
        assert [s.event.request_id for s in await q.events()] == ["b"]

    run(kind, tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_lease_limit_and_not_yet_enqueued(kind: str, tmp_path: Path) -> None:
    async def body(q: Queue) -> None:
        for i in range(5):
            await q.put(ev(f"e{i}", at=100.0 + i))
        assert len(await q.lease(2, now=200.0, lease_seconds=1000.0)) == 2
        assert len(await q.lease(10, now=200.0, lease_seconds=1000.0)) == 3
        await q.put(ev("future", at=300.0))
        assert await q.lease(10, now=299.0, lease_seconds=30.0) == []

    run(kind, tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_retry_hides_until_not_before_and_keeps_attempts(kind: str, tmp_path: Path) -> None:
    async def body(q: Queue) -> None:
        await q.put(ev("a"))
        await q.lease(1, now=200.0, lease_seconds=30.0)
        await q.retry("a", attempts=1, not_before=260.0, error="Unhandled")
        assert await q.lease(1, now=259.0, lease_seconds=30.0) == []
        [lease] = await q.lease(1, now=260.0, lease_seconds=30.0)
        assert lease.event.attempts == 1
        assert lease.event.request_id == "a"

    run(kind, tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_expired_lease_comes_back_counted_as_attempt(kind: str, tmp_path: Path) -> None:
    async def body(q: Queue) -> None:
        await q.put(ev("a"))
        await q.lease(1, now=200.0, lease_seconds=30.0)
        assert await q.lease(1, now=229.0, lease_seconds=30.0) == []
        [lease] = await q.lease(1, now=230.0, lease_seconds=30.0)
        assert lease.event.attempts == 1

    run(kind, tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_dead_letter_is_kept_listed_and_replayable(kind: str, tmp_path: Path) -> None:
    async def body(q: Queue) -> None:
        await q.put(ev("a"))
        await q.put(ev("b"))
        await q.lease(2, now=200.0, lease_seconds=30.0)
        await q.dead_letter("a", attempts=3, reason="RetriesExhausted: Unhandled")
        await q.dead_letter("b", attempts=1, reason="EventAgeExceeded")
        assert await q.lease(10, now=10_000.0, lease_seconds=30.0) == []  # dead ones never run
        dead = await q.events("dead")
        assert {(s.event.request_id, s.event.attempts, s.reason, s.due) for s in dead} == {
            ("a", 3, "RetriesExhausted: Unhandled", 500.0),
            ("b", 1, "EventAgeExceeded", 500.0),
        }
        assert await q.replay("a", now=600.0) == 1
        [lease] = await q.lease(10, now=600.0, lease_seconds=30.0)
        assert (lease.event.request_id, lease.event.attempts, lease.event.enqueued_at) == ("a", 0, 600.0)
        assert await q.replay(None, now=700.0) == 1
        assert await q.replay(None, now=700.0) == 0

    run(kind, tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_duplicate_request_id_is_refused(kind: str, tmp_path: Path) -> None:
    async def body(q: Queue) -> None:
        await q.put(ev("a"))
        with pytest.raises(StoreError):
            await q.put(ev("a"))

    run(kind, tmp_path, body)


@pytest.mark.parametrize("kind", KINDS)
def test_closed_queue_raises(kind: str, tmp_path: Path) -> None:
    async def body(q: Queue) -> None:
        await q.close()
        with pytest.raises(StoreError):
            await q.put(ev("a"))
        with pytest.raises(StoreError):
            await q.lease(1, now=0.0, lease_seconds=1.0)

    run(kind, tmp_path, body)


def test_memory_restart_counts_open_leases() -> None:
    async def main() -> None:
        q = MemoryEventQueue(clock=lambda: 300.0)
        await q.put(ev("a"))
        await q.put(ev("b"))
        await q.lease(1, now=200.0, lease_seconds=1000.0)
        q.restart()
        leases = await q.lease(10, now=300.0, lease_seconds=30.0)
        assert {(x.event.request_id, x.event.attempts) for x in leases} == {("a", 1), ("b", 0)}

    asyncio.run(main())


def test_sqlite_group_commit_batches_concurrent_puts(tmp_path: Path) -> None:
    async def main() -> int:
        q = await SqliteEventQueue.open(tmp_path / "events.db")
        await asyncio.gather(*(q.put(ev(f"e{i}")) for i in range(300)))
        batches = q.batches
        await q.close()
        return batches

    batches = asyncio.run(main())
    assert 1 <= batches <= 10
    assert len(read_events(tmp_path / "events.db")) == 300


def test_sqlite_one_failing_put_does_not_fail_its_batch(tmp_path: Path) -> None:
    async def main() -> list[BaseException | None]:
        q = await SqliteEventQueue.open(tmp_path / "events.db")
        results = await asyncio.gather(q.put(ev("a")), q.put(ev("a")), q.put(ev("b")), return_exceptions=True)
        await q.close()
        return list(results)

    results = asyncio.run(main())
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], StoreError)
    assert sorted(s.event.request_id for s in read_events(tmp_path / "events.db")) == ["a", "b"]


def test_sqlite_reopen_recovers_leases_as_attempts(tmp_path: Path) -> None:
    path = tmp_path / "events.db"

    async def first() -> None:
        q = await SqliteEventQueue.open(path)
        await q.put(ev("leased"))
        await q.put(ev("waiting", at=101.0))
        await q.lease(1, now=200.0, lease_seconds=10_000.0)
        await q.close()

    async def second() -> list[tuple[str, int]]:
        q = await SqliteEventQueue.open(path, clock=lambda: 300.0)
        leases = await q.lease(10, now=300.0, lease_seconds=30.0)
        await q.close()
        return [(x.event.request_id, x.event.attempts) for x in leases]

    asyncio.run(first())
    assert {s.state for s in read_events(path)} == {"leased", "ready"}
    assert sorted(asyncio.run(second())) == [("leased", 1), ("waiting", 0)]


def test_offline_replay_and_cli(tmp_path: Path) -> None:
    path = events_db_path(tmp_path)

    async def setup() -> None:
        q = await SqliteEventQueue.open(path, clock=lambda: 400.0)
        for rid in ("a", "b"):
            await q.put(ev(rid))
            await q.lease(1, now=200.0, lease_seconds=30.0)
            await q.dead_letter(rid, attempts=3, reason="RetriesExhausted: Unhandled")
        await q.put(ev("c"))
        await q.close()

    asyncio.run(setup())
    out = io.StringIO()
    assert cli_events.list_events(tmp_path, out=out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["RequestId"], r["State"], r["Attempts"], r["Reason"]) for r in rows] == [
        ("a", "dead", 3, "RetriesExhausted: Unhandled"),
        ("b", "dead", 3, "RetriesExhausted: Unhandled"),
    ]
    assert cli_events.replay_events(tmp_path, "a", now=900.0, out=io.StringIO()) == 0
    assert cli_events.replay_events(tmp_path, "nope", out=io.StringIO()) == 1
    assert [s.event.request_id for s in read_events(path, "dead")] == ["b"]
    assert replay(path, None, now=900.0) == 1
    assert read_events(path, "dead") == []
    assert cli_events.list_events(tmp_path / "missing") == 1


def test_cli_parser_wiring(tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    cli_events.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["events", "replay", "--data-dir", str(tmp_path), "--all"])
    assert args.all and args.request_id is None
    assert args.func(parser.parse_args(["events", "replay", "--data-dir", str(tmp_path)])) == 2
