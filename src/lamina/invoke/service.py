"""Synchronous invoke: resolve, check, lease concurrency, run in an environment, report.

The data plane's front door under the API: everything Invoke does except HTTP. A function's
own failure (an exception, a timeout, a crash) is a result with ``function_error`` set, never
an exception; exceptions here are API errors (not found, throttled, bad payload).
"""

from __future__ import annotations

import json
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lamina.control.aliases import pick_version
from lamina.control.functions import Functions
from lamina.control.model import FunctionVersion
from lamina.errors import (
    InvalidParameterValue,
    InvalidRequestContent,
    RequestTooLarge,
    ResourceConflict,
)
from lamina.invoke.concurrency import Concurrency
from lamina.invoke.events import QueuedEvent
from lamina.runtime import Invocation, InvocationResult
from lamina.telemetry import traces
from lamina.telemetry.metrics import LambdaMetrics
from lamina.telemetry.traces import TraceBuilder, TraceRecorder
from lamina.worker.environment import Failure
from lamina.worker.worker import Worker, encode_tail

SYNC_PAYLOAD_LIMIT = 6_291_456
ASYNC_PAYLOAD_LIMIT = 1_048_576  # AWS's Event invoke limit (raised from 256 KB in 2025)

# Writes an Event invoke durably; returns only once it would survive a crash (EventQueue.put).
Enqueue = Callable[[QueuedEvent], Awaitable[None]]


@dataclass(frozen=True)
class InvokeRequest:
    function_name: str
    qualifier: str | None
    payload: bytes
    invocation_type: str = "RequestResponse"
    log_type: str | None = None
    client_context: str | None = None
    trace_id: str | None = None
    # The API request's id: AWS answers an Invoke with x-amzn-RequestId equal to the
    # invocation's request id (context.aws_request_id, the START/END/REPORT lines).
    request_id: str | None = None


@dataclass(frozen=True)
class InvokeOutcome:
    status: int
    payload: bytes
    executed_version: str | None = None
    function_error: str | None = None
    log_result: str | None = None
    request_id: str = ""


def check_json(payload: bytes) -> None:
    """AWS refuses a payload that is not JSON with InvalidRequestContentException."""
    if not payload:
        return
    try:
        json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestContent(
            f"Could not parse request body into json: Could not parse payload into json: {exc}"
        ) from None


def new_trace_id(now: float | None = None) -> str:
    """An X-Ray trace header for an invoke that came without one (Lambda always sets one)."""
    epoch = int(time.time() if now is None else now)
    return f"Root=1-{epoch:08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"


def error_document(error_type: str, message: str, request_id: str) -> bytes:
    return json.dumps(
        {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": []}
    ).encode()


class InvokeService:
    def __init__(
        self, functions: Functions, worker: Worker, concurrency: Concurrency, rng: random.Random | None = None,
        enqueue: Enqueue | None = None, async_payload_limit: int = ASYNC_PAYLOAD_LIMIT,
        metrics: LambdaMetrics | None = None, tracer: TraceRecorder | None = None,
    ) -> None:
        self.functions = functions
        self.worker = worker
        self.concurrency = concurrency
        self.rng = rng or random.Random()
        # None until the durable queue is wired: Event invokes are refused rather than lost.
        self.enqueue = enqueue
        self.async_payload_limit = async_payload_limit
        self.metrics = metrics or LambdaMetrics()
        self.tracer = tracer  # None: tracing off (no invoke is ever sampled)

    def _target(self, request: InvokeRequest) -> tuple[FunctionVersion, str]:
        """The version to run and the ARN the caller invoked (weighted aliases pick a version)."""
        resolved = self.functions.resolve(request.function_name, request.qualifier)
        version = resolved.version
        if resolved.alias is not None:
            alias = self.functions.alias(resolved.function.name, resolved.alias)
            chosen = pick_version(alias, self.rng)
            if chosen != version.version:
                version = self.functions.resolve(resolved.function.name, chosen).version
        if version.state != "Active":
            raise ResourceConflict(
                "The operation cannot be performed at this time. The function is currently in "
                f"the following state: {version.state}"
            )
        # What the caller addressed, verbatim: an explicit $LATEST stays in the ARN (AWS's
        # Lambda-Runtime-Invoked-Function-Arn), which Resolved.arn drops.
        ref = self.functions.ref(request.function_name, request.qualifier)
        return version, self.functions.arn(resolved.function.name, ref.qualifier)

    async def invoke(self, request: InvokeRequest) -> InvokeOutcome:
        if request.invocation_type == "Event" and self.enqueue is not None:
            return await self._enqueue(request, self.enqueue)
        if request.invocation_type not in ("RequestResponse", "DryRun"):
            raise InvalidParameterValue(
                "Lamina does not support Event (asynchronous) invocations yet; "
                "use RequestResponse."
            )
        if len(request.payload) >= SYNC_PAYLOAD_LIMIT:
            raise RequestTooLarge(
                f"Request must be smaller than {SYNC_PAYLOAD_LIMIT} bytes for the InvokeFunction operation"
            )
        version, arn = self._target(request)
        if request.invocation_type == "DryRun":
            return InvokeOutcome(status=204, payload=b"", executed_version=None)
        check_json(request.payload)
        request_id = request.request_id or str(uuid.uuid4())
        trace_header = request.trace_id
        segment = None
        if self.tracer is not None and (version.tracing_mode == "Active" or trace_header):
            segment = self._segment(version, request_id, request.trace_id, self.tracer)
            if segment is not None:
                trace_header = f"Root={segment.trace_id};Parent={segment.root_id};Sampled=1"
        try:
            with self.metrics.invoking(version.name, version.version) as probe, self.concurrency.lease(version.name):
                timeout_ms = version.timeout * 1000
                inv = Invocation(
                    request_id=request_id,
                    payload=request.payload or b"{}",
                    deadline_ms=int(time.time() * 1000) + timeout_ms,
                    function_arn=arn,
                    trace_id=trace_header or new_trace_id(),
                    client_context=request.client_context,
                )
                started = time.time()
                run = await self.worker.run(version, inv)
                payload, function_error = _answer(run.outcome, request_id)
                probe.ran(cold=run.cold, duration_ms=run.duration_ms, error=function_error is not None)
        except BaseException:
            if segment is not None:  # throttled or a platform failure: the segment says so
                segment.finish(time.time(), error=True)
            raise
        if segment is not None:
            _phases(segment, started, time.time(), run.duration_ms, run.init_ms, function_error)
        return InvokeOutcome(
            status=200,
            payload=payload,
            executed_version=run.executed_version,
            function_error=function_error,
            log_result=encode_tail(run.log_tail) if request.log_type == "Tail" else None,
            request_id=request_id,
        )

    async def _enqueue(self, request: InvokeRequest, enqueue: Enqueue) -> InvokeOutcome:
        """Event: check what a sync invoke checks, write the event durably, answer 202.

        The 202 goes out only after ``enqueue`` returned, so an acknowledged event is never lost;
        its request id (the API's x-amzn-RequestId) stays the same on every attempt."""
        if len(request.payload) > self.async_payload_limit:
            raise RequestTooLarge(
                f"{len(request.payload)} byte payload is too large for the Event invocation type "
                f"(limit {self.async_payload_limit} bytes)"
            )
        version, _ = self._target(request)
        check_json(request.payload)
        request_id = request.request_id or str(uuid.uuid4())
        trace_header = request.trace_id
        if self.tracer is not None and (version.tracing_mode == "Active" or trace_header):
            # The sampling decision is made here, at the entry, and travels with the event.
            segment = self._segment(version, request_id, trace_header, self.tracer)
            if segment is not None:
                trace_header = f"Root={segment.trace_id};Parent={segment.root_id};Sampled=1"
        await enqueue(
            QueuedEvent(
                request_id=request_id,
                function=version.name,
                qualifier=self.functions.ref(request.function_name, request.qualifier).qualifier,
                payload=request.payload or b"{}",
                enqueued_at=time.time(),
                trace_id=trace_header or new_trace_id(),
                client_context=request.client_context,
            )
        )
        return InvokeOutcome(status=202, payload=b"", request_id=request_id)

    def _segment(
        self, version: FunctionVersion, request_id: str, header_value: str | None, tracer: TraceRecorder
    ) -> TraceBuilder | None:
        """A segment for this invoke if it is sampled; the caller's Root is kept.

        Its root is the API's front end (finished by the API after the response), the queued
        event's attempt (with its queue wait), or, with neither, the invoke itself."""
        header = traces.parse_header(header_value)
        if not traces.should_sample(version.tracing_mode, header):
            return None
        root = header.root if header is not None else traces.new_root()
        parent = header.parent if header is not None else None
        where = traces.origin.get()
        attrs = {"function": version.name, "version": version.version, "request_id": request_id}
        now = time.time()
        if where is not None and where[0] == "frontend":
            segment = tracer.begin(root, "lamina.frontend", where[1], parent, **attrs)
            traces.pending.set(segment)
            return segment
        if where is not None and where[0] == "queue":
            segment = tracer.begin(root, "lamina.event", where[1], parent, **attrs)
            segment.span("lamina.queue", where[1], now)
            return segment
        return tracer.begin(root, "lamina.invocation", now, parent, **attrs)


def _phases(
    segment: TraceBuilder, started: float, ended: float, duration_ms: float, init_ms: float | None,
    function_error: str | None,
) -> None:
    """acquire (with a cold init inside it) then invoke, from the worker's timings."""
    invoke_start = max(started, ended - duration_ms / 1000)
    acquire = segment.span("lamina.acquire", started, invoke_start)
    if init_ms is not None:
        segment.span("lamina.init", max(started, invoke_start - init_ms / 1000), invoke_start, acquire)
    extra = {"function_error": function_error} if function_error else {}
    segment.span("lamina.invoke", invoke_start, ended, **extra)
    if traces.pending.get() is segment:
        segment.response_from = ended  # the API closes the response phase and the segment
    else:
        segment.finish(ended)


def _answer(outcome: InvocationResult | Failure, request_id: str) -> tuple[bytes, str | None]:
    """The response payload and X-Amz-Function-Error for what happened in the environment."""
    if isinstance(outcome, InvocationResult):
        # The runtime's error document (or the platform's, for an oversize response) as is.
        return outcome.body, None if outcome.ok else "Unhandled"
    if outcome.body:  # the runtime reported its own init error document
        return outcome.body, "Unhandled"
    message = f"RequestId: {request_id} Error: {outcome.message}"
    return error_document(outcome.error_type, message, request_id), "Unhandled"
