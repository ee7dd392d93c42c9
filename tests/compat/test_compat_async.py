"""Asynchronous invocation end to end: retries, event age, destinations, dead letters, limits.

test_compat_event_config.py covers the config API and that an Event invoke runs at all; this
module covers what happens to the event afterwards, on a server of its own whose retry delays
are seconds instead of minutes (LAMINA_ASYNC_RETRY_DELAYS, the documented test knob).

Evidence is read where a user reads it: a function's START lines and prints in DATA_DIR/logs.db
(the CloudWatch Logs store), records as the destination function received them (it prints the
event it got), and dead-lettered events through the ``lamina events`` console script.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_compat_support import (
    LAMINA,
    Functions,
    Server,
    client_for,
    error_of,
    function_arn,
    make_zip,
    start_server,
    stop_server,
    unique_name,
    wait_updated,
    invoker_role,
)

pytestmark = pytest.mark.root  # real sandboxes run every event

ASYNC_LIMIT = 1_048_576
INVOKE_ASYNC_LIMIT = 262_144  # the deprecated InvokeAsync's own limit
WAIT_S = 30.0
# Retries 0.2 s and 0.4 s after a function error; throttles back off 0.05 s .. 0.5 s.
FAST_ENV = {"LAMINA_ASYNC_RETRY_DELAYS": "0.2,0.4", "LAMINA_ASYNC_THROTTLE_BASE": "0.05",
            "LAMINA_ASYNC_THROTTLE_CAP": "0.5"}
# Every retry would come after 61 s, past the shortest allowed MaximumEventAgeInSeconds (60).
SLOW_ENV = {"LAMINA_ASYNC_RETRY_DELAYS": "61", "LAMINA_ASYNC_THROTTLE_BASE": "61",
            "LAMINA_ASYNC_THROTTLE_CAP": "61"}

FAILING = ("def handler(event, context):\n"
           "    print('RUN ' + context.aws_request_id)\n"
           "    raise RuntimeError('boom ' + context.aws_request_id)\n")
SUCCEEDING = ("def handler(event, context):\n"
              "    print('RUN ' + context.aws_request_id)\n"
              "    return {'echo': event, 'rid': context.aws_request_id}\n")
RECORDER = ("import json\n"
            "def handler(event, context):\n"
            "    print('RECORD ' + json.dumps(event))\n")
MEASURING = ("import hashlib, json\n"
             "def handler(event, context):\n"
             "    data = json.dumps(event).encode()\n"
             "    print('SIZE %d %s' % (len(data), hashlib.sha256(data).hexdigest()))\n")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _server(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("lamina-async")
    srv = start_server(base / "data", base / "server.log", env)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server(tmp_path_factory, FAST_ENV)


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server(tmp_path_factory, SLOW_ENV)


@pytest.fixture(scope="module")
def lam(fast: Server) -> Any:
    return client_for(fast)


@pytest.fixture
def functions(lam: Any, fast: Server) -> Iterator[Functions]:
    helper = Functions(lam, role=invoker_role(fast))
    yield helper
    helper.cleanup()


# -- evidence ---------------------------------------------------------------------------------


def log_lines(server: Server, name: str) -> list[tuple[int, str]]:
    """(timestamp ms, message) of every line in the function's log group, oldest first."""
    path = server.data_dir / "logs.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT ts, message FROM events WHERE grp = ? ORDER BY id", (f"/aws/lambda/{name}",))
        return [(int(ts), str(message)) for ts, message in rows.fetchall()]
    except sqlite3.OperationalError:
        return []  # the schema is not there yet
    finally:
        db.close()


def wait_until(what: str, probe: Callable[[], Any]) -> Any:
    """``probe()``'s first truthy answer; fails the test after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def lines_with(server: Server, name: str, needle: str, count: int = 1) -> list[tuple[int, str]]:
    """The function's log lines holding ``needle``, once there are at least ``count``."""
    def probe() -> list[tuple[int, str]]:
        found = [line for line in log_lines(server, name) if needle in line[1]]
        return found if len(found) >= count else []
    found: list[tuple[int, str]] = wait_until(f"{count}x {needle!r} in /aws/lambda/{name}", probe)
    return found


def starts(server: Server, name: str, request_id: str) -> int:
    """How many times the event ran, by its START lines. Logs reach logs.db in batches every
    0.2 s, possibly after the queue has already recorded the outcome: let one batch land."""
    time.sleep(0.5)
    return sum(f"START RequestId: {request_id}" in m for _, m in log_lines(server, name))


def record_for(server: Server, destination: str, request_id: str) -> dict[str, Any]:
    """The invocation record the destination function received for ``request_id``."""
    (_, line), *_ = lines_with(server, destination, f'"requestId": "{request_id}"')
    record: dict[str, Any] = json.loads(line.split("RECORD ", 1)[1])
    return record


def lamina_events(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAMINA), "events", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=30, check=False)


def listed(server: Server, *flags: str) -> dict[str, dict[str, Any]]:
    """`lamina events list` (dead-lettered events) as {RequestId: entry}."""
    done = lamina_events(server, "list", *flags)
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {entry["RequestId"]: entry for entry in entries}


def event_invoke(lam: Any, name: str, payload: bytes = b"{}", **params: Any) -> str:
    out = lam.invoke(FunctionName=name, InvocationType="Event", Payload=payload, **params)
    assert out["StatusCode"] == 202
    request_id: str = out["ResponseMetadata"]["RequestId"]
    return request_id


def check_record(record: dict[str, Any], *, request_id: str, arn: str, condition: str, count: int,
                 request_payload: Any) -> None:
    """The parts every record has, key for key (AWS's "Invocation record" format)."""
    assert record["version"] == "1.0"
    assert TIMESTAMP.match(record["timestamp"]), record["timestamp"]
    assert record["requestContext"] == {"requestId": request_id, "functionArn": arn,
                                        "condition": condition, "approximateInvokeCount": count}
    assert record["requestPayload"] == request_payload


# -- retries and the request id ---------------------------------------------------------------


def test_function_errors_are_retried_twice_with_the_same_request_id(
        lam: Any, fast: Server, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, code=make_zip({"index.py": FAILING}))
    request_id = event_invoke(lam, fn_name, b'{"n": 1}')
    started = lines_with(fast, fn_name, f"START RequestId: {request_id}", count=3)
    assert len(lines_with(fast, fn_name, f"RUN {request_id}", count=3)) == 3
    first, second, third = (ts for ts, _ in started)
    assert second - first >= 150 and third - second >= 350  # the configured 0.2 s and 0.4 s
    entry = wait_until("the dead-lettered event", lambda: listed(fast).get(request_id))
    assert (entry["State"], entry["Attempts"], entry["FunctionName"]) == ("dead", 3, fn_name)
    assert "RetriesExhausted" in entry["Reason"]
    time.sleep(1.0)  # a fourth run would have started by now
    assert starts(fast, fn_name, request_id) == 3


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_maximum_retry_attempts_bounds_the_runs_and_the_failure_record(
        lam: Any, fast: Server, functions: Functions, fn_name: str, retries: int) -> None:
    sink = unique_name("on-failure")
    functions.create(sink, code=make_zip({"index.py": RECORDER}))
    functions.create(fn_name, code=make_zip({"index.py": FAILING}))
    lam.put_function_event_invoke_config(
        FunctionName=fn_name, MaximumRetryAttempts=retries,
        DestinationConfig={"OnFailure": {"Destination": function_arn(sink)}})
    request_id = event_invoke(lam, fn_name, b'{"order": [1, 2]}')
    record = record_for(fast, sink, request_id)
    assert set(record) == {"version", "timestamp", "requestContext", "requestPayload",
                           "responseContext", "responsePayload"}
    check_record(record, request_id=request_id, arn=function_arn(fn_name, "$LATEST"),
                 condition="RetriesExhausted", count=retries + 1, request_payload={"order": [1, 2]})
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST",
                                         "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    assert record["responsePayload"]["errorMessage"] == f"boom {request_id}"
    assert starts(fast, fn_name, request_id) == retries + 1
    assert request_id not in listed(fast)  # delivered to the destination, not dead-lettered


# -- destinations -----------------------------------------------------------------------------


def test_on_success_record_of_a_published_version(
        lam: Any, fast: Server, functions: Functions, fn_name: str) -> None:
    sink = unique_name("on-success")
    functions.create(sink, code=make_zip({"index.py": RECORDER}))
    functions.create(fn_name, code=make_zip({"index.py": SUCCEEDING}), Publish=True)
    lam.put_function_event_invoke_config(
        FunctionName=fn_name, Qualifier="1",
        DestinationConfig={"OnSuccess": {"Destination": function_arn(sink)},
                           "OnFailure": {"Destination": function_arn(sink)}})
    request_id = event_invoke(lam, fn_name, b'{"k": "v"}', Qualifier="1")
    record = record_for(fast, sink, request_id)
    assert set(record) == {"version", "timestamp", "requestContext", "requestPayload",
                           "responseContext", "responsePayload"}
    check_record(record, request_id=request_id, arn=function_arn(fn_name, "1"), condition="Success",
                 count=1, request_payload={"k": "v"})
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "1"}
    assert record["responsePayload"] == {"echo": {"k": "v"}, "rid": request_id}
    assert abs(time.time() - _epoch(record["timestamp"])) < 60


def test_the_unqualified_config_does_not_apply_to_a_version(
        lam: Any, fast: Server, functions: Functions, fn_name: str) -> None:
    sink = unique_name("latest-only")
    functions.create(sink, code=make_zip({"index.py": RECORDER}))
    functions.create(fn_name, code=make_zip({"index.py": SUCCEEDING}), Publish=True)
    lam.put_function_event_invoke_config(
        FunctionName=fn_name, DestinationConfig={"OnSuccess": {"Destination": function_arn(sink)}})
    on_version = event_invoke(lam, fn_name, Qualifier="1")
    on_latest = event_invoke(lam, fn_name)
    record = record_for(fast, sink, on_latest)
    assert record["requestContext"]["functionArn"] == function_arn(fn_name, "$LATEST")
    lines_with(fast, fn_name, f"START RequestId: {on_version}")
    time.sleep(0.5)
    assert not [m for _, m in log_lines(fast, sink) if on_version in m]


def test_invoke_async_events_get_the_same_retries_and_destinations(
        lam: Any, fast: Server, functions: Functions, fn_name: str) -> None:
    sink = unique_name("legacy-sink")
    functions.create(sink, code=make_zip({"index.py": RECORDER}))
    functions.create(fn_name, code=make_zip({"index.py": FAILING}))
    lam.put_function_event_invoke_config(
        FunctionName=fn_name, MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": function_arn(sink)}})
    out = lam.invoke_async(FunctionName=fn_name, InvokeArgs=b'{"legacy": true}')
    assert out["Status"] == 202 and out["ResponseMetadata"]["HTTPStatusCode"] == 202
    request_id = out["ResponseMetadata"]["RequestId"]
    record = record_for(fast, sink, request_id)
    check_record(record, request_id=request_id, arn=function_arn(fn_name, "$LATEST"),
                 condition="RetriesExhausted", count=2, request_payload={"legacy": True})
    assert len(lines_with(fast, fn_name, f"RUN {request_id}", count=2)) == 2


# -- dead letters, replay ---------------------------------------------------------------------


def test_dead_lettered_event_is_listed_and_replays_with_its_request_id(
        lam: Any, fast: Server, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, code=make_zip({"index.py": FAILING}))
    lam.put_function_event_invoke_config(FunctionName=fn_name, MaximumRetryAttempts=0)
    request_id = event_invoke(lam, fn_name, b'{"again": 1}')
    entry = wait_until("the dead-lettered event", lambda: listed(fast).get(request_id))
    assert (entry["State"], entry["Attempts"], entry["Qualifier"]) == ("dead", 1, None)
    assert entry["PayloadBytes"] == len(b'{"again": 1}') and "RetriesExhausted" in entry["Reason"]
    assert starts(fast, fn_name, request_id) == 1

    lam.update_function_code(FunctionName=fn_name, ZipFile=make_zip({"index.py": SUCCEEDING}))
    wait_updated(lam, fn_name)
    missing = lamina_events(fast, "replay", "not-a-request-id")
    assert missing.returncode == 1 and "no dead-lettered event" in missing.stderr
    done = lamina_events(fast, "replay", request_id)
    assert done.returncode == 0 and "replayed 1 event" in done.stdout, done.stderr
    lines_with(fast, fn_name, f"START RequestId: {request_id}", count=2)
    wait_until("the replayed event to leave the queue",
               lambda: request_id not in listed(fast, "--all"))
    assert starts(fast, fn_name, request_id) == 2


# -- throttling, deletion ---------------------------------------------------------------------


def test_reserved_concurrency_zero_holds_events_until_it_is_removed(
        lam: Any, fast: Server, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, code=make_zip({"index.py": SUCCEEDING}))
    lam.put_function_concurrency(FunctionName=fn_name, ReservedConcurrentExecutions=0)
    ids = [event_invoke(lam, fn_name, json.dumps({"i": i}).encode()) for i in range(3)]
    time.sleep(1.5)  # several throttled tries (backoff capped at 0.5 s)
    assert not log_lines(fast, fn_name)
    queued = listed(fast, "--all")
    for request_id in ids:
        assert queued[request_id]["State"] in ("ready", "leased")
        assert queued[request_id]["Attempts"] == 0  # throttles cost no attempt
    lam.delete_function_concurrency(FunctionName=fn_name)
    for request_id in ids:
        lines_with(fast, fn_name, f"RUN {request_id}")
    wait_until("the events to be acked", lambda: not set(ids) & set(listed(fast, "--all")))
    assert [starts(fast, fn_name, request_id) for request_id in ids] == [1, 1, 1]


def test_queued_events_of_a_deleted_function_are_dead_lettered(
        lam: Any, fast: Server, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, code=make_zip({"index.py": SUCCEEDING}))
    lam.put_function_concurrency(FunctionName=fn_name, ReservedConcurrentExecutions=0)
    ids = [event_invoke(lam, fn_name) for _ in range(2)]
    lam.delete_function(FunctionName=fn_name)

    def both_dead() -> dict[str, dict[str, Any]]:
        dead = listed(fast)
        return dead if set(ids) <= set(dead) else {}

    dead = wait_until("both events dead-lettered", both_dead)
    for request_id in ids:
        assert dead[request_id]["FunctionName"] == fn_name and dead[request_id]["Attempts"] == 0
        assert dead[request_id]["Reason"]
    assert not log_lines(fast, fn_name)


# -- maximum event age ------------------------------------------------------------------------


def test_a_retry_past_the_maximum_age_ends_with_event_age_exceeded(
        slow: Server, fn_name: str) -> None:
    lam = client_for(slow)
    helper = Functions(lam, role=invoker_role(slow))
    sink = unique_name("aged")
    try:
        helper.create(sink, code=make_zip({"index.py": RECORDER}))
        helper.create(fn_name, code=make_zip({"index.py": FAILING}))
        lam.put_function_event_invoke_config(
            FunctionName=fn_name, MaximumEventAgeInSeconds=60,
            DestinationConfig={"OnFailure": {"Destination": function_arn(sink)}})
        request_id = event_invoke(lam, fn_name, b'{"late": 1}')
        record = record_for(slow, sink, request_id)
        check_record(record, request_id=request_id, arn=function_arn(fn_name, "$LATEST"),
                     condition="EventAgeExceeded", count=1, request_payload={"late": 1})
        assert record["responseContext"]["functionError"] == "Unhandled"
        assert starts(slow, fn_name, request_id) == 1
    finally:
        helper.cleanup()


def test_a_throttled_event_ages_out_without_running(slow: Server, fn_name: str) -> None:
    lam = client_for(slow)
    helper = Functions(lam, role=invoker_role(slow))
    sink = unique_name("throttled-aged")
    try:
        helper.create(sink, code=make_zip({"index.py": RECORDER}))
        helper.create(fn_name, code=make_zip({"index.py": SUCCEEDING}))
        lam.put_function_concurrency(FunctionName=fn_name, ReservedConcurrentExecutions=0)
        lam.put_function_event_invoke_config(
            FunctionName=fn_name, MaximumEventAgeInSeconds=60,
            DestinationConfig={"OnFailure": {"Destination": function_arn(sink)}})
        request_id = event_invoke(lam, fn_name, b'{"never": 1}')
        record = record_for(slow, sink, request_id)
        check_record(record, request_id=request_id, arn=function_arn(fn_name, "$LATEST"),
                     condition="EventAgeExceeded", count=0, request_payload={"never": 1})
        assert not log_lines(slow, fn_name)
    finally:
        helper.cleanup()


# -- payload limits ---------------------------------------------------------------------------


def test_a_payload_of_exactly_the_async_limit_is_accepted_and_delivered_intact(
        lam: Any, fast: Server, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, code=make_zip({"index.py": MEASURING}))
    payload = b'"' + b"x" * (ASYNC_LIMIT - 2) + b'"'
    assert len(payload) == ASYNC_LIMIT
    request_id = event_invoke(lam, fn_name, payload)
    lines_with(fast, fn_name, f"START RequestId: {request_id}")
    (_, line), = lines_with(fast, fn_name, "SIZE ")
    assert line.split()[1:3] == [str(ASYNC_LIMIT), hashlib.sha256(payload).hexdigest()]


def test_over_the_async_limit_is_413_for_both_operations(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    over = b'"' + b"x" * (ASYNC_LIMIT - 1) + b'"'
    legacy_over = b'"' + b"x" * (INVOKE_ASYNC_LIMIT - 1) + b'"'
    calls: list[tuple[Callable[[], Any], int]] = [
        (lambda: lam.invoke(FunctionName=fn_name, InvocationType="Event", Payload=over), ASYNC_LIMIT),
        (lambda: lam.invoke_async(FunctionName=fn_name, InvokeArgs=legacy_over), INVOKE_ASYNC_LIMIT)]
    for call, limit in calls:
        with pytest.raises(ClientError) as exc:
            call()
        code, status, message = error_of(exc)
        assert status == 413 and str(limit) in message, (code, message)
    # a synchronous invoke of the same payload is well within its own 6 MB limit
    assert lam.invoke(FunctionName=fn_name, Payload=over)["StatusCode"] == 200


def _epoch(timestamp: str) -> float:
    moment = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()
