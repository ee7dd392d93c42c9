"""Lambda API adapters for Invoke and reserved concurrency."""

from __future__ import annotations

from typing import Any

from lamina.api.app import Handler, RequestContext
from lamina.control.functions import Functions
from lamina.errors import InvalidParameterValue, InvalidRequestContent
from lamina.invoke.concurrency import Concurrency
from lamina.invoke.service import InvokeRequest, InvokeService

CLIENT_CONTEXT_MAX = 3583  # bytes of base64, AWS's limit


class InvokeHandlers:
    def __init__(self, service: InvokeService, functions: Functions, concurrency: Concurrency) -> None:
        self.service = service
        self.functions = functions
        self.concurrency = concurrency

    def handlers(self) -> dict[str, Handler]:
        return {
            "Invoke": self.invoke,
            "PutFunctionConcurrency": self.put_function_concurrency,
            "GetFunctionConcurrency": self.get_function_concurrency,
            "DeleteFunctionConcurrency": self.delete_function_concurrency,
        }

    async def invoke(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        client_context = p.get("ClientContext")
        if client_context is not None:
            if len(client_context) > CLIENT_CONTEXT_MAX:
                raise InvalidParameterValue("Client context must be 3583 bytes or less.")
            if any(c in client_context for c in "\r\n"):
                raise InvalidRequestContent("Client context must be base64-encoded JSON.")
        trace = ctx.headers.get("x-amzn-trace-id")
        if trace is not None and any(c in trace for c in "\r\n"):
            trace = None
        outcome = await self.service.invoke(
            InvokeRequest(
                function_name=p["FunctionName"],
                qualifier=p.get("Qualifier") or None,
                payload=p.get("Payload") or b"",
                invocation_type=p.get("InvocationType") or "RequestResponse",
                log_type=p.get("LogType"),
                client_context=client_context,
                trace_id=trace,
                request_id=ctx.request_id,
            )
        )
        return {
            "StatusCode": outcome.status,
            "FunctionError": outcome.function_error,
            "LogResult": outcome.log_result,
            "ExecutedVersion": outcome.executed_version,
            "Payload": outcome.payload if outcome.status != 204 else None,
        }

    async def put_function_concurrency(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        value = int(p["ReservedConcurrentExecutions"])
        name = self.functions.resolve(p["FunctionName"]).function.name
        self.concurrency.check_reservation(name, value)
        self.functions.set_reserved_concurrency(name, value)
        self.concurrency.set_reserved(name, value)
        return {"ReservedConcurrentExecutions": value}

    async def get_function_concurrency(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        function = self.functions.resolve(p["FunctionName"]).function
        if function.reserved_concurrency is None:
            return {}
        return {"ReservedConcurrentExecutions": function.reserved_concurrency}

    async def delete_function_concurrency(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        name = self.functions.resolve(p["FunctionName"]).function.name
        self.functions.set_reserved_concurrency(name, None)
        self.concurrency.set_reserved(name, None)
