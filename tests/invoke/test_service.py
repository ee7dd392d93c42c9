"""InvokeService on fake Functions and Worker: request checks, alias routing, error mapping."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections import Counter
from typing import Any, cast

import pytest

from lamina.control import arns
from lamina.control.functions import Functions, Resolved
from lamina.control.model import Alias, Function, FunctionVersion
from lamina.errors import (
    InvalidParameterValue,
    InvalidRequestContent,
    RequestTooLarge,
    ResourceConflict,
    ResourceNotFound,
    TooManyRequests,
)
from lamina.invoke.concurrency import Concurrency
from lamina.invoke.service import SYNC_PAYLOAD_LIMIT, InvokeRequest, InvokeService
from lamina.runtime import Invocation, InvocationResult
from lamina.worker.environment import Failure
from lamina.worker.worker import RunResult, Worker

REGION, ACCOUNT = "us-east-1", "000000000000"
FN_ARN = arns.function_arn(REGION, ACCOUNT, "fn", None)


def version(v: str, state: str = "Active") -> FunctionVersion:
    return FunctionVersion(
        name="fn", version=v, arn=FN_ARN, runtime="python3.11", role="r", handler="app.h",
        code_sha256="x", code_size=1, code_key=f"key-{v}", revision_id="rev",
        last_modified="2024-01-01T00:00:00.000+0000", state=state, timeout=3,
    )


class FakeFunctions:
    """resolve/alias/ref/arn over a dict of versions and one optional alias."""

    def __init__(self) -> None:
        self.function = Function("fn", FN_ARN, "2024-01-01T00:00:00.000+0000")
        self.versions = {"$LATEST": version("$LATEST"), "1": version("1"), "2": version("2")}
        self.aliases: dict[str, Alias] = {}

    def ref(self, function_name: str, qualifier: str | None = None) -> arns.FunctionRef:
        return arns.FunctionRef(function_name, qualifier)

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return arns.function_arn(REGION, ACCOUNT, name, qualifier)

    def resolve(self, function_name: str, qualifier: str | None = None) -> Resolved:
        if function_name != "fn":
            raise ResourceNotFound(f"Function not found: {self.arn(function_name)}")
        q = qualifier or "$LATEST"
        if q in self.versions:
            return Resolved(self.function, self.versions[q])
        alias = self.aliases[q]
        return Resolved(self.function, self.versions[alias.function_version], alias=q)

    def alias(self, function: str, name: str) -> Alias:
        return self.aliases[name]


class FakeWorker:
    def __init__(self) -> None:
        self.outcome: InvocationResult | Failure | None = None
        self.runs: list[tuple[FunctionVersion, Invocation]] = []
        self.tail = "START RequestId: x\nhello \u00e9\nEND RequestId: x\n"

    async def run(self, v: FunctionVersion, inv: Invocation) -> RunResult:
        self.runs.append((v, inv))
        outcome = self.outcome or InvocationResult(inv.request_id, True, b'{"ok": true}', None)
        return RunResult(outcome, v.version, self.tail, cold=False, duration_ms=1.0)


class Setup:
    def __init__(self, seed: int = 7) -> None:
        self.functions = FakeFunctions()
        self.worker = FakeWorker()
        self.concurrency = Concurrency(account_limit=10, unreserved_min=0)
        self.service = InvokeService(
            cast(Functions, self.functions), cast(Worker, self.worker), self.concurrency,
            rng=random.Random(seed),
        )

    def invoke(self, **kwargs: Any) -> Any:
        fields: dict[str, Any] = {"function_name": "fn", "qualifier": None, "payload": b"{}"}
        fields.update(kwargs)
        return asyncio.run(self.service.invoke(InvokeRequest(**fields)))


@pytest.fixture
def s() -> Setup:
    return Setup()


def test_request_response_runs_the_function(s: Setup) -> None:
    out = s.invoke(payload=b'{"a": 1}')
    assert (out.status, out.payload, out.function_error) == (200, b'{"ok": true}', None)
    assert out.executed_version == "$LATEST" and out.log_result is None
    (v, inv), = s.worker.runs
    assert inv.payload == b'{"a": 1}' and inv.request_id == out.request_id
    assert inv.function_arn == FN_ARN
    assert s.concurrency.total_in_flight == 0


def test_empty_payload_becomes_an_empty_object(s: Setup) -> None:
    s.invoke(payload=b"")
    assert s.worker.runs[0][1].payload == b"{}"


def test_dry_run_is_204_and_runs_nothing(s: Setup) -> None:
    out = s.invoke(invocation_type="DryRun", payload=b"not json")
    assert (out.status, out.payload) == (204, b"")
    assert s.worker.runs == []


def test_event_invocations_are_refused(s: Setup) -> None:
    with pytest.raises(InvalidParameterValue):
        s.invoke(invocation_type="Event")
    assert s.worker.runs == []


def test_payload_limit(s: Setup) -> None:
    body = b'"' + b"x" * (SYNC_PAYLOAD_LIMIT - 3) + b'"'
    assert len(body) == SYNC_PAYLOAD_LIMIT - 1
    assert s.invoke(payload=body).status == 200
    with pytest.raises(RequestTooLarge) as exc:
        s.invoke(payload=body + b" ")
    assert exc.value.status == 413 and str(SYNC_PAYLOAD_LIMIT) in exc.value.message


@pytest.mark.parametrize("payload", [b"{", b"hello", b"\xff\xfe", b"[" * 100_000])
def test_non_json_is_invalid_request_content(s: Setup, payload: bytes) -> None:
    with pytest.raises(InvalidRequestContent) as exc:
        s.invoke(payload=payload)
    assert exc.value.message.startswith("Could not parse request body into json")
    assert s.worker.runs == []


def test_inactive_version_is_a_conflict(s: Setup) -> None:
    s.functions.versions["1"] = version("1", state="Pending")
    with pytest.raises(ResourceConflict) as exc:
        s.invoke(qualifier="1")
    assert "Pending" in exc.value.message


def test_unknown_function_is_not_found(s: Setup) -> None:
    with pytest.raises(ResourceNotFound):
        s.invoke(function_name="nope")


def test_weighted_alias_picks_with_the_seeded_rng(s: Setup) -> None:
    s.functions.aliases["live"] = Alias(
        "live", "fn", f"{FN_ARN}:live", function_version="1", revision_id="r", routing={"2": 0.25}
    )
    picks = Counter(s.invoke(qualifier="live").executed_version for _ in range(400))
    assert set(picks) == {"1", "2"}
    assert 60 <= picks["2"] <= 140  # 25 % of 400, give or take
    assert {inv.function_arn for _, inv in s.worker.runs} == {f"{FN_ARN}:live"}
    again = Setup(seed=7)
    again.functions.aliases = s.functions.aliases
    replay = [again.invoke(qualifier="live").executed_version for _ in range(20)]
    first = [v.version for v, _ in s.worker.runs[:20]]
    assert replay == first  # same seed, same picks


def test_unhandled_runtime_error_passes_the_document_through(s: Setup) -> None:
    doc = b'{"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}'
    s.worker.outcome = InvocationResult("r", False, doc, "ValueError")
    out = s.invoke()
    assert (out.status, out.payload, out.function_error) == (200, doc, "Unhandled")


@pytest.mark.parametrize(
    ("error_type", "message"),
    [
        ("Sandbox.Timedout", "Task timed out after 3.00 seconds"),
        ("Runtime.ExitError", "Runtime exited with error: exit status 1"),
        ("Runtime.OutOfMemory", "Runtime exited with error: signal: killed"),
        ("Runtime.InitTimeout", "Init timed out after 10.00 seconds"),
    ],
)
def test_platform_failures_become_unhandled_errors(s: Setup, error_type: str, message: str) -> None:
    s.worker.outcome = Failure(error_type, message)
    out = s.invoke()
    assert out.status == 200 and out.function_error == "Unhandled"
    doc = json.loads(out.payload)
    assert doc["errorType"] == error_type
    assert doc["errorMessage"] == f"RequestId: {out.request_id} Error: {message}"


def test_init_error_returns_the_runtimes_document(s: Setup) -> None:
    doc = b'{"errorMessage": "Unable to import module", "errorType": "Runtime.ImportModuleError"}'
    s.worker.outcome = Failure("Runtime.ImportModuleError", "init error", doc)
    out = s.invoke()
    assert (out.payload, out.function_error) == (doc, "Unhandled")


def test_log_tail_is_base64_of_the_last_4k(s: Setup) -> None:
    out = s.invoke(log_type="Tail")
    assert base64.b64decode(out.log_result).decode() == s.worker.tail
    s.worker.tail = "a" * 3000 + "b" * 3000
    out = s.invoke(log_type="Tail")
    tail = base64.b64decode(out.log_result)
    assert len(tail) == 4096 and tail == (s.worker.tail.encode())[-4096:]


def test_throttled_invoke_never_reaches_the_worker(s: Setup) -> None:
    s.concurrency.set_reserved("fn", 0)
    with pytest.raises(TooManyRequests):
        s.invoke()
    assert s.worker.runs == []


def test_lease_is_released_when_the_worker_fails(s: Setup) -> None:
    async def broken(v: FunctionVersion, inv: Invocation) -> RunResult:
        raise OSError("sandbox setup failed")

    s.worker.run = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        s.invoke()
    assert s.concurrency.total_in_flight == 0
