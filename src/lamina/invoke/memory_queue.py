"""An in-memory EventQueue with the SQLite queue's semantics, for tests of what sits above it.

Not durable, by design: ``restart`` stands in for "the process died and the queue was
reopened" (open leases become visible again, counted as an attempt), which is what the poller
tests need to exercise recovery without a disk.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from lamina.errors import StoreError
from lamina.invoke.events import Lease, QueuedEvent
from lamina.invoke.queue import State, StoredEvent


class MemoryEventQueue:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rows: dict[str, StoredEvent] = {}  # insertion-ordered, like rowid
        self._closed = False

    async def put(self, event: QueuedEvent) -> None:
        self._check()
        if event.request_id in self._rows:
            raise StoreError(f"event queue: duplicate request id {event.request_id}")
        self._rows[event.request_id] = StoredEvent(event, state="ready", due=event.enqueued_at)

    async def lease(self, limit: int, now: float, lease_seconds: float) -> list[Lease]:
        self._check()
        for rid, row in list(self._rows.items()):
            if row.state == "leased" and row.due <= now:
                self._rows[rid] = _with(row, state="ready", attempts=row.event.attempts + 1)
        ready = sorted(
            (r for r in self._rows.values() if r.state == "ready" and r.due <= now), key=lambda r: r.due
        )
        leases = []
        for row in ready[:limit]:
            self._rows[row.event.request_id] = dataclasses.replace(
                row, state="leased", due=now + lease_seconds
            )
            leases.append(Lease(row.event, now + lease_seconds))
        return leases

    async def ack(self, request_id: str) -> None:
        self._check()
        self._rows.pop(request_id, None)

    async def retry(self, request_id: str, *, attempts: int, not_before: float, error: str) -> None:
        self._check()
        if (row := self._rows.get(request_id)) is not None:
            self._rows[request_id] = dataclasses.replace(
                _with(row, state="ready", attempts=attempts), due=not_before, error=error
            )

    async def dead_letter(self, request_id: str, *, attempts: int, reason: str) -> None:
        self._check()
        if (row := self._rows.get(request_id)) is not None:
            self._rows[request_id] = dataclasses.replace(
                _with(row, state="dead", attempts=attempts), due=self._clock(), reason=reason
            )

    async def events(self, state: State | None = None) -> list[StoredEvent]:
        self._check()
        rows = [r for r in self._rows.values() if state is None or r.state == state]
        return sorted(rows, key=lambda r: r.due)

    async def replay(self, request_id: str | None, now: float) -> int:
        self._check()
        count = 0
        for rid, row in list(self._rows.items()):
            if row.state == "dead" and request_id in (None, rid):
                event = dataclasses.replace(row.event, attempts=0, enqueued_at=now)
                self._rows[rid] = StoredEvent(event, state="ready", due=now, error=row.error)
                count += 1
        return count

    def restart(self) -> None:
        """What reopening the durable queue after a crash does: open leases count as an attempt."""
        now = self._clock()
        for rid, row in list(self._rows.items()):
            if row.state == "leased":
                self._rows[rid] = dataclasses.replace(
                    _with(row, state="ready", attempts=row.event.attempts + 1), due=now
                )

    async def close(self) -> None:
        self._closed = True

    def _check(self) -> None:
        if self._closed:
            raise StoreError("the event queue is closed")


def _with(row: StoredEvent, *, state: State, attempts: int) -> StoredEvent:
    return dataclasses.replace(row, state=state, event=dataclasses.replace(row.event, attempts=attempts))
