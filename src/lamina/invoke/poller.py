"""The asynchronous invoker: one poll loop on the event loop feeding queued events to ``run``.

The loop leases a batch, starts each event as its own task and goes back for more until
``max_in_flight`` events are running; when the queue is empty it backs off (5 ms doubling to
200 ms) unless ``notify`` wakes it, and it backs off separately when the queue fails. Each
event's try is classified as AWS does: success, function error (costs an attempt), throttle or
platform error (requeued with backoff, no attempt). When an event is done, its record goes to
the OnSuccess/OnFailure destination; a failed event without one (or whose destination fails)
is dead-lettered: kept and listed by ``lamina events``, never dropped. The ack comes last, so a
crash anywhere before it only means the event (or its record) is delivered again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from lamina.errors import ResourceNotFound, TooManyRequests
from lamina.invoke.destinations import Destinations, Response, invocation_record
from lamina.invoke.events import EventQueue, QueuedEvent
from lamina.invoke.retry import (
    Condition,
    ErrorKind,
    EventConfig,
    GiveUp,
    RetryDelays,
    decide,
    exhausted,
    expired,
)
from lamina.telemetry import traces
from lamina.telemetry.metrics import LambdaMetrics

log = logging.getLogger(__name__)

RunEvent = Callable[[QueuedEvent], Awaitable[Response]]
# (function, qualifier) -> its settings, as an EventConfig or the tuple
# (max_retries, max_age, on_success, on_failure) that control.event_config's AsyncPolicy is.
ConfigFor = Callable[[str, str | None], EventConfig | tuple[int, float, str | None, str | None]]
FunctionArn = Callable[[str, str | None], str]  # (function, qualifier) -> qualified ARN


@dataclass(frozen=True)
class PollerSettings:
    batch_size: int = 16
    max_in_flight: int = 64
    # Longer than the longest function timeout (900 s): a lease must not expire mid-run.
    lease_seconds: float = 960.0
    idle_backoff: tuple[float, float] = (0.005, 0.2)
    error_backoff: tuple[float, float] = (0.1, 5.0)
    delays: RetryDelays = field(default_factory=RetryDelays)


class AsyncInvoker:
    def __init__(
        self,
        queue: EventQueue,
        run: RunEvent,
        config_for: ConfigFor,
        destinations: Destinations,
        function_arn: FunctionArn,
        *,
        settings: PollerSettings | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        metrics: LambdaMetrics | None = None,
    ) -> None:
        self.queue = queue
        self._run = run
        self._config_for = config_for
        self._destinations = destinations
        self._function_arn = function_arn
        self.settings = settings or PollerSettings()
        self._clock = clock
        self._new_id = new_id
        self.metrics = metrics or LambdaMetrics()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def enqueue(
        self,
        function: str,
        qualifier: str | None,
        payload: bytes,
        *,
        request_id: str | None = None,
        trace_id: str | None = None,
        client_context: str | None = None,
    ) -> QueuedEvent:
        """Durably queues an Event invoke (acknowledge the caller after this returns)."""
        event = QueuedEvent(
            request_id=request_id or self._new_id(), function=function, qualifier=qualifier,
            payload=payload, enqueued_at=self._clock(), trace_id=trace_id, client_context=client_context,
        )  # fmt: skip
        await self.put(event)
        return event

    async def put(self, event: QueuedEvent) -> None:
        """Durably queues ``event`` and wakes the poller (InvokeService's ``Enqueue``)."""
        await self.queue.put(event)
        self.metrics.event_received(event.function, event.qualifier)
        self.notify()

    def notify(self) -> None:
        """Something may be runnable now: skip the rest of the idle backoff."""
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._loop_task = asyncio.create_task(self._poll_loop(), name="async-invoker")

    async def stop(self, grace: float = 5.0) -> None:
        """Stops polling; events still running after ``grace`` are cancelled with their leases
        left open, so a restart runs them again (counted as an attempt)."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def poll_once(self) -> int:
        """Leases up to a batch (within the in-flight limit) and starts each event; returns how many."""
        room = min(self.settings.batch_size, self.settings.max_in_flight - len(self._tasks))
        if room <= 0:
            return 0
        leases = await self.queue.lease(room, self._clock(), self.settings.lease_seconds)
        for lease in leases:
            task = asyncio.create_task(self._process(lease.event), name=f"event-{lease.event.request_id}")
            self._tasks.add(task)
            task.add_done_callback(self._done)
        return len(leases)

    async def drain(self) -> None:
        """Waits until no event is running (tests and shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a slot is free

    async def _poll_loop(self) -> None:
        idle_min, idle_max = self.settings.idle_backoff
        error_min, error_max = self.settings.error_backoff
        idle, error = idle_min, error_min
        while not self._stopping:
            try:
                started = await self.poll_once()
            except Exception:
                log.exception("event queue lease failed; backing off %.2fs", error)
                await self._pause(error)
                error = min(error * 2, error_max)
                continue
            error = error_min
            if started:
                idle = idle_min
                continue
            await self._pause(idle)
            idle = min(idle * 2, idle_max)

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _process(self, event: QueuedEvent) -> None:
        try:
            await self._attempt(event)
        except Exception:
            # The lease stays open; it expires and the event runs again (one attempt more).
            log.exception("event %s: queue update failed", event.request_id)

    async def _attempt(self, event: QueuedEvent) -> None:
        config = self._config(event)
        if expired(event.enqueued_at, self._clock(), config):
            return await self._finish(event, config, "EventAgeExceeded", event.attempts, None, "")
        if exhausted(event.attempts, config):  # attempts cut short by a crash used them up
            return await self._finish(event, config, "RetriesExhausted", event.attempts, None, "interrupted")
        kind: ErrorKind
        self.metrics.event_started(event.function, event.qualifier, self._clock() - event.enqueued_at)
        traces.origin.set(("queue", event.enqueued_at))  # this event's own task: its queue wait
        try:
            outcome = await self._run(event)
        except TooManyRequests as exc:
            kind, error = "throttle", f"{exc.code}: {exc.fields.get('Reason', exc.message)}"
        except ResourceNotFound as exc:
            # The function is gone, and its destinations with it: keep the event for operators.
            return await self._dead_letter(event, event.attempts, exc.message)
        except Exception as exc:
            kind, error = "platform", f"{type(exc).__name__}: {exc}"
        else:
            attempts = event.attempts + 1
            if outcome.function_error is None:
                return await self._finish(event, config, "Success", attempts, outcome, "")
            return await self._after_failure(
                event, config, "function", attempts, outcome, outcome.function_error
            )
        return await self._after_failure(event, config, kind, event.attempts, None, error)

    def _config(self, event: QueuedEvent) -> EventConfig:
        try:
            config = self._config_for(event.function, event.qualifier)
            return config if isinstance(config, EventConfig) else EventConfig(*config)
        except Exception:
            # A deleted function has no config; the run then fails with ResourceNotFound.
            log.warning("event %s: no async config for %s; using defaults", event.request_id, event.function)
            return EventConfig()

    async def _after_failure(
        self, event: QueuedEvent, config: EventConfig, kind: ErrorKind, attempts: int,
        outcome: Response | None, error: str,
    ) -> None:  # fmt: skip
        decision = decide(
            kind, attempts=attempts, enqueued_at=event.enqueued_at, now=self._clock(),
            config=config, delays=self.settings.delays,
        )  # fmt: skip
        if isinstance(decision, GiveUp):
            return await self._finish(event, config, decision.condition, attempts, outcome, error)
        await self.queue.retry(
            event.request_id, attempts=attempts, not_before=decision.not_before, error=error
        )

    async def _finish(
        self, event: QueuedEvent, config: EventConfig, condition: Condition, attempts: int,
        outcome: Response | None, error: str,
    ) -> None:  # fmt: skip
        """Sends the record to the destination, then acks; without one, failures are kept."""
        reason = f"{condition}: {error}" if error else condition
        target = config.on_success if condition == "Success" else config.on_failure
        if target is None:
            if condition == "Success":
                return await self.queue.ack(event.request_id)
            return await self._dead_letter(event, attempts, reason)
        record = invocation_record(
            request_id=event.request_id,
            function_arn=self._function_arn(event.function, event.qualifier),
            condition=condition,
            invoke_count=attempts,
            request_payload=event.payload,
            response=outcome,
            now=self._clock(),
        )
        try:
            await self._destinations.send(record, target)
        except Exception as exc:
            log.warning("event %s: destination %s failed: %s", event.request_id, target, exc)
            if condition != "Success":  # a success record is lost, not the event: it ran
                reason = f"{reason}; destination {target} failed: {exc}"
                return await self._dead_letter(event, attempts, reason)
        await self.queue.ack(event.request_id)

    async def _dead_letter(self, event: QueuedEvent, attempts: int, reason: str) -> None:
        await self.queue.dead_letter(event.request_id, attempts=attempts, reason=reason)
        self.metrics.event_dead_lettered(event.function, event.qualifier)
