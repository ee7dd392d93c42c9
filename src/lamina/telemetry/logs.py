"""Function logs: log groups and streams in an embedded SQLite file, bounded, durable.

The invoke path only appends to an in-memory batch; a background flush writes batches in one
transaction, so logging costs the hot path no disk I/O. Each group keeps at most
``max_events_per_group`` events (oldest dropped first), and a group with a retention policy
loses events older than it in the flush path (checked every ``maintenance_interval`` seconds,
and at once when the policy is set). Readers flush first, so they see everything appended.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    grp TEXT NOT NULL,
    stream TEXT NOT NULL,
    ts INTEGER NOT NULL,
    ingested INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_stream ON events(grp, stream, ts);
CREATE TABLE IF NOT EXISTS streams (
    grp TEXT NOT NULL,
    stream TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (grp, stream)
);
"""

# Applied in order on top of SCHEMA; PRAGMA user_version counts those applied, so a logs.db
# written before groups existed gains them (created at its first stream) and stays readable.
MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS groups (
        grp TEXT PRIMARY KEY, created INTEGER NOT NULL, retention INTEGER
    );
    INSERT OR IGNORE INTO groups(grp, created) SELECT grp, MIN(created) FROM streams GROUP BY grp;
    CREATE INDEX IF NOT EXISTS events_group_ts ON events(grp, ts, id);
    """,
)

_BYTES = "COALESCE(SUM(LENGTH(CAST(message AS BLOB))), 0)"


@dataclass(frozen=True)
class LogEvent:
    timestamp: int  # epoch ms
    message: str
    ingestion_time: int = 0


@dataclass(frozen=True)
class StoredEvent:
    """An event with its identity (``id`` orders events as they were written)."""

    id: int
    stream: str
    timestamp: int
    message: str
    ingestion_time: int


@dataclass(frozen=True)
class GroupInfo:
    name: str
    created: int
    retention_days: int | None
    stored_bytes: int


@dataclass(frozen=True)
class StreamInfo:
    name: str
    created: int
    first_event: int | None
    last_event: int | None
    last_ingestion: int | None
    stored_bytes: int


def _now_ms() -> int:
    return int(time.time() * 1000)


class LogStore:
    def __init__(
        self, path: Path, *, max_events_per_group: int = 100_000, maintenance_interval: float = 60.0
    ) -> None:
        self.max_events_per_group = max_events_per_group
        self.maintenance_interval = maintenance_interval
        self._next_maintenance = 0.0
        self._lock = threading.Lock()  # guards _pending
        # One connection, used from the flusher thread and the loop thread: serialise its use,
        # or two flushes interleave their BEGIN/COMMIT and one rolls back the other's batch.
        self._db_lock = threading.Lock()
        self._pending: list[tuple[str, str, int, str]] = []
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open log store {path}: {exc}") from exc

    def append(self, group: str, stream: str, events: list[tuple[int, str]]) -> None:
        """Queues events for the next flush (cheap; no I/O)."""
        with self._lock:
            self._pending.extend((group, stream, ts, msg) for ts, msg in events)

    def flush(self, now_ms: int = 0) -> int:
        # Batches are taken and written under one lock, so they land in the order appended.
        with self._db_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                self._write(batch, now_ms)
            if time.monotonic() >= self._next_maintenance:
                self._next_maintenance = time.monotonic() + self.maintenance_interval
                self._expire(_now_ms())
        return len(batch)

    def _write(self, batch: list[tuple[str, str, int, str]], now_ms: int) -> None:
        created: dict[tuple[str, str], int] = {}  # a stream's creation: its earliest event
        for g, s, ts, _ in batch:
            created[(g, s)] = min(ts, created.get((g, s), ts))
        groups = {g for g, _, _, _ in batch}

        def write() -> None:
            self._db.executemany(
                "INSERT OR IGNORE INTO groups(grp, created) VALUES (?, ?)", [(g, _now_ms()) for g in groups]
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO streams(grp, stream, created) VALUES (?, ?, ?)",
                [(g, s, ts) for (g, s), ts in created.items()],
            )
            self._db.executemany(
                "INSERT INTO events(grp, stream, ts, ingested, message) VALUES (?, ?, ?, ?, ?)",
                [(g, s, ts, now_ms or ts, m) for g, s, ts, m in batch],
            )
            for group in groups:
                self._db.execute(
                    "DELETE FROM events WHERE grp = ? AND id <= (SELECT id FROM events WHERE grp = ? "
                    "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (group, group, self.max_events_per_group),
                )

        self._transaction(write, "log flush failed")

    def _transaction(self, body: Callable[[], None], what: str) -> None:
        """Runs ``body`` in one transaction (caller holds ``_db_lock``); SQLite errors → StoreError."""
        try:
            self._db.execute("BEGIN")
            body()
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StoreError(f"{what}: {exc}") from exc

    def _expire(self, now_ms: int) -> None:
        """Drops events older than their group's retention (caller holds ``_db_lock``)."""

        def expire() -> None:
            self._db.execute(
                "DELETE FROM events WHERE id IN (SELECT e.id FROM events e JOIN groups g ON e.grp = g.grp "
                "WHERE g.retention IS NOT NULL AND e.ts < ? - g.retention * 86400000)",
                (now_ms,),
            )

        self._transaction(expire, "log retention failed")

    async def run_flusher(self, interval: float = 0.2) -> None:
        """Flushes every ``interval`` seconds until cancelled (then flushes once more)."""
        try:
            while True:
                await asyncio.sleep(interval)
                await asyncio.to_thread(self.flush)
        finally:
            self.flush()

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """Rows of one query, after a flush, so readers see everything appended before."""
        self.flush()
        with self._db_lock:
            try:
                return self._db.execute(sql, tuple(args)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"log query failed: {exc}") from exc

    def _change(self, sql: str, args: Iterable[Any]) -> int:
        """Rows changed by one statement (in its own transaction), after a flush."""
        self.flush()
        count: list[int] = []
        with self._db_lock:
            self._transaction(lambda: count.append(self._db.execute(sql, tuple(args)).rowcount), "log update failed")
        return count[0]

    # -- the worker's view ----------------------------------------------------------------

    def events(self, group: str, stream: str | None = None, limit: int = 10_000) -> list[LogEvent]:
        where, args = ("grp = ?", [group]) if stream is None else ("grp = ? AND stream = ?", [group, stream])
        rows = self._read(f"SELECT ts, message, ingested FROM events WHERE {where} ORDER BY id LIMIT ?", [*args, limit])
        return [LogEvent(ts, msg, ing) for ts, msg, ing in rows]

    def streams(self, group: str) -> list[str]:
        rows = self._read("SELECT stream FROM streams WHERE grp = ? ORDER BY created, rowid", [group])
        return [r[0] for r in rows]

    # -- groups -----------------------------------------------------------------------------

    def groups(self, prefix: str = "", contains: str = "") -> list[GroupInfo]:
        """Groups by name whose name starts with ``prefix`` and holds ``contains`` (any case)."""
        rows = self._read(
            f"SELECT g.grp, g.created, g.retention, (SELECT {_BYTES} FROM events e WHERE e.grp = g.grp) "
            "FROM groups g WHERE substr(g.grp, 1, ?) = ? AND instr(lower(g.grp), lower(?)) > 0 ORDER BY g.grp",
            [len(prefix), prefix, contains],
        )
        return [GroupInfo(*row) for row in rows]

    def group(self, name: str) -> GroupInfo | None:
        return next((g for g in self.groups(prefix=name) if g.name == name), None)

    def create_group(self, name: str) -> bool:
        """False if the group exists already."""
        return self._change("INSERT OR IGNORE INTO groups(grp, created) VALUES (?, ?)", [name, _now_ms()]) == 1

    def delete_group(self, name: str) -> bool:
        """Deletes the group with its streams and events; False if there was no such group."""
        self.flush()
        gone: list[int] = []
        with self._db_lock:
            def delete() -> None:
                gone.append(self._db.execute("DELETE FROM groups WHERE grp = ?", (name,)).rowcount)
                self._db.execute("DELETE FROM streams WHERE grp = ?", (name,))
                self._db.execute("DELETE FROM events WHERE grp = ?", (name,))

            self._transaction(delete, "log group delete failed")
        return gone[0] == 1

    def set_retention(self, name: str, days: int | None) -> bool:
        """Sets (None: removes) the group's retention and enforces it now; False: no such group."""
        found = self._change("UPDATE groups SET retention = ? WHERE grp = ?", [days, name]) == 1
        if found and days is not None:
            with self._db_lock:
                self._expire(_now_ms())
        return found

    # -- streams ----------------------------------------------------------------------------

    def stream_infos(self, group: str, prefix: str = "") -> list[StreamInfo]:
        rows = self._read(
            f"SELECT s.stream, s.created, MIN(e.ts), MAX(e.ts), MAX(e.ingested), {_BYTES} "
            "FROM streams s LEFT JOIN events e ON e.grp = s.grp AND e.stream = s.stream "
            "WHERE s.grp = ? AND substr(s.stream, 1, ?) = ? GROUP BY s.stream ORDER BY s.stream",
            [group, len(prefix), prefix],
        )
        return [StreamInfo(*row) for row in rows]

    def create_stream(self, group: str, stream: str) -> bool:
        """False if the stream exists already (the group must exist: the caller checks)."""
        sql = "INSERT OR IGNORE INTO streams(grp, stream, created) VALUES (?, ?, ?)"
        return self._change(sql, [group, stream, _now_ms()]) == 1

    def delete_stream(self, group: str, stream: str) -> bool:
        found = self._change("DELETE FROM streams WHERE grp = ? AND stream = ?", [group, stream]) == 1
        self._change("DELETE FROM events WHERE grp = ? AND stream = ?", [group, stream])
        return found

    def has_stream(self, group: str, stream: str) -> bool:
        return bool(self._read("SELECT 1 FROM streams WHERE grp = ? AND stream = ?", [group, stream]))

    # -- events -----------------------------------------------------------------------------

    def stream_events(
        self, group: str, stream: str, *, start: int | None, end: int | None, limit: int,
        after: tuple[int, int] | None = None, before: tuple[int, int] | None = None, from_tail: bool,
    ) -> list[StoredEvent]:
        """Up to ``limit`` events of a stream in (timestamp, id) order, strictly between the
        ``after`` and ``before`` positions: the first ones, or the last ones (``from_tail``)."""
        lo, hi = after or (-(2**62), 0), before or (2**62, 0)
        order = "DESC" if from_tail else "ASC"
        sql = (
            "SELECT id, stream, ts, message, ingested FROM events WHERE grp = ? AND stream = ? "
            "AND ts >= ? AND ts < ? AND (ts > ? OR (ts = ? AND id > ?)) AND (ts < ? OR (ts = ? AND id < ?)) "
            f"ORDER BY ts {order}, id {order} LIMIT ?"
        )
        bounds = [start or 0, end if end is not None else 2**62, lo[0], lo[0], lo[1], hi[0], hi[0], hi[1], limit]
        rows = [StoredEvent(*row) for row in self._read(sql, [group, stream, *bounds])]
        return rows[::-1] if from_tail else rows

    def scan(
        self, group: str, *, streams: list[str] | None, prefix: str, start: int | None, end: int | None,
        after: tuple[int, int] | None, limit: int,
    ) -> list[StoredEvent]:
        """The next ``limit`` events of a group in (timestamp, id) order after the ``after`` cursor."""
        ts, event_id = after or (-(2**62), 0)
        where = "grp = ? AND ts >= ? AND ts < ? AND (ts > ? OR (ts = ? AND id > ?)) AND substr(stream, 1, ?) = ?"
        args: list[Any] = [group, start or 0, end if end is not None else 2**62, ts, ts, event_id, len(prefix), prefix]
        if streams is not None:
            where += f" AND stream IN ({','.join('?' * len(streams))})"
            args.extend(streams)
        sql = f"SELECT id, stream, ts, message, ingested FROM events WHERE {where} ORDER BY ts, id LIMIT ?"
        return [StoredEvent(*row) for row in self._read(sql, [*args, limit])]

    def last_event_id(self, group: str, stream: str) -> int:
        rows = self._read("SELECT MAX(id) FROM events WHERE grp = ? AND stream = ?", [group, stream])
        return int(rows[0][0] or 0)

    def close(self) -> None:
        self.flush()
        with self._db_lock:
            self._db.close()
