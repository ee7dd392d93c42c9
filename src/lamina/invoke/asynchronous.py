"""Assembles asynchronous invocation: the durable queue, the poller, destinations.

Event invokes (and InvokeAsync, and destination records) go through ``enqueue``, which returns
once the event is durable; the poller runs each through the same InvokeService path as a
synchronous invoke, with the event's stable request id, and applies the retry policy.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from lamina.control.event_config import EventInvokeConfigs
from lamina.control.functions import Functions
from lamina.invoke.destinations import AuthorizeDelivery, DestinationRouter, FunctionDestination
from lamina.invoke.events import QueuedEvent
from lamina.invoke.poller import AsyncInvoker, PollerSettings
from lamina.invoke.queue import SqliteEventQueue, events_db_path
from lamina.invoke.retry import RetryDelays
from lamina.invoke.service import InvokeOutcome, InvokeRequest, InvokeService, new_trace_id
from lamina.settings import Settings


@dataclass
class AsyncInvocations:
    queue: SqliteEventQueue
    invoker: AsyncInvoker
    configs: EventInvokeConfigs

    async def enqueue(self, event: QueuedEvent) -> None:
        """Durably queues ``event`` and wakes the poller; returns once it is on disk."""
        await self.invoker.put(event)

    def start(self) -> None:
        self.invoker.start()

    async def close(self) -> None:
        await self.invoker.stop()
        await self.queue.close()


async def open_async(
    settings: Settings, functions: Functions, invoke_service: InvokeService,
    authorize_delivery: AuthorizeDelivery | None = None,
) -> AsyncInvocations:
    """Opens the queue (recovering leases a crash left open) and wires the poller to the
    invoke service; ``invoke_service`` gets the enqueue path for Event invokes. Records go to
    destination functions only if ``authorize_delivery`` lets the source's role invoke them."""
    queue = await SqliteEventQueue.open(events_db_path(settings.data_dir))
    configs = EventInvokeConfigs(functions)

    async def run_event(event: QueuedEvent) -> InvokeOutcome:
        return await invoke_service.invoke(
            InvokeRequest(
                function_name=event.function,
                qualifier=event.qualifier,
                payload=event.payload,
                invocation_type="RequestResponse",
                client_context=event.client_context,
                trace_id=event.trace_id,
                request_id=event.request_id,
            )
        )

    async def to_function(arn: str, payload: bytes) -> None:
        """A destination record becomes an Event invoke of the destination function."""
        ref = functions.ref(arn)
        name = functions.resolve(ref.name, ref.qualifier).function.name
        await invoker.put(
            QueuedEvent(
                request_id=str(uuid.uuid4()),
                function=name,
                qualifier=ref.qualifier,
                payload=payload,
                enqueued_at=time.time(),
                trace_id=new_trace_id(),
            )
        )

    delays = RetryDelays(
        function_error=settings.async_retry_delays,
        throttle_base=settings.async_throttle_base,
        throttle_cap=settings.async_throttle_cap,
    )
    invoker = AsyncInvoker(
        queue,
        run_event,
        configs.config_for,
        DestinationRouter({"lambda": FunctionDestination(to_function, authorize_delivery)}),
        lambda name, qualifier: functions.arn(name, qualifier or "$LATEST"),
        settings=PollerSettings(delays=delays),
    )
    invoke_service.enqueue = invoker.put
    return AsyncInvocations(queue, invoker, configs)
