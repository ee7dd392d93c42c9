"""Function logs: log groups and streams in an embedded SQLite file, bounded, durable.

The invoke path only appends to an in-memory batch; a background flush writes batches in one
transaction, so logging costs the hot path no disk I/O. Each group keeps at most
``max_events_per_group`` events (oldest dropped first).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class LogEvent:
    timestamp: int  # epoch ms
    message: str
    ingestion_time: int = 0


class LogStore:
    def __init__(self, path: Path, *, max_events_per_group: int = 100_000) -> None:
        self.max_events_per_group = max_events_per_group
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
            if not batch:
                return 0
            created: dict[tuple[str, str], int] = {}  # a stream's creation: its earliest event
            for g, s, ts, _ in batch:
                created[(g, s)] = min(ts, created.get((g, s), ts))
            self._write(batch, created, now_ms)
        return len(batch)

    def _write(
        self, batch: list[tuple[str, str, int, str]], created: dict[tuple[str, str], int], now_ms: int
    ) -> None:
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO streams(grp, stream, created) VALUES (?, ?, ?)",
                [(g, s, ts) for (g, s), ts in created.items()],
            )
            self._db.executemany(
                "INSERT INTO events(grp, stream, ts, ingested, message) VALUES (?, ?, ?, ?, ?)",
                [(g, s, ts, now_ms or ts, m) for g, s, ts, m in batch],
            )
            for group in {g for g, _, _, _ in batch}:
                self._db.execute(
                    "DELETE FROM events WHERE grp = ? AND id <= (SELECT id FROM events WHERE grp = ? "
                    "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (group, group, self.max_events_per_group),
                )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StoreError(f"log flush failed: {exc}") from exc

    async def run_flusher(self, interval: float = 0.2) -> None:
        """Flushes every ``interval`` seconds until cancelled (then flushes once more)."""
        try:
            while True:
                await asyncio.sleep(interval)
                await asyncio.to_thread(self.flush)
        finally:
            self.flush()

    def events(self, group: str, stream: str | None = None, limit: int = 10_000) -> list[LogEvent]:
        self.flush()
        with self._db_lock:
            return self._events(group, stream, limit)

    def _events(self, group: str, stream: str | None, limit: int) -> list[LogEvent]:
        if stream is None:
            rows = self._db.execute(
                "SELECT ts, message, ingested FROM events WHERE grp = ? ORDER BY id LIMIT ?", (group, limit)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT ts, message, ingested FROM events WHERE grp = ? AND stream = ? ORDER BY id LIMIT ?",
                (group, stream, limit),
            ).fetchall()
        return [LogEvent(ts, msg, ing) for ts, msg, ing in rows]

    def streams(self, group: str) -> list[str]:
        self.flush()
        with self._db_lock:
            rows = self._db.execute(
                "SELECT stream FROM streams WHERE grp = ? ORDER BY created, rowid", (group,)
            ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        self.flush()
        with self._db_lock:
            self._db.close()
