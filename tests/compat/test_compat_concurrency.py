"""Reserved concurrency and concurrent invokes through the real boto3.

Put/Get/DeleteFunctionConcurrency in AWS's shapes and errors; throttles are 429
TooManyRequestsException ("Rate Exceeded.") with a ``Reason``; and concurrent invokes of one
function run in separate execution environments (each has its own module globals and /tmp).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_compat_support import (
    Functions,
    Server,
    client_for,
    error_of,
    function_arn,
    make_zip,
    unique_name,
)

MEMORY = 512

SLOW = '''
import os, time, uuid
TOKEN = uuid.uuid4().hex
with open("/tmp/token", "w") as f:
    f.write(TOKEN)

def handler(event, context):
    started = time.time()
    time.sleep(event.get("sleep", 0))
    with open("/tmp/token") as f:
        tmp = f.read()
    return {"token": TOKEN, "tmp": tmp, "started": started, "ended": time.time()}
'''


def create_slow(functions: Functions, name: str) -> None:
    functions.create(name, code=make_zip({"index.py": SLOW}), MemorySize=MEMORY, Timeout=30)


def invoke(lam: Any, name: str, event: Any) -> Any:
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    assert "FunctionError" not in response
    return json.loads(response["Payload"].read())


def in_parallel(calls: list[Callable[[], Any]], stagger: float = 0.0) -> list[Any]:
    """Runs the calls on threads (started `stagger` seconds apart); results or exceptions."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:  # collected and asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
        time.sleep(stagger)
    for thread in threads:
        thread.join(timeout=60)
    return results


# -- the API --------------------------------------------------------------------------------


def test_put_get_delete_function_concurrency(lam: Any, functions: Functions,
                                             fn_name: str) -> None:
    functions.create(fn_name, MemorySize=MEMORY)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=fn_name)
    assert "Concurrency" not in lam.get_function(FunctionName=fn_name)

    put = lam.put_function_concurrency(FunctionName=fn_name, ReservedConcurrentExecutions=5)
    assert put["ReservedConcurrentExecutions"] == 5
    assert lam.get_function_concurrency(FunctionName=fn_name)["ReservedConcurrentExecutions"] == 5
    assert lam.get_function(FunctionName=fn_name)["Concurrency"] == {
        "ReservedConcurrentExecutions": 5}

    by_arn = lam.put_function_concurrency(FunctionName=function_arn(fn_name),
                                          ReservedConcurrentExecutions=3)
    assert by_arn["ReservedConcurrentExecutions"] == 3

    deleted = lam.delete_function_concurrency(FunctionName=fn_name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=fn_name)


def test_function_concurrency_of_unknown_function(lam: Any) -> None:
    name = unique_name("missing")
    expected = ("ResourceNotFoundException", 404, f"Function not found: {function_arn(name)}")
    with pytest.raises(ClientError) as put:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    assert error_of(put) == expected
    with pytest.raises(ClientError) as get:
        lam.get_function_concurrency(FunctionName=name)
    assert error_of(get) == expected
    with pytest.raises(ClientError) as delete:
        lam.delete_function_concurrency(FunctionName=name)
    assert error_of(delete) == expected


def test_reservation_may_not_starve_the_unreserved_pool(lam: Any, functions: Functions,
                                                       fn_name: str) -> None:
    functions.create(fn_name, MemorySize=MEMORY)
    limit = lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"]
    with pytest.raises(ClientError) as exc:
        lam.put_function_concurrency(FunctionName=fn_name, ReservedConcurrentExecutions=limit)
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message.startswith("Specified ReservedConcurrentExecutions for function decreases "
                              "account's UnreservedConcurrentExecution below its minimum value of [")


def test_negative_reservation_is_a_validation_error(lam_raw: Any, functions: Functions,
                                                   fn_name: str) -> None:
    functions.create(fn_name, MemorySize=MEMORY)
    with pytest.raises(ClientError) as exc:
        lam_raw.put_function_concurrency(FunctionName=fn_name, ReservedConcurrentExecutions=-1)
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert "Member must have value greater than or equal to 0" in message


def test_account_settings_reflect_reservations(lam: Any, functions: Functions,
                                               fn_name: str) -> None:
    functions.create(fn_name, MemorySize=MEMORY)
    before = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    lam.put_function_concurrency(FunctionName=fn_name, ReservedConcurrentExecutions=7)
    after = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    assert after == before - 7


# -- throttling -----------------------------------------------------------------------------


def assert_throttled(exc: Exception) -> None:
    assert isinstance(exc, ClientError), exc
    response = exc.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert response["Error"]["Code"] == "TooManyRequestsException"
    assert response["Error"]["Message"] == "Rate Exceeded."
    assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"


def test_reserved_zero_throttles_every_invoke(lam: Any, functions: Functions,
                                             fn_name: str) -> None:
    create_slow(functions, fn_name)
    lam.put_function_concurrency(FunctionName=fn_name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=fn_name, Payload=b"{}")
    assert_throttled(exc.value)
    lam.delete_function_concurrency(FunctionName=fn_name)
    assert invoke(lam, fn_name, {})["token"]


def test_reserved_one_throttles_the_second_concurrent_invoke(
        server: Server, lam: Any, functions: Functions, fn_name: str) -> None:
    create_slow(functions, fn_name)
    lam.put_function_concurrency(FunctionName=fn_name, ReservedConcurrentExecutions=1)
    invoke(lam, fn_name, {})  # warm: the first call's cold start does not blur the overlap
    clients = [client_for(server), client_for(server)]
    results = in_parallel([functools.partial(invoke, c, fn_name, {"sleep": 2}) for c in clients],
                          stagger=0.5)
    ok = [r for r in results if isinstance(r, dict)]
    failed = [r for r in results if not isinstance(r, dict)]
    assert len(ok) == 1 and len(failed) == 1, results
    assert_throttled(failed[0])
    assert invoke(lam, fn_name, {})["token"]  # the lease was given back


def test_concurrent_invokes_get_separate_environments(server: Server, functions: Functions,
                                                      fn_name: str) -> None:
    create_slow(functions, fn_name)
    clients = [client_for(server), client_for(server)]
    results = in_parallel([functools.partial(invoke, c, fn_name, {"sleep": 1.5}) for c in clients])
    assert all(isinstance(r, dict) for r in results), results
    first, second = results
    assert first["started"] < second["ended"] and second["started"] < first["ended"]  # overlap
    assert first["token"] != second["token"]  # two environments...
    assert first["tmp"] == first["token"] and second["tmp"] == second["token"]  # ...two /tmp
