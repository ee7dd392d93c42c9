"""Event invoke configs on a real SQLite store; the Event branch of Invoke and InvokeAsync on fakes.

The last two sections test invoke/service.py and api/lambda_async.py; they sit here because they
share this module's store-backed fixture (the lead may move them under tests/invoke and tests/api).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any, cast

import pytest

from lamina.api.app import RequestContext
from lamina.api.lambda_async import AsyncHandlers, event_invoke_config_shape
from lamina.api.sigv4 import Identity
from lamina.api.wire import ServiceModel
from lamina.control import arns
from lamina.control.changes import ConfigChange
from lamina.control.event_config import (
    DEFAULT_MAX_AGE_SECONDS,
    DEFAULT_MAX_RETRIES,
    AsyncPolicy,
    EventInvokeConfigs,
    check_dead_letter_target,
)
from lamina.control.functions import Functions
from lamina.control.model import Alias, Function, FunctionVersion
from lamina.errors import (
    AccessDenied,
    ApiError,
    InvalidParameterValue,
    InvalidRequestContent,
    RequestTooLarge,
    ResourceNotFound,
    ValidationError,
)
from lamina.invoke.concurrency import Concurrency
from lamina.invoke.events import QueuedEvent
from lamina.invoke.service import ASYNC_PAYLOAD_LIMIT, InvokeRequest, InvokeService
from lamina.settings import Settings
from lamina.store.artifacts import ArtifactStore
from lamina.store.sqlite import SqliteMetadataStore
from lamina.worker.worker import Worker

REGION, ACCOUNT = "us-east-1", "000000000000"


class XorCipher:
    """A reversible stand-in for the key ring (as in tests/store/test_sqlite.py)."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return aad + b"|" + bytes(b ^ 0x5A for b in plaintext)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        bound, _, body = blob.partition(b"|")
        assert bound == aad, "ciphertext bound to another identity"
        return bytes(b ^ 0x5A for b in body)


def arn(name: str, qualifier: str | None = None) -> str:
    return arns.function_arn(REGION, ACCOUNT, name, qualifier)


def _version(name: str, version: str, dead_letter: str | None = None) -> FunctionVersion:
    return FunctionVersion(
        name=name, version=version, arn=arn(name), runtime="python3.11",
        role=f"arn:aws:iam::{ACCOUNT}:role/r", handler="index.handler", code_sha256="sha",
        code_size=1, code_key="k", revision_id="rev", last_modified="t", state="Active",
        dead_letter_target=dead_letter,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.25

    def __call__(self) -> float:
        return self.now


class World:
    """A store with functions f (versions $LATEST and 1, alias live -> 1) and g."""

    def __init__(self, tmp: Path) -> None:
        self.store = SqliteMetadataStore(tmp / "db", XorCipher())
        settings = Settings(data_dir=tmp, region=REGION, account_id=ACCOUNT)
        self.functions = Functions(settings, self.store, cast(ArtifactStore, None), ("python3.11",))
        self.clock = Clock()
        self.configs = EventInvokeConfigs(self.functions, clock=self.clock)
        for name in ("f", "g"):
            self.add_function(name)
        with self.store.transaction() as tx:
            tx.put_version(_version("f", "1"))
            tx.put_alias(Alias("live", "f", arn("f", "live"), "1", "rev"))

    def add_function(self, name: str, dead_letter: str | None = None) -> None:
        with self.store.transaction() as tx:
            tx.put_function(Function(name, arn(name), "t"))
            tx.put_version(_version(name, "$LATEST", dead_letter))


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def on_failure(target: str) -> dict[str, Any]:
    return {"OnFailure": {"Destination": target}}


# -- put / get / update / delete / list ------------------------------------------------------


def test_put_then_get_the_unqualified_config_as_latest(w: World) -> None:
    put = w.configs.put("f", None, 1, 120, None)
    assert (put.function_arn, put.last_modified) == (arn("f", "$LATEST"), 1_700_000_000.25)
    got = w.configs.get(arn("f"), None)
    assert got == put
    assert w.configs.get("f", "$LATEST") == put
    shape = event_invoke_config_shape(got)
    assert shape == {
        "LastModified": 1_700_000_000.25, "FunctionArn": arn("f", "$LATEST"),
        "MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 120,
        "DestinationConfig": {"OnSuccess": {}, "OnFailure": {}},
    }


def test_put_replaces_the_whole_config(w: World) -> None:
    w.configs.put("f", None, 0, 300, on_failure(arn("g")))
    w.clock.now += 5
    second = w.configs.put("f", None, None, 60, None)
    assert (second.maximum_retry_attempts, second.maximum_event_age_seconds) == (None, 60)
    assert (second.on_failure, second.last_modified) == (None, 1_700_000_005.25)
    assert "MaximumRetryAttempts" not in event_invoke_config_shape(second)


def test_update_merges_into_the_existing_config(w: World) -> None:
    w.configs.put("f", None, 0, 300, {"OnSuccess": {"Destination": arn("g")}})
    updated = w.configs.update("f", None, None, 90, on_failure(arn("g", "$LATEST")))
    assert updated.maximum_retry_attempts == 0
    assert updated.maximum_event_age_seconds == 90
    assert (updated.on_success, updated.on_failure) == (arn("g"), arn("g", "$LATEST"))
    cleared = w.configs.update("f", None, None, None, {"OnSuccess": {}})
    assert (cleared.on_success, cleared.on_failure) == (None, arn("g", "$LATEST"))
    assert w.configs.get("f", None) == cleared


def test_update_without_a_config_is_not_found(w: World) -> None:
    with pytest.raises(ResourceNotFound) as exc:
        w.configs.update("f", "live", 1, None, None)
    assert exc.value.message == f"The function {arn('f', 'live')} doesn't have an EventInvokeConfig"


@pytest.mark.parametrize("op", ["put", "update"])
def test_something_must_be_set(w: World, op: str) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        getattr(w.configs, op)("f", None, None, None, None)
    assert exc.value.message == "You must specify at least one of error handling or destination setting."


@pytest.mark.parametrize(("name", "qualifier"), [("nope", None), ("f", "2"), ("f", "nope")])
def test_put_needs_an_existing_function_and_qualifier(w: World, name: str, qualifier: str | None) -> None:
    with pytest.raises(ResourceNotFound) as exc:
        w.configs.put(name, qualifier, 1, None, None)
    assert exc.value.message == "The function doesn't exist."


def test_qualifier_comes_from_the_arn_or_the_parameter(w: World) -> None:
    w.configs.put(arn("f", "live"), None, 2, None, None)
    assert w.configs.get("f", "live").function_arn == arn("f", "live")
    assert w.configs.get("f:live", None).maximum_retry_attempts == 2
    w.configs.put("f", "1", 1, None, None)
    assert [c.qualifier for c in w.configs.list("f", None, None)[0]] == ["1", "live"]
    with pytest.raises(InvalidParameterValue):
        w.configs.get(arn("f", "live"), "1")
    with pytest.raises(AccessDenied):
        w.configs.get("arn:aws:lambda:us-east-1:111111111111:function:f", None)


@pytest.mark.parametrize("name", ["f", "nope"])
def test_get_and_delete_of_a_missing_config(w: World, name: str) -> None:
    expected = f"The function {arn(name, '$LATEST')} doesn't have an EventInvokeConfig"
    for call in (w.configs.get, w.configs.delete):
        with pytest.raises(ResourceNotFound) as exc:
            call(name, None)
        assert exc.value.message == expected


def test_delete_removes_only_that_qualifier(w: World) -> None:
    w.configs.put("f", None, 1, None, None)
    w.configs.put("f", "live", 0, None, None)
    w.configs.delete("f", "$LATEST")
    with pytest.raises(ResourceNotFound):
        w.configs.get("f", None)
    assert w.configs.get("f", "live").maximum_retry_attempts == 0


def test_list_pages_by_marker(w: World) -> None:
    for q in ("$LATEST", "1", "live"):
        w.configs.put("f", q, 1, None, None)
    page, marker = w.configs.list("f", None, 2)
    assert [c.qualifier for c in page] == ["$LATEST", "1"] and marker
    rest, end = w.configs.list("f", marker, 2)
    assert [c.qualifier for c in rest] == ["live"] and end is None
    assert w.configs.list("g", None, None) == ([], None)
    with pytest.raises(ResourceNotFound):
        w.configs.list("nope", None, None)
    with pytest.raises(InvalidParameterValue):
        w.configs.list("f", "not-a-marker", None)


def test_model_constraints_are_checked_at_the_wire() -> None:
    model = ServiceModel("lambda", "2015-03-31")
    op = model.operations["PutFunctionEventInvokeConfig"]
    model.validate(op, {"FunctionName": "f", "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60})
    with pytest.raises(ValidationError) as exc:
        model.validate(op, {"FunctionName": "f", "MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 59})
    assert exc.value.message.startswith("2 validation errors detected")
    assert "'maximumRetryAttempts' failed to satisfy constraint" in exc.value.message
    assert "Member must have value greater than or equal to 60" in exc.value.message


# -- destinations ------------------------------------------------------------------------------


def test_a_lamina_function_is_a_destination(w: World) -> None:
    both = {"OnSuccess": {"Destination": arn("g")}, "OnFailure": {"Destination": arn("g", "$LATEST")}}
    config = w.configs.put("f", None, None, None, both)
    assert (config.on_success, config.on_failure) == (arn("g"), arn("g", "$LATEST"))


@pytest.mark.parametrize("target", [
    arn("nope"), arn("g", "7"), arns.function_arn("eu-west-1", ACCOUNT, "g"),
    arns.function_arn(REGION, "111111111111", "g"),
])
def test_a_destination_that_is_not_there_is_invalid(w: World, target: str) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        w.configs.put("f", None, None, None, on_failure(target))
    assert exc.value.message == f"The destination ARN {target} is invalid."


def test_a_function_is_not_its_own_destination(w: World) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        w.configs.put("f", "live", None, None, on_failure(arn("f", "1")))
    assert exc.value.message == "You can't specify the function as a destination for itself."


@pytest.mark.parametrize(("target", "service"), [
    (f"arn:aws:sqs:{REGION}:{ACCOUNT}:q", "SQS"), (f"arn:aws:sns:{REGION}:{ACCOUNT}:t", "SNS"),
    (f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default", "EventBridge"), ("arn:aws:s3:::bucket", "S3"),
])
def test_destinations_lamina_cannot_deliver_to_are_refused_clearly(w: World, target: str, service: str) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        w.configs.put("f", None, None, None, on_failure(target))
    assert f"Lamina has no {service} service yet" in exc.value.message and target in exc.value.message
    with pytest.raises(ResourceNotFound):
        w.configs.get("f", None)


def test_other_destinations_are_an_invalid_config(w: World) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        w.configs.put("f", None, None, None, {"OnSuccess": {"Destination": "kafka://topic"}})
    assert exc.value.message == (
        "The provided destination config DestinationConfig(onSuccess=OnSuccess(destination="
        "kafka://topic), onFailure=null) is invalid."
    )


def test_empty_destinations_mean_none(w: World) -> None:
    config = w.configs.put("f", None, None, None, {"OnSuccess": {"Destination": ""}, "OnFailure": {}})
    assert (config.on_success, config.on_failure) == (None, None)


# -- config_for (the poller's view) ------------------------------------------------------------


def test_defaults_without_a_config(w: World) -> None:
    policy = w.configs.config_for("f", None)
    assert policy == AsyncPolicy(DEFAULT_MAX_RETRIES, DEFAULT_MAX_AGE_SECONDS, None, None) == (2, 21600, None, None)


def test_configs_are_per_qualifier_without_inheritance(w: World) -> None:
    w.configs.put("f", None, 0, 60, on_failure(arn("g")))
    assert w.configs.config_for("f", None) == (0, 60, None, arn("g"))
    assert w.configs.config_for("f", "$LATEST") == (0, 60, None, arn("g"))
    assert w.configs.config_for("f", "live") == (2, 21600, None, None)
    w.configs.put("f", "live", 1, None, {"OnSuccess": {"Destination": arn("g")}})
    assert w.configs.config_for("f", "live") == (1, 21600, arn("g"), None)  # cache dropped on write


def test_dead_letter_target_is_the_fallback_failure_target(w: World) -> None:
    w.add_function("h", dead_letter=arn("g"))
    assert w.configs.config_for("h", None).on_failure == arn("g")
    w.configs.put("h", None, 1, None, None)
    assert w.configs.config_for("h", None) == (1, 21600, None, arn("g"))
    w.configs.put("h", None, None, None, on_failure(arn("f")))
    assert w.configs.config_for("h", None).on_failure == arn("f")


def test_config_for_a_deleted_function_is_not_found(w: World) -> None:
    with w.store.transaction() as tx:
        tx.delete_function("g")
    with pytest.raises(ResourceNotFound):
        w.configs.config_for("g", None)


# -- DeadLetterConfig (CreateFunction / UpdateFunctionConfiguration) ---------------------------


@pytest.mark.parametrize(("target", "fragment"), [
    (f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq", "Lamina has no SQS service yet"),
    (f"arn:aws:sns:{REGION}:{ACCOUNT}:dlq", "Lamina has no SNS service yet"),
    ("arn:aws:s3:::bucket", "is not an SQS queue or SNS topic"),
    (arn("nope"), "function not found"),
    (arn("f"), "cannot be its own dead-letter target"),
])
def test_dead_letter_targets_refused(w: World, target: str, fragment: str) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        check_dead_letter_target(w.functions, "f", target)
    assert exc.value.message.startswith("Invalid dead letter queue ARN: ") and fragment in exc.value.message


def test_dead_letter_target_may_be_another_function_or_empty(w: World) -> None:
    check_dead_letter_target(w.functions, "f", arn("g"))
    check_dead_letter_target(w.functions, "f", "")
    check_dead_letter_target(w.functions, "f", None)


def test_update_function_configuration_checks_the_dead_letter_target(w: World) -> None:
    change = ConfigChange(dead_letter_target=f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq")
    with pytest.raises(InvalidParameterValue):
        asyncio.run(w.functions.update_configuration("f", change))
    with w.store.transaction() as tx:
        latest = tx.get_version("f", "$LATEST")
    assert latest is not None and latest.dead_letter_target is None


# -- the Event branch of Invoke (invoke/service.py) --------------------------------------------


class Queue:
    def __init__(self) -> None:
        self.events: list[QueuedEvent] = []
        self.fail: Exception | None = None

    async def __call__(self, event: QueuedEvent) -> None:
        if self.fail is not None:
            raise self.fail
        self.events.append(event)


def _service(w: World, queue: Queue | None) -> InvokeService:
    return InvokeService(
        w.functions, cast(Worker, None), Concurrency(account_limit=10, unreserved_min=0),
        rng=random.Random(1), enqueue=queue,
    )


def _event(service: InvokeService, **kw: Any) -> Any:
    fields: dict[str, Any] = {"function_name": "f", "qualifier": None, "payload": b'{"a": 1}',
                              "invocation_type": "Event", "request_id": "req-1"}
    fields.update(kw)
    return asyncio.run(service.invoke(InvokeRequest(**fields)))


def test_event_is_queued_then_acknowledged(w: World) -> None:
    queue = Queue()
    out = _event(_service(w, queue), qualifier="live", trace_id="Root=1-abc", client_context="e30=")
    assert (out.status, out.payload, out.request_id, out.function_error) == (202, b"", "req-1", None)
    (event,) = queue.events
    assert (event.request_id, event.function, event.qualifier, event.payload) == ("req-1", "f", "live", b'{"a": 1}')
    assert (event.trace_id, event.client_context, event.attempts) == ("Root=1-abc", "e30=", 0)
    assert abs(event.enqueued_at - time.time()) < 60


def test_event_by_arn_keeps_the_arn_qualifier_and_gets_a_trace(w: World) -> None:
    queue = Queue()
    _event(_service(w, queue), function_name=arn("f", "1"), payload=b"", request_id=None)
    (event,) = queue.events
    assert (event.function, event.qualifier, event.payload) == ("f", "1", b"{}")
    assert event.request_id and event.trace_id and event.trace_id.startswith("Root=1-")


def test_without_a_queue_event_is_refused_as_before(w: World) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        _event(_service(w, None))
    assert "Event" in exc.value.message


def test_event_payload_limit(w: World) -> None:
    queue = Queue()
    service = _service(w, queue)
    body = b'"' + b"x" * (ASYNC_PAYLOAD_LIMIT - 2) + b'"'
    assert _event(service, payload=body).status == 202
    with pytest.raises(RequestTooLarge) as exc:
        _event(service, payload=body + b" ")
    assert exc.value.status == 413
    assert exc.value.message == "1048577 byte payload is too large for the Event invocation type (limit 1048576 bytes)"
    assert len(queue.events) == 1


@pytest.mark.parametrize(("kw", "error"), [
    ({"function_name": "nope"}, ResourceNotFound), ({"qualifier": "9"}, ResourceNotFound),
    ({"payload": b"{nope"}, InvalidRequestContent),
])
def test_event_refusals_queue_nothing(w: World, kw: dict[str, Any], error: type[ApiError]) -> None:
    queue = Queue()
    with pytest.raises(error):
        _event(_service(w, queue), **kw)
    assert queue.events == []


def test_no_acknowledgement_when_the_queue_fails(w: World) -> None:
    queue = Queue()
    queue.fail = OSError("disk full")
    with pytest.raises(OSError):
        _event(_service(w, queue))


# -- InvokeAsync and the handler table (api/lambda_async.py) -----------------------------------


def _ctx() -> RequestContext:
    identity = Identity("AKIA", f"arn:aws:iam::{ACCOUNT}:root", "lambda", REGION, False)
    return RequestContext("req-async", identity, "http://127.0.0.1", {"x-amzn-trace-id": "Root=1-x"})


def test_handlers_cover_the_async_operations(w: World) -> None:
    handlers = AsyncHandlers(w.configs, Queue()).handlers()
    assert set(handlers) == {
        "PutFunctionEventInvokeConfig", "GetFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig",
        "DeleteFunctionEventInvokeConfig", "ListFunctionEventInvokeConfigs", "InvokeAsync",
    }
    assert set(handlers) <= set(ServiceModel("lambda", "2015-03-31").operations)


def test_config_handlers_speak_the_wire_shapes(w: World) -> None:
    h = AsyncHandlers(w.configs, Queue())
    put = asyncio.run(h.put_config(_ctx(), {"FunctionName": "f", "Qualifier": "live", "MaximumRetryAttempts": 0}))
    assert put["FunctionArn"] == arn("f", "live") and put["MaximumRetryAttempts"] == 0
    listed = asyncio.run(h.list_configs(_ctx(), {"FunctionName": "f", "MaxItems": 1}))
    assert listed == {"FunctionEventInvokeConfigs": [put]}
    asyncio.run(h.delete_config(_ctx(), {"FunctionName": "f", "Qualifier": "live"}))
    assert asyncio.run(h.list_configs(_ctx(), {"FunctionName": "f"})) == {"FunctionEventInvokeConfigs": []}


def test_invoke_async_queues_with_the_request_id(w: World) -> None:
    queue = Queue()
    h = AsyncHandlers(w.configs, queue)
    out = asyncio.run(h.invoke_async(_ctx(), {"FunctionName": "f", "InvokeArgs": b'{"k": 1}'}))
    assert out == {"Status": 202}
    (event,) = queue.events
    assert (event.request_id, event.function, event.qualifier, event.trace_id) == ("req-async", "f", None, "Root=1-x")


def test_invoke_async_limits_and_checks(w: World) -> None:
    queue = Queue()
    h = AsyncHandlers(w.configs, queue, payload_limit=10)
    with pytest.raises(RequestTooLarge) as exc:
        asyncio.run(h.invoke_async(_ctx(), {"FunctionName": "f", "InvokeArgs": b'"0123456789"'}))
    assert exc.value.status == 413 and "InvokeAsync" in exc.value.message
    with pytest.raises(InvalidRequestContent):
        asyncio.run(h.invoke_async(_ctx(), {"FunctionName": "f", "InvokeArgs": b"{"}))
    with pytest.raises(ResourceNotFound):
        asyncio.run(h.invoke_async(_ctx(), {"FunctionName": "nope", "InvokeArgs": b"{}"}))
    assert queue.events == []
