"""Where invocation records go: the destination seam and Lamina's function destination.

AWS sends an asynchronous invocation's record to a function, an SQS queue, an SNS topic or an
EventBridge bus. The poller only knows ``Destinations.send(record, arn)``; ``DestinationRouter``
picks an implementation by the ARN's service (``lambda`` today), so an SQS-compatible
destination is one more class with ``send`` and one more entry in the router's table.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

from lamina.errors import InternalError

# Enqueues ``payload`` as an Event invoke of the function ``function_arn`` names; returns once
# the event is durably queued (the poller acks the source event only after that).
EnqueueEvent = Callable[[str, bytes], Awaitable[None]]


class Destinations(Protocol):
    """Delivers invocation records.

    ``send`` returns once the record is durably handed over; it raises a LaminaError when it
    cannot deliver (unknown destination, full disk), and the poller then keeps the event
    dead-lettered instead of losing it. Delivery is at least once: a crash between ``send``
    and the ack sends the record again.
    """

    async def send(self, record: dict[str, Any], destination_arn: str) -> None: ...


class UnsupportedDestination(InternalError):
    """No destination implementation handles this ARN's service (yet)."""


# Raises (a LaminaError) when the function that produced a record (its qualified ARN, first)
# may not invoke the destination (second): delivery runs as the source's execution role.
AuthorizeDelivery = Callable[[str, str], None]


class FunctionDestination:
    """A Lamina function as a destination: the record becomes that function's Event payload."""

    def __init__(self, enqueue: EnqueueEvent, authorize: AuthorizeDelivery | None = None) -> None:
        self._enqueue = enqueue
        self._authorize = authorize

    async def send(self, record: dict[str, Any], destination_arn: str) -> None:
        if self._authorize is not None:
            self._authorize(record["requestContext"]["functionArn"], destination_arn)
        await self._enqueue(destination_arn, json.dumps(record, separators=(",", ":")).encode())


class DestinationRouter:
    """Dispatches on the ARN's service field (``arn:aws:<service>:...``)."""

    def __init__(self, routes: Mapping[str, Destinations]) -> None:
        self._routes = dict(routes)

    async def send(self, record: dict[str, Any], destination_arn: str) -> None:
        parts = destination_arn.split(":")
        route = self._routes.get(parts[2]) if len(parts) > 5 and parts[0] == "arn" else None
        if route is None:
            raise UnsupportedDestination(f"no destination handles {destination_arn}")
        await route.send(record, destination_arn)


def invocation_record(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    invoke_count: int,
    request_payload: bytes,
    response: Response | None,
    now: float,
) -> dict[str, Any]:
    """The record AWS sends to a destination, key for key.

    ``response`` is None when the function never ran to an answer in the deciding try (an
    event that aged out while throttled); the record then has no response members.
    """
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": _timestamp(now),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": _json_or_text(request_payload, empty={}),
    }
    if response is not None:
        context: dict[str, Any] = {
            "statusCode": response.status,
            "executedVersion": response.executed_version,
        }
        if response.function_error is not None:
            context["functionError"] = response.function_error
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(response.payload, empty=None)
    return record


class Response(Protocol):
    """What the record needs of an invoke's outcome (InvokeService's InvokeOutcome has it)."""

    @property
    def status(self) -> int: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def executed_version(self) -> str | None: ...
    @property
    def function_error(self) -> str | None: ...


def _timestamp(now: float) -> str:
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _json_or_text(data: bytes, *, empty: Any) -> Any:
    """Payloads are JSON on the way in; a function may still answer with anything."""
    if not data:
        return empty
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return data.decode("utf-8", errors="replace")
