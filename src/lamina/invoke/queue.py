"""The durable event queue: SQLite (``events.db`` in the data dir), WAL, synchronous=FULL.

Why group commit: an Event invoke may only be acknowledged once its event is on disk, and one
fsync per event caps throughput at the disk's fsync rate. Every operation is therefore handed
to one committer task, which runs everything that queued up meanwhile in a single transaction
(one fsync) on its own thread, so the event loop never blocks on the disk. ``put`` returns
only after the transaction holding its event committed.

Rows carry a ``state`` (ready | leased | dead) and one time column, ``due``: when a ready event
may run, when a lease expires, or when an event was dead-lettered. One index on (state, due)
thus serves both "what is runnable" and "which leases expired". A lease that expires, and
every lease still open when the queue is reopened after a crash, counts as one attempt: the
function may have run. The database belongs to one server process; ``read_events`` and
``replay`` are safe to use from another process (``lamina events``) at any time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from lamina.errors import StoreError
from lamina.invoke.events import Lease, QueuedEvent

T = TypeVar("T")
State = Literal["ready", "leased", "dead"]
Op = Callable[[sqlite3.Connection], Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    request_id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    qualifier TEXT,
    payload BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    trace_id TEXT,
    client_context TEXT,
    state TEXT NOT NULL,
    due REAL NOT NULL,
    error TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS events_due ON events(state, due);
"""
COLUMNS = "request_id, function, qualifier, payload, enqueued_at, attempts, trace_id, client_context"
STORED = COLUMNS + ", state, due, error, reason"


@dataclass(frozen=True)
class StoredEvent:
    """An event as the queue holds it, for operators (``lamina events list``) and tests."""

    event: QueuedEvent
    state: State
    due: float  # ready: not before; leased: lease expiry; dead: when dead-lettered
    error: str | None = None  # the last failure that sent it back to the queue
    reason: str | None = None  # why it was dead-lettered


def events_db_path(data_dir: Path) -> Path:
    return data_dir / "events.db"


def connect(path: Path) -> sqlite3.Connection:
    """Opens (creating if needed) the queue database with the durability it promises."""
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open event queue {path}: {exc}") from exc
    return db


def _event(row: Sequence[Any]) -> QueuedEvent:
    return QueuedEvent(
        request_id=row[0], function=row[1], qualifier=row[2], payload=bytes(row[3]),
        enqueued_at=row[4], attempts=row[5], trace_id=row[6], client_context=row[7],
    )  # fmt: skip


def _stored(row: Sequence[Any]) -> StoredEvent:
    return StoredEvent(_event(row), state=row[8], due=row[9], error=row[10], reason=row[11])


def select_events(db: sqlite3.Connection, state: State | None = None) -> list[StoredEvent]:
    where, args = ("WHERE state = ?", (state,)) if state else ("", ())
    rows = db.execute(f"SELECT {STORED} FROM events {where} ORDER BY due, rowid", args).fetchall()
    return [_stored(r) for r in rows]


def revive(db: sqlite3.Connection, request_id: str | None, now: float) -> int:
    """Dead events back to ready, as new: attempts 0, age counted from ``now``, same request id."""
    sql = "UPDATE events SET state='ready', attempts=0, enqueued_at=?, due=?, reason=NULL WHERE state='dead'"
    args: tuple[Any, ...] = (now, now)
    if request_id is not None:
        sql, args = sql + " AND request_id = ?", (*args, request_id)
    return db.execute(sql, args).rowcount


def read_events(path: Path, state: State | None = None) -> list[StoredEvent]:
    """Every event in the queue file at ``path`` (read-only; no crash recovery runs)."""
    db = connect(path)
    try:
        return select_events(db, state)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read event queue {path}: {exc}") from exc
    finally:
        db.close()


def replay(path: Path, request_id: str | None, now: float) -> int:
    """Makes dead-lettered events runnable again (all when ``request_id`` is None)."""
    db = connect(path)
    try:
        return revive(db, request_id, now)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot replay events in {path}: {exc}") from exc
    finally:
        db.close()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class SqliteEventQueue:
    """The embedded EventQueue. Create with ``await SqliteEventQueue.open(path)``."""

    def __init__(self, db: sqlite3.Connection, executor: ThreadPoolExecutor, clock: Callable[[], float]):
        self._db = db
        self._executor = executor  # one thread: the connection is only ever used from it
        self._clock = clock
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._committer = asyncio.create_task(self._commit_loop(), name="event-queue-committer")
        self.batches = 0  # committed transactions, for benchmarks

    @classmethod
    async def open(cls, path: Path, clock: Callable[[], float] = time.time) -> SqliteEventQueue:
        """Opens the queue; leases left open by a previous process count as an attempt."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-queue")
        loop = asyncio.get_running_loop()

        def setup() -> sqlite3.Connection:
            db = connect(path)
            try:
                db.execute(
                    "UPDATE events SET state='ready', attempts=attempts+1, due=? WHERE state='leased'",
                    (clock(),),
                )
            except sqlite3.Error as exc:
                db.close()
                raise StoreError(f"cannot recover event queue {path}: {exc}") from exc
            return db

        try:
            db = await loop.run_in_executor(executor, setup)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(db, executor, clock)

    async def put(self, event: QueuedEvent) -> None:
        row = (
            event.request_id, event.function, event.qualifier, event.payload, event.enqueued_at,
            event.attempts, event.trace_id, event.client_context, event.enqueued_at,
        )  # fmt: skip
        await self._submit(
            lambda db: db.execute(
                f"INSERT INTO events ({COLUMNS}, state, due) VALUES (?,?,?,?,?,?,?,?,'ready',?)", row
            )
        )

    async def lease(self, limit: int, now: float, lease_seconds: float) -> list[Lease]:
        expires = now + lease_seconds

        def op(db: sqlite3.Connection) -> list[Lease]:
            db.execute(
                "UPDATE events SET state='ready', attempts=attempts+1 WHERE state='leased' AND due <= ?",
                (now,),
            )
            rows = db.execute(
                f"SELECT {COLUMNS} FROM events WHERE state='ready' AND due <= ? ORDER BY due LIMIT ?",
                (now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE events SET state='leased', due=? WHERE request_id=?", [(expires, r[0]) for r in rows]
            )
            return [Lease(_event(r), expires) for r in rows]

        return cast(list[Lease], await self._submit(op))

    async def ack(self, request_id: str) -> None:
        await self._submit(lambda db: db.execute("DELETE FROM events WHERE request_id=?", (request_id,)))

    async def retry(self, request_id: str, *, attempts: int, not_before: float, error: str) -> None:
        await self._submit(
            lambda db: db.execute(
                "UPDATE events SET state='ready', attempts=?, due=?, error=? WHERE request_id=?",
                (attempts, not_before, error, request_id),
            )
        )

    async def dead_letter(self, request_id: str, *, attempts: int, reason: str) -> None:
        now = self._clock()
        await self._submit(
            lambda db: db.execute(
                "UPDATE events SET state='dead', attempts=?, due=?, reason=? WHERE request_id=?",
                (attempts, now, reason, request_id),
            )
        )

    async def events(self, state: State | None = None) -> list[StoredEvent]:
        return cast(list[StoredEvent], await self._submit(lambda db: select_events(db, state)))

    async def replay(self, request_id: str | None, now: float) -> int:
        return cast(int, await self._submit(lambda db: revive(db, request_id, now)))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        await self._committer  # drains what was submitted before close
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)

    async def _submit(self, op: Op) -> Any:
        if self._closed:
            raise StoreError("the event queue is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        self._wake.set()
        return await future

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                if self._closed:
                    return
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, [op for op, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiter must hear of it, never hang
                failure = exc if isinstance(exc, StoreError) else StoreError(f"event queue: {exc!r}")
                results = [_Failed(failure)] * len(batch)
            self.batches += 1
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller gave up waiting; its write still happened
                    continue
                if isinstance(result, _Failed):
                    future.set_exception(result.exc)
                else:
                    future.set_result(result)
            if self._pending or self._closed:
                self._wake.set()

    def _run_batch(self, ops: list[Op]) -> list[Any]:
        """One transaction (one fsync) for the batch; a failing op rolls back only itself."""
        db = self._db
        results: list[Any] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for op in ops:
                db.execute("SAVEPOINT op")
                try:
                    results.append(op(db))
                except sqlite3.Error as exc:
                    db.execute("ROLLBACK TO op")
                    results.append(_Failed(_store_error(exc)))
                db.execute("RELEASE op")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise _store_error(exc) from exc
        return results


def _store_error(exc: sqlite3.Error) -> StoreError:
    error = StoreError(f"event queue: {exc}")
    error.__cause__ = exc
    return error
