"""Asynchronous (Event) invocations: the queued event and the durable queue's seam.

An Event invoke is acknowledged (202) only once ``EventQueue.put`` has returned, i.e. once the
event is durably written; from then on it runs at least once (always with the same request id)
or reaches its failure destination / the dead-letter list. Never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class QueuedEvent:
    request_id: str  # stable across every attempt
    function: str  # function name (resolved at enqueue time)
    qualifier: str | None  # as the caller gave it: $LATEST, a version or an alias
    payload: bytes
    enqueued_at: float  # epoch seconds: the event's age counts from here
    attempts: int = 0  # invocations that ran the function (errors count, throttles do not)
    trace_id: str | None = None
    client_context: str | None = None


@dataclass(frozen=True)
class Lease:
    """An event handed to one poller until ``expires`` (then it becomes visible again)."""

    event: QueuedEvent
    expires: float


class EventQueue(Protocol):
    """A durable queue with explicit leases and acks.

    After ``put`` returns the event survives a crash. ``lease`` hides events from other
    pollers until their lease expires; ``ack`` removes one for good; ``retry`` makes it visible
    again at ``not_before`` with updated attempt count; ``dead_letter`` keeps it, visible to
    operators (``lamina events``), with the reason. After ``close`` every method raises.
    On restart, events that were leased count as one attempt and become visible again.
    """

    async def put(self, event: QueuedEvent) -> None: ...

    async def lease(self, limit: int, now: float, lease_seconds: float) -> list[Lease]: ...

    async def ack(self, request_id: str) -> None: ...

    async def retry(self, request_id: str, *, attempts: int, not_before: float, error: str) -> None: ...

    async def dead_letter(self, request_id: str, *, attempts: int, reason: str) -> None: ...

    async def close(self) -> None: ...
