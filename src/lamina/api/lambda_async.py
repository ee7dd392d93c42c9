"""Lambda API adapters for asynchronous invocation: event invoke configs and InvokeAsync.

The Event branch of Invoke itself lives in InvokeService; this module holds the five
*FunctionEventInvokeConfig operations and the deprecated InvokeAsync, which queues an event
exactly like ``Invoke`` with ``X-Amz-Invocation-Type: Event`` does.
"""

from __future__ import annotations

import time
from typing import Any

from lamina.api.app import BodyTooLarge, Handler, RequestContext
from lamina.control.event_config import EventInvokeConfigs
from lamina.control.model import EventInvokeConfig
from lamina.invoke.events import QueuedEvent
from lamina.invoke.service import ASYNC_PAYLOAD_LIMIT, Enqueue, check_json, new_trace_id


def event_invoke_config_shape(config: EventInvokeConfig) -> dict[str, Any]:
    """The FunctionEventInvokeConfig output shape: unset limits left out, both destinations
    always present (``{}`` when unset), LastModified as epoch seconds (the model's timestamp)."""
    out: dict[str, Any] = {
        "LastModified": config.last_modified,
        "FunctionArn": config.function_arn,
        "DestinationConfig": {
            "OnSuccess": {"Destination": config.on_success} if config.on_success else {},
            "OnFailure": {"Destination": config.on_failure} if config.on_failure else {},
        },
    }
    if config.maximum_retry_attempts is not None:
        out["MaximumRetryAttempts"] = config.maximum_retry_attempts
    if config.maximum_event_age_seconds is not None:
        out["MaximumEventAgeInSeconds"] = config.maximum_event_age_seconds
    return out


class AsyncHandlers:
    def __init__(
        self, configs: EventInvokeConfigs, enqueue: Enqueue, payload_limit: int = ASYNC_PAYLOAD_LIMIT
    ) -> None:
        self.configs = configs
        self.functions = configs.functions
        self.enqueue = enqueue
        self.payload_limit = payload_limit

    def handlers(self) -> dict[str, Handler]:
        return {
            "PutFunctionEventInvokeConfig": self.put_config,
            "GetFunctionEventInvokeConfig": self.get_config,
            "UpdateFunctionEventInvokeConfig": self.update_config,
            "DeleteFunctionEventInvokeConfig": self.delete_config,
            "ListFunctionEventInvokeConfigs": self.list_configs,
            "InvokeAsync": self.invoke_async,
        }

    async def put_config(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        config = self.configs.put(
            p["FunctionName"], p.get("Qualifier") or None, p.get("MaximumRetryAttempts"),
            p.get("MaximumEventAgeInSeconds"), p.get("DestinationConfig"),
        )
        return event_invoke_config_shape(config)

    async def update_config(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        config = self.configs.update(
            p["FunctionName"], p.get("Qualifier") or None, p.get("MaximumRetryAttempts"),
            p.get("MaximumEventAgeInSeconds"), p.get("DestinationConfig"),
        )
        return event_invoke_config_shape(config)

    async def get_config(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return event_invoke_config_shape(self.configs.get(p["FunctionName"], p.get("Qualifier") or None))

    async def delete_config(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        self.configs.delete(p["FunctionName"], p.get("Qualifier") or None)

    async def list_configs(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        page, marker = self.configs.list(p["FunctionName"], p.get("Marker"), p.get("MaxItems"))
        out: dict[str, Any] = {"FunctionEventInvokeConfigs": [event_invoke_config_shape(c) for c in page]}
        if marker:
            out["NextMarker"] = marker
        return out

    async def invoke_async(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        """InvokeAsync (deprecated): 202 once the event is durable; the function runs later."""
        payload = bytes(p.get("InvokeArgs") or b"")
        if len(payload) > self.payload_limit:
            raise BodyTooLarge(
                f"Request must be smaller than {self.payload_limit} bytes for the InvokeAsync operation"
            )
        resolved = self.functions.resolve(p["FunctionName"])
        check_json(payload)
        qualifier = self.functions.ref(p["FunctionName"]).qualifier
        trace = ctx.headers.get("x-amzn-trace-id")
        if trace is not None and any(c in trace for c in "\r\n"):
            trace = None
        await self.enqueue(
            QueuedEvent(
                request_id=ctx.request_id,
                function=resolved.function.name,
                qualifier=qualifier,
                payload=payload or b"{}",
                enqueued_at=time.time(),
                trace_id=trace or new_trace_id(),
            )
        )
        return {"Status": 202}
