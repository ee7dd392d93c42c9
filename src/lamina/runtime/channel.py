"""One execution environment's side of the Runtime API, with no HTTP in it.

The channel is the state machine that AWS's Runtime Interface Emulator keeps per runtime:
the runtime is *initializing* until it first asks for an event, then each invocation is
*delivered* (GET /next answered) and *answered* (one /response or /error for exactly that
request id). The HTTP protocol in ``api.py`` only translates requests into these calls and
the returned :class:`Outcome` into RIE's status codes, so the rules live in one place and are
testable without sockets.

Timing is deliberately absent: the worker wraps :meth:`RuntimeChannel.invoke` in its own
timeout and destroys the env, which closes the channel.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Protocol

from lamina.errors import InternalError
from lamina.runtime.models import ChannelClosed, InitError, Invocation, InvocationResult


class Outcome(enum.Enum):
    """What a runtime's POST did to the state machine (``api.py`` renders RIE's reply)."""

    ACCEPTED = "accepted"  # 202
    INVALID_REQUEST_ID = "invalid-request-id"  # 400 InvalidRequestID: not the current id
    INVALID_STATE = "invalid-state"  # 403 InvalidStateTransition: e.g. answered twice


class NextWaiter(Protocol):
    """A parked GET /next (one HTTP connection) that the channel can answer or drop."""

    def deliver(self, inv: Invocation) -> None:
        """Send ``inv`` as the 200 answer to the parked GET /next."""

    def deliver_assignment(self, document: bytes) -> None:
        """Send ``document`` as the 200 answer to the parked assignment request."""

    def abort(self) -> None:
        """Close the connection without an answer (the channel is closing)."""


class RuntimeChannel:
    """One env's side of the Runtime API. One invocation at a time."""

    def __init__(self) -> None:
        self._closed = False
        self._ready = False
        self._init_error: InitError | None = None
        self._ready_waiters: list[asyncio.Future[None]] = []
        self._waiter: NextWaiter | None = None  # parked GET /next
        self._queued: Invocation | None = None  # invoke() came before GET /next
        self._current: Invocation | None = None  # delivered; its id is the one accepted
        self._answered = False
        self._result: asyncio.Future[InvocationResult] | None = None
        self._connections: set[NextWaiter] = set()
        # Lamina's standby extension: a sandbox started before its function was chosen parks a
        # GET on the assignment path; the worker answers it once with the function's settings.
        self._assignment: bytes | None = None
        self._assignment_sent = False
        self._assignment_waiter: NextWaiter | None = None
        self._parked_for_assignment: asyncio.Event | None = None
        # Called when the runtime parks on GET /next with nothing to do: the worker freezes the
        # environment then, as AWS does once the runtime asks for its next event.
        self.on_idle: Callable[[], None] | None = None

    # -- the worker's side ------------------------------------------------------------------

    async def wait_ready(self) -> None:
        """Resolve when the runtime first asks for /next; raise InitError if init failed."""
        self._check_open()
        if self._init_error is not None:
            raise self._init_error
        if self._ready:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ready_waiters.append(fut)
        try:
            await fut
        finally:
            if fut in self._ready_waiters:
                self._ready_waiters.remove(fut)

    async def invoke(self, inv: Invocation) -> InvocationResult:
        """Hand ``inv`` to the (pending or next) GET /next; resolve on its /response or /error."""
        self._check_open()
        if self._init_error is not None:
            raise self._init_error
        if self._result is not None:
            raise InternalError("an invocation is already in flight on this environment")
        fut: asyncio.Future[InvocationResult] = asyncio.get_running_loop().create_future()
        self._result = fut
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._deliver(inv)
            waiter.deliver(inv)
        else:
            self._queued = inv
        try:
            return await fut
        finally:
            if self._result is fut:
                self._result = None
            if self._queued is inv:
                self._queued = None

    def assign(self, document: bytes) -> None:
        """Answers the standby runtime's assignment request (now, or when it asks)."""
        self._check_open()
        if self._assignment is not None:
            raise InternalError("this environment has been assigned already")
        self._assignment = document
        waiter, self._assignment_waiter = self._assignment_waiter, None
        if waiter is not None:
            self._assignment_sent = True
            waiter.deliver_assignment(document)

    async def wait_standby(self) -> None:
        """Resolves once the standby runtime has asked for its assignment (fully warm)."""
        self._check_open()
        if self._assignment_waiter is not None or self._assignment_sent:
            return
        if self._parked_for_assignment is None:
            self._parked_for_assignment = asyncio.Event()
        await self._parked_for_assignment.wait()
        self._check_open()

    def close(self) -> None:
        """Fail everyone still waiting and close every runtime connection."""
        if self._closed:
            return
        self._closed = True
        for fut in self._ready_waiters:
            if not fut.done():
                fut.set_exception(ChannelClosed("runtime channel closed before init finished"))
        self._ready_waiters.clear()
        if self._result is not None and not self._result.done():
            self._result.set_exception(ChannelClosed("runtime channel closed mid-invocation"))
        self._waiter = None
        if self._parked_for_assignment is not None:
            self._parked_for_assignment.set()  # wakes wait_standby, which then raises
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def parked(self) -> bool:
        """The runtime waits on GET /next with nothing to do."""
        return self._waiter is not None and self._queued is None

    # -- the HTTP protocol's side -----------------------------------------------------------

    def connected(self, conn: NextWaiter) -> None:
        """Track a runtime connection so :meth:`close` can drop it."""
        if self._closed:
            conn.abort()
        else:
            self._connections.add(conn)

    def disconnected(self, conn: NextWaiter) -> None:
        self._connections.discard(conn)
        if self._waiter is conn:
            self._waiter = None
        if self._assignment_waiter is conn:
            self._assignment_waiter = None

    def request_assignment(self, conn: NextWaiter) -> bytes | Outcome | None:
        """GET .../lamina/assignment: the document now, None when parked; refused after use."""
        if self._assignment_sent or self._ready or self._assignment_waiter is not None:
            return Outcome.INVALID_STATE  # answered once, before init, to one connection
        if self._assignment is not None:
            self._assignment_sent = True
            return self._assignment
        self._assignment_waiter = conn
        if self._parked_for_assignment is not None:
            self._parked_for_assignment.set()
        return None

    def request_next(self, conn: NextWaiter) -> Invocation | Outcome | None:
        """GET /next: the invocation to send now, None when parked, or why it is refused."""
        if self._current is not None and not self._answered:
            return Outcome.INVALID_STATE  # asked for more work without answering this one
        if self._waiter is not None and self._waiter is not conn:
            return Outcome.INVALID_STATE  # one runtime, one long poll
        self._current = None
        if not self._ready:
            self._ready = True
            for fut in self._ready_waiters:
                if not fut.done():
                    fut.set_result(None)
        inv = self._queued
        if inv is not None:
            self._deliver(inv)
            return inv
        self._waiter = conn
        if self.on_idle is not None:
            self.on_idle()
        return None

    def post_result(
        self, request_id: str, ok: bool, body: bytes, error_type: str | None
    ) -> Outcome:
        """POST .../{id}/response or /error (or an oversize body): end the invocation once."""
        current = self._current
        if current is None or request_id != current.request_id:
            return Outcome.INVALID_REQUEST_ID
        if self._answered:
            return Outcome.INVALID_STATE
        self._answered = True
        if self._result is not None and not self._result.done():
            self._result.set_result(InvocationResult(request_id, ok, body, error_type))
        return Outcome.ACCEPTED

    def post_init_error(self, error_type: str | None, body: bytes) -> Outcome:
        """POST /runtime/init/error: fails init, or (as in RIE) the invocation in flight."""
        if not self._ready and self._init_error is None:
            err = InitError(error_type, body)
            self._init_error = err
            for fut in self._ready_waiters:
                if not fut.done():
                    fut.set_exception(err)
            if self._result is not None and not self._result.done():
                self._result.set_exception(err)
            return Outcome.ACCEPTED
        if self._current is not None and not self._answered:
            return self.post_result(self._current.request_id, False, body, error_type)
        return Outcome.INVALID_STATE

    # -- internals --------------------------------------------------------------------------

    def _deliver(self, inv: Invocation) -> None:
        self._queued = None
        self._current = inv
        self._answered = False

    def _check_open(self) -> None:
        if self._closed:
            raise ChannelClosed("runtime channel is closed")
