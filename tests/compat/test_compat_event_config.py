"""Asynchronous invocation through boto3: event invoke configs, Invoke with Event, InvokeAsync.

Config tests check the API's shapes and errors; Event tests check that a 202 is followed by
the function running (or its failure reaching a destination).

Whether an event ran is read from the function's log group in DATA_DIR/logs.db (the START line
names the request id), the same record a user reads with the CloudWatch Logs API.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_compat_support import (
    ACCOUNT,
    REGION,
    Functions,
    Server,
    error_of,
    function_arn,
    make_zip,
    unique_name,
    invoker_role,
)

ASYNC_LIMIT = 1_048_576
RUN_TIMEOUT_S = 30.0


FAILING_CODE = "def handler(event, context):\n    raise RuntimeError('boom ' + context.aws_request_id)\n"
PRINTING_CODE = "import json\ndef handler(event, context):\n    print('EVENT ' + json.dumps(event))\n    return {'seen': event}\n"


@pytest.fixture
def functions(lam: Any, server: Server) -> Iterator[Functions]:
    """Functions running as a role that may invoke other functions (their destinations)."""
    helper = Functions(lam, role=invoker_role(server))
    yield helper
    helper.cleanup()


@pytest.fixture(scope="module")
def configs(lam: Any) -> Any:
    """The boto3 client the config tests use."""
    return lam


def log_lines(server: Server, name: str) -> list[str]:
    path = server.data_dir / "logs.db"
    if not Path(path).exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT message FROM events WHERE grp = ? ORDER BY id", (f"/aws/lambda/{name}",))
        return [r[0] for r in rows.fetchall()]
    except sqlite3.OperationalError:
        return []  # the schema is not there yet
    finally:
        db.close()


def wait_for_log(server: Server, name: str, needle: str, count: int = 1) -> list[str]:
    """The function's log lines once ``needle`` is in ``count`` of them (fails after a while)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        lines = [line for line in log_lines(server, name) if needle in line]
        if len(lines) >= count:
            return lines
        if time.monotonic() > deadline:
            pytest.fail(f"no {needle!r} in /aws/lambda/{name} after {RUN_TIMEOUT_S}s: {lines}")
        time.sleep(0.1)


# -- the config operations -------------------------------------------------------------------


def test_put_and_get_a_config(configs: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    put = configs.put_function_event_invoke_config(
        FunctionName=fn_name, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=300)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert put["FunctionArn"] == function_arn(fn_name, "$LATEST")
    assert isinstance(put["LastModified"], datetime.datetime)
    assert abs(put["LastModified"].timestamp() - time.time()) < 120
    assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    got = configs.get_function_event_invoke_config(FunctionName=function_arn(fn_name))
    for key in ("FunctionArn", "LastModified", "MaximumRetryAttempts", "MaximumEventAgeInSeconds",
                "DestinationConfig"):
        assert got[key] == put[key]


def test_put_replaces_and_update_merges(configs: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    configs.put_function_event_invoke_config(FunctionName=fn_name, MaximumRetryAttempts=0,
                                             MaximumEventAgeInSeconds=120)
    replaced = configs.put_function_event_invoke_config(FunctionName=fn_name, MaximumEventAgeInSeconds=60)
    assert "MaximumRetryAttempts" not in replaced and replaced["MaximumEventAgeInSeconds"] == 60
    merged = configs.update_function_event_invoke_config(FunctionName=fn_name, MaximumRetryAttempts=2)
    assert (merged["MaximumRetryAttempts"], merged["MaximumEventAgeInSeconds"]) == (2, 60)


@pytest.mark.parametrize(("field", "value", "constraint"), [
    ("MaximumRetryAttempts", 3, "less than or equal to 2"),
    ("MaximumRetryAttempts", -1, "greater than or equal to 0"),
    ("MaximumEventAgeInSeconds", 59, "greater than or equal to 60"),
    ("MaximumEventAgeInSeconds", 21601, "less than or equal to 21600"),
])
def test_limits_are_model_constraints(configs: Any, lam_raw: Any, functions: Functions, fn_name: str,
                                      field: str, value: int, constraint: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam_raw.put_function_event_invoke_config(FunctionName=fn_name, **{field: value})
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert f"'{field[0].lower() + field[1:]}' failed to satisfy constraint" in message and constraint in message


def test_errors_for_missing_things(configs: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        configs.get_function_event_invoke_config(FunctionName=fn_name)
    assert error_of(exc) == ("ResourceNotFoundException", 404,
                             f"The function {function_arn(fn_name, '$LATEST')} doesn't have an EventInvokeConfig")
    with pytest.raises(ClientError) as exc:
        configs.delete_function_event_invoke_config(FunctionName=fn_name, Qualifier="$LATEST")
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        configs.put_function_event_invoke_config(FunctionName=fn_name, Qualifier="7", MaximumRetryAttempts=1)
    assert error_of(exc) == ("ResourceNotFoundException", 404, "The function doesn't exist.")
    with pytest.raises(ClientError) as exc:
        configs.put_function_event_invoke_config(FunctionName=unique_name("nope"), MaximumRetryAttempts=1)
    assert error_of(exc) == ("ResourceNotFoundException", 404, "The function doesn't exist.")
    with pytest.raises(ClientError) as exc:
        configs.put_function_event_invoke_config(FunctionName=fn_name)
    assert error_of(exc) == ("InvalidParameterValueException", 400,
                             "You must specify at least one of error handling or destination setting.")


def test_qualified_configs_list_and_delete(configs: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    version = configs.publish_version(FunctionName=fn_name)["Version"]
    configs.create_alias(FunctionName=fn_name, Name="live", FunctionVersion=version)
    configs.put_function_event_invoke_config(FunctionName=fn_name, MaximumRetryAttempts=2)
    configs.put_function_event_invoke_config(FunctionName=f"{fn_name}:live", MaximumRetryAttempts=1)
    configs.put_function_event_invoke_config(FunctionName=fn_name, Qualifier=version, MaximumRetryAttempts=0)
    first = configs.list_function_event_invoke_configs(FunctionName=fn_name, MaxItems=2)
    assert len(first["FunctionEventInvokeConfigs"]) == 2 and first["NextMarker"]
    rest = configs.list_function_event_invoke_configs(FunctionName=fn_name, Marker=first["NextMarker"])
    assert "NextMarker" not in rest
    arns = {c["FunctionArn"]: c["MaximumRetryAttempts"]
            for c in first["FunctionEventInvokeConfigs"] + rest["FunctionEventInvokeConfigs"]}
    assert arns == {function_arn(fn_name, "$LATEST"): 2, function_arn(fn_name, "live"): 1,
                    function_arn(fn_name, version): 0}
    deleted = configs.delete_function_event_invoke_config(FunctionName=fn_name, Qualifier="live")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    left = configs.list_function_event_invoke_configs(FunctionName=fn_name)["FunctionEventInvokeConfigs"]
    assert {c["FunctionArn"] for c in left} == {function_arn(fn_name, "$LATEST"), function_arn(fn_name, version)}


def test_function_destinations(configs: Any, functions: Functions, fn_name: str) -> None:
    target = unique_name("dest")
    functions.create(fn_name)
    functions.create(target)
    both = {"OnSuccess": {"Destination": function_arn(target)},
            "OnFailure": {"Destination": function_arn(target, "$LATEST")}}
    put = configs.put_function_event_invoke_config(FunctionName=fn_name, DestinationConfig=both)
    assert put["DestinationConfig"] == both
    with pytest.raises(ClientError) as exc:
        configs.put_function_event_invoke_config(
            FunctionName=fn_name, DestinationConfig={"OnFailure": {"Destination": function_arn(fn_name)}})
    assert error_of(exc) == ("InvalidParameterValueException", 400,
                             "You can't specify the function as a destination for itself.")
    missing = function_arn(unique_name("gone"))
    with pytest.raises(ClientError) as exc:
        configs.put_function_event_invoke_config(
            FunctionName=fn_name, DestinationConfig={"OnSuccess": {"Destination": missing}})
    assert error_of(exc) == ("InvalidParameterValueException", 400, f"The destination ARN {missing} is invalid.")


def test_queue_destinations_are_refused_clearly(configs: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:failed"
    with pytest.raises(ClientError) as exc:
        configs.put_function_event_invoke_config(
            FunctionName=fn_name, DestinationConfig={"OnFailure": {"Destination": queue}})
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "SQS" in message and queue in message


def test_dead_letter_config(configs: Any, functions: Functions, fn_name: str) -> None:
    target = unique_name("dlq")
    functions.create(target)
    with pytest.raises(ClientError) as exc:
        functions.create(fn_name, DeadLetterConfig={"TargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq"})
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidParameterValueException", 400) and "SQS" in message
    created = functions.create(fn_name, DeadLetterConfig={"TargetArn": function_arn(target)})
    assert created["DeadLetterConfig"] == {"TargetArn": function_arn(target)}


# -- Invoke with InvocationType=Event and InvokeAsync -----------------------------------------


def test_event_invoke_is_accepted_with_202(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    out = lam.invoke(FunctionName=fn_name, InvocationType="Event", Payload=b'{"a": 1}')
    assert out["StatusCode"] == 202
    assert out["Payload"].read() == b""
    assert out["ResponseMetadata"]["RequestId"]
    assert "FunctionError" not in out


def test_event_invoke_refusals(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=fn_name, InvocationType="Event",
                   Payload=b'"' + b"x" * (ASYNC_LIMIT - 1) + b'"')
    assert error_of(exc) == ("RequestTooLargeException", 413,
                             f"{ASYNC_LIMIT + 1} byte payload is too large for the Event invocation type "
                             f"(limit {ASYNC_LIMIT} bytes)")
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=fn_name, InvocationType="Event", Payload=b"{not json")
    assert error_of(exc)[:2] == ("InvalidRequestContentException", 400)
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=unique_name("nope"), InvocationType="Event", Payload=b"{}")
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)


def test_an_event_runs_with_its_request_id(lam: Any, server: Server, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, code=make_zip({"index.py": PRINTING_CODE}))
    out = lam.invoke(FunctionName=fn_name, InvocationType="Event", Payload=b'{"marker": "async-1"}')
    request_id = out["ResponseMetadata"]["RequestId"]
    wait_for_log(server, fn_name, f"START RequestId: {request_id}")
    wait_for_log(server, fn_name, '"marker": "async-1"')


def test_invoke_async_runs_the_function(lam: Any, server: Server, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, code=make_zip({"index.py": PRINTING_CODE}))
    out = lam.invoke_async(FunctionName=fn_name, InvokeArgs=b'{"marker": "legacy"}')
    assert out["Status"] == 202
    wait_for_log(server, fn_name, f"START RequestId: {out['ResponseMetadata']['RequestId']}")


def test_success_goes_to_the_on_success_function(lam: Any, server: Server, functions: Functions,
                                                  fn_name: str) -> None:
    target = unique_name("ok-dest")
    functions.create(target, code=make_zip({"index.py": PRINTING_CODE}))
    functions.create(fn_name)
    lam.put_function_event_invoke_config(
        FunctionName=fn_name, DestinationConfig={"OnSuccess": {"Destination": function_arn(target)}})
    out = lam.invoke(FunctionName=fn_name, InvocationType="Event", Payload=b'{"n": 7}')
    request_id = out["ResponseMetadata"]["RequestId"]
    (line,) = wait_for_log(server, target, request_id)[:1]
    record = json.loads(line.split("EVENT ", 1)[1])
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestPayload"] == {"n": 7}
    assert record["responsePayload"] == {"ok": True, "event": {"n": 7}}


def test_failure_without_retries_goes_to_the_on_failure_function(
        lam: Any, server: Server, functions: Functions, fn_name: str) -> None:
    target = unique_name("fail-dest")
    functions.create(target, code=make_zip({"index.py": PRINTING_CODE}))
    functions.create(fn_name, code=make_zip({"index.py": FAILING_CODE}))
    lam.put_function_event_invoke_config(
        FunctionName=fn_name, MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": function_arn(target)}})
    out = lam.invoke(FunctionName=fn_name, InvocationType="Event", Payload=b'{"n": 1}')
    request_id = out["ResponseMetadata"]["RequestId"]
    (line,) = wait_for_log(server, target, request_id)[:1]
    record = json.loads(line.split("EVENT ", 1)[1])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert len(wait_for_log(server, fn_name, f"START RequestId: {request_id}")) == 1


def test_destinations_run_as_the_functions_execution_role(
        configs: Any, functions: Functions, lam: Any, fn_name: str) -> None:
    """Records and dead-lettered events are delivered with the source's role, so it must be
    allowed lambda:InvokeFunction on the destination (the default role is not)."""
    target = unique_name("dest")
    functions.create(target)
    plain = Functions(lam)  # the default role: logs only
    try:
        plain.create(fn_name)
        destination = function_arn(target)
        message = f"The function execution role does not have permissions to call InvokeFunction on {destination}"
        with pytest.raises(ClientError) as exc:
            configs.put_function_event_invoke_config(
                FunctionName=fn_name, DestinationConfig={"OnSuccess": {"Destination": destination}})
        assert error_of(exc) == ("InvalidParameterValueException", 400, message)
        with pytest.raises(ClientError) as exc:
            lam.update_function_configuration(FunctionName=fn_name, DeadLetterConfig={"TargetArn": destination})
        assert error_of(exc) == ("InvalidParameterValueException", 400, message)
        assert "DeadLetterConfig" not in lam.get_function_configuration(FunctionName=fn_name)
        with pytest.raises(ClientError):
            configs.get_function_event_invoke_config(FunctionName=fn_name)
    finally:
        plain.cleanup()
