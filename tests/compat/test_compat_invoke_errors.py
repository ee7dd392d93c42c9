"""Invoke errors through the real boto3: function errors (200 + X-Amz-Function-Error) and
request errors (4xx), each followed by an invoke that shows the platform still serves.

AWS's shapes: a function error is HTTP 200 with ``X-Amz-Function-Error: Unhandled`` and a JSON
payload ``{errorMessage, errorType, requestId?, stackTrace?}``; platform-detected failures say
``RequestId: <id> Error: <what>`` in errorMessage (Sandbox.Timedout, Runtime.ExitError,
Runtime.OutOfMemory). Request errors never reach the function.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_compat_support import Functions, error_of, function_arn, make_zip, unique_name

MEMORY = 512
SYNC_LIMIT = 6_291_456  # AWS's request payload limit for synchronous Invoke
AWS_RESPONSE_LIMIT = 6_291_556  # what AWS's Function.ResponseSizeTooLarge message names

WORKER = '''
import os, time, uuid
TOKEN = uuid.uuid4().hex

def handler(event, context):
    op = event.get("op", "ok")
    if op == "ok":
        return {"ok": True, "token": TOKEN, "rid": context.aws_request_id}
    if op == "raise":
        raise ValueError("boom " + event.get("marker", ""))
    if op == "marshal":
        return {"a set": {1, 2}}
    if op == "exit":
        os._exit(3)
    if op == "sleep":
        time.sleep(event["seconds"])
        return {"slept": True}
    if op == "big":
        return "x" * event["size"]
    if op == "length":
        return {"length": len(event.get("data", ""))}
    if op == "balloon":
        chunks = []
        while True:
            chunks.append(bytearray(16 * 1024 * 1024))
    raise ValueError("unknown op")
'''


def invoke(lam: Any, name: str, event: Any, **params: Any) -> tuple[dict[str, Any], Any]:
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **params)
    raw = response["Payload"].read()
    return response, json.loads(raw) if raw else None


def request_id(response: dict[str, Any]) -> str:
    value: str = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    return value


@pytest.fixture(scope="module")
def module_functions(lam: Any) -> Iterator[Functions]:
    helper = Functions(lam)
    yield helper
    helper.cleanup()


@pytest.fixture(scope="module")
def worker(lam: Any, module_functions: Functions) -> str:
    name = unique_name("invoke-errors")
    module_functions.create(name, code=make_zip({"index.py": WORKER}), MemorySize=MEMORY,
                            Timeout=30)
    return name


def assert_serves(lam: Any, name: str) -> str:
    """The function (and the platform) still answers; returns the environment's token."""
    response, body = invoke(lam, name, {"op": "ok"})
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, body
    assert body["ok"] is True
    token: str = body["token"]
    return token


def assert_function_error(response: dict[str, Any], body: Any, error_type: str) -> None:
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert response["ExecutedVersion"] == "$LATEST"
    assert isinstance(body, dict)
    assert body["errorType"] == error_type, body
    assert isinstance(body["errorMessage"], str) and body["errorMessage"]


def platform_message(body: dict[str, Any], response: dict[str, Any], what: str) -> None:
    assert body["errorMessage"] == f"RequestId: {request_id(response)} Error: {what}"


# -- errors raised or returned by the function --------------------------------------------


def test_handler_exception(lam: Any, worker: str) -> None:
    response, body = invoke(lam, worker, {"op": "raise", "marker": "m1"})
    assert_function_error(response, body, "ValueError")
    assert body["errorMessage"] == "boom m1"
    assert body["requestId"] == request_id(response)
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]
    assert any('index.py", line' in frame and "in handler" in frame for frame in body["stackTrace"])
    assert not any("lamina" in frame for frame in body["stackTrace"])
    assert_serves(lam, worker)


def test_handler_exception_is_in_the_log_tail(lam: Any, worker: str) -> None:
    response, _ = invoke(lam, worker, {"op": "raise", "marker": "m2"}, LogType="Tail")
    log = base64.b64decode(response["LogResult"]).decode()
    assert "[ERROR] ValueError: boom m2" in log
    assert f"END RequestId: {request_id(response)}" in log


def test_non_serializable_return_is_a_marshal_error(lam: Any, worker: str) -> None:
    response, body = invoke(lam, worker, {"op": "marshal"})
    assert_function_error(response, body, "Runtime.MarshalError")
    assert body["errorMessage"] == (
        "Unable to marshal response: Object of type set is not JSON serializable")
    assert_serves(lam, worker)


def test_exit_is_runtime_exit_error_and_next_invoke_gets_a_fresh_env(lam: Any,
                                                                    worker: str) -> None:
    before = assert_serves(lam, worker)
    response, body = invoke(lam, worker, {"op": "exit"})
    assert_function_error(response, body, "Runtime.ExitError")
    platform_message(body, response, "Runtime exited with error: exit status 3")
    assert assert_serves(lam, worker) != before


def test_response_too_large(lam: Any, worker: str) -> None:
    response, body = invoke(lam, worker, {"op": "big", "size": 7_000_000})
    assert_function_error(response, body, "Function.ResponseSizeTooLarge")
    assert re.fullmatch(r"Response payload size \(\d+ bytes\) exceeded maximum allowed payload "
                        r"size \(\d+ bytes\)\.", body["errorMessage"]), body["errorMessage"]
    assert_serves(lam, worker)


def test_response_between_the_request_and_response_limits_is_delivered(lam: Any,
                                                                      worker: str) -> None:
    size = AWS_RESPONSE_LIMIT - 50  # JSON adds the two quotes
    response = lam.invoke(FunctionName=worker, Payload=json.dumps({"op": "big", "size": size}))
    assert "FunctionError" not in response
    assert len(response["Payload"].read()) == size + 2


def test_timeout(lam: Any, module_functions: Functions) -> None:
    name = unique_name("invoke-timeout")
    module_functions.create(name, code=make_zip({"index.py": WORKER}), MemorySize=MEMORY,
                            Timeout=1)
    before = assert_serves(lam, name)
    response, body = invoke(lam, name, {"op": "sleep", "seconds": 3})
    assert_function_error(response, body, "Sandbox.Timedout")
    assert "Task timed out after 1.00 seconds" in body["errorMessage"]
    platform_message(body, response, "Task timed out after 1.00 seconds")
    assert assert_serves(lam, name) != before  # the timed-out environment was not reused


def test_out_of_memory(lam: Any, module_functions: Functions) -> None:
    name = unique_name("invoke-oom")
    module_functions.create(name, code=make_zip({"index.py": WORKER}), MemorySize=128,
                            Timeout=20)
    response, body = invoke(lam, name, {"op": "balloon"})
    assert_function_error(response, body, "Runtime.OutOfMemory")
    assert body["errorMessage"].startswith(f"RequestId: {request_id(response)} Error: Runtime exited")
    assert_serves(lam, name)


# -- errors while loading the handler (init) ----------------------------------------------


@pytest.mark.parametrize(("files", "handler", "error_type", "message"), [
    ({"index.py": "import not_a_module_xyz\ndef handler(e, c):\n    return 1\n"},
     "index.handler", "Runtime.ImportModuleError",
     "Unable to import module 'index': No module named 'not_a_module_xyz'"),
    ({"index.py": "def handler(e, c):\n    return 1\n"},
     "index.missing", "Runtime.HandlerNotFound", "Handler 'missing' missing on module 'index'"),
    ({"index.py": "def handler(e, c)\n    return 1\n"},
     "index.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'index': "),
    ({"index.py": "def handler(e, c):\n    return 1\n"},
     "nomodule.handler", "Runtime.ImportModuleError",
     "Unable to import module 'nomodule': No module named 'nomodule'"),
], ids=["import-error", "handler-not-found", "syntax-error", "missing-module"])
def test_init_errors(lam: Any, functions: Functions, worker: str, fn_name: str,
                     files: dict[str, str | bytes], handler: str, error_type: str, message: str) -> None:
    functions.create(fn_name, code=make_zip(files), Handler=handler, MemorySize=MEMORY)
    for _ in range(2):  # AWS retries init on the next invoke; the error stays the same
        response, body = invoke(lam, fn_name, {})
        assert_function_error(response, body, error_type)
        assert body["errorMessage"].startswith(message), body
        assert set(body) >= {"errorMessage", "errorType"}
    assert_serves(lam, worker)


# -- request errors: the function never runs ----------------------------------------------


def test_payload_at_the_limit_is_too_large(lam: Any, worker: str) -> None:
    payload = json.dumps({"op": "length", "data": ""}).encode()
    payload = payload[:-2] + b"x" * (SYNC_LIMIT - len(payload)) + payload[-2:]
    assert len(payload) == SYNC_LIMIT
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=worker, Payload=payload)
    code, status, message = error_of(exc)
    assert (code, status) == ("RequestTooLargeException", 413)
    assert message == (
        f"Request must be smaller than {SYNC_LIMIT} bytes for the InvokeFunction operation")
    assert_serves(lam, worker)


def test_payload_just_under_the_limit_runs(lam: Any, worker: str) -> None:
    payload = json.dumps({"op": "length", "data": ""}).encode()
    pad = SYNC_LIMIT - 1 - len(payload)
    payload = payload[:-2] + b"x" * pad + payload[-2:]
    response = lam.invoke(FunctionName=worker, Payload=payload)
    assert json.loads(response["Payload"].read()) == {"length": pad}


@pytest.mark.parametrize("payload", [b"not json", b"{'single': 'quotes'}", b"{\"a\": 1"])
def test_non_json_payload(lam: Any, worker: str, payload: bytes) -> None:
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=worker, Payload=payload)
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidRequestContentException", 400)
    assert message.startswith("Could not parse request body into json: ")
    assert_serves(lam, worker)


def test_unknown_function(lam: Any) -> None:
    name = unique_name("missing")
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert error_of(exc) == ("ResourceNotFoundException", 404,
                             f"Function not found: {function_arn(name)}")


@pytest.mark.parametrize("qualifier", ["99", "nosuchalias"])
def test_unknown_version_or_alias(lam: Any, worker: str, qualifier: str) -> None:
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=worker, Qualifier=qualifier, Payload=b"{}")
    assert error_of(exc) == ("ResourceNotFoundException", 404,
                             f"Function not found: {function_arn(worker, qualifier)}")
    assert_serves(lam, worker)
