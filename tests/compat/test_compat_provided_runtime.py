"""provided.al2023: the function's own `bootstrap` speaks the Runtime API, like on AWS.

Two clients prove the Runtime API is the real one: a hand-written bootstrap on http.client,
and AWS's own runtime interface client (awslambdaric, from this venv, vendored into the zip
with its dependencies). Both must get correct results, error results and context fields.
"""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awslambdaric
import pytest
from test_compat_support import Functions, function_arn, unique_name, wait_active

MEMORY = 512
TIMEOUT = 20
RUNTIME = "provided.al2023"

HTTP_BOOTSTRAP = '''#!/var/lang/bin/python3.11 -I
import http.client, json, os, sys

api = os.environ["AWS_LAMBDA_RUNTIME_API"]
host, port = api.rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port))
base = "/2018-06-01/runtime/invocation/"
print("custom bootstrap up", flush=True)
while True:
    conn.request("GET", base + "next")
    resp = conn.getresponse()
    event = json.loads(resp.read())
    headers = {k.lower(): v for k, v in resp.getheaders()}
    rid = headers["lambda-runtime-aws-request-id"]
    print("handling", rid, flush=True)
    if event.get("fail"):
        doc = {"errorMessage": "asked to fail", "errorType": "CustomError", "stackTrace": []}
        conn.request("POST", base + rid + "/error", json.dumps(doc),
                     {"Lambda-Runtime-Function-Error-Type": "CustomError"})
    else:
        out = {"event": event, "headers": headers, "handler": os.environ.get("_HANDLER"),
               "task_root": os.environ.get("LAMBDA_TASK_ROOT"), "cwd": os.getcwd()}
        conn.request("POST", base + rid + "/response", json.dumps(out))
    status = conn.getresponse()
    status.read()
'''

RIC_BOOTSTRAP = (
    "#!/bin/sh\n"
    "export PYTHONPATH=/var/task\n"
    "exec /var/lang/bin/python3.11 -m awslambdaric app.handler\n"
)

RIC_APP = '''
import time

def handler(event, context):
    if event.get("fail"):
        raise KeyError("ric-failure")
    print("ric handler ran")
    return {
        "event": event,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
    }
'''


def zip_with(files: dict[str, str | bytes], executable: set[str]) -> bytes:
    """A zip whose `executable` members carry mode 0755, as a custom runtime needs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name in executable else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buf.getvalue()


def vendored_ric() -> dict[str, str | bytes]:
    """awslambdaric and its runtime dependencies, copied from this venv's site-packages."""
    site = Path(awslambdaric.__file__).parent.parent
    files: dict[str, str | bytes] = {}
    members = [site / "awslambdaric", site / "simplejson", site / "snapshot_restore_py.py",
               *site.glob("runtime_client*.so")]
    for member in members:
        paths = [member] if member.is_file() else sorted(member.rglob("*"))
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts and "tests" not in path.parts:
                files[str(path.relative_to(site))] = path.read_bytes()
    return files


def invoke(lam: Any, name: str, event: Any, **params: Any) -> tuple[dict[str, Any], Any]:
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **params)
    raw = response["Payload"].read()
    return response, json.loads(raw) if raw else None


def request_id(response: dict[str, Any]) -> str:
    value: str = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    return value


def create(functions: Functions, name: str, code: bytes, **params: Any) -> None:
    functions.create(name, code=code, Runtime=RUNTIME, Handler="app.handler",
                     MemorySize=MEMORY, Timeout=TIMEOUT, **params)


def test_http_client_bootstrap(lam: Any, functions: Functions, fn_name: str) -> None:
    create(functions, fn_name, zip_with({"bootstrap": HTTP_BOOTSTRAP}, {"bootstrap"}))
    lam.publish_version(FunctionName=fn_name)
    event = {"hello": "provided", "n": [1, 2, 3]}
    response, body = invoke(lam, fn_name, event, Qualifier="1")
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, body
    assert response["ExecutedVersion"] == "1"
    assert body["event"] == event
    headers = body["headers"]
    assert headers["lambda-runtime-aws-request-id"] == request_id(response)
    assert headers["lambda-runtime-invoked-function-arn"] == function_arn(fn_name, "1")
    assert "Root=" in headers["lambda-runtime-trace-id"]
    deadline = int(headers["lambda-runtime-deadline-ms"])
    assert re.fullmatch(r"\d{13}", headers["lambda-runtime-deadline-ms"])
    assert deadline > 0
    assert body["handler"] == "app.handler"
    assert body["task_root"] == "/var/task" and body["cwd"] == "/var/task"

    # A second invoke reaches the same long-lived bootstrap process (warm).
    _, again = invoke(lam, fn_name, {"second": True}, Qualifier="1")
    assert again["event"] == {"second": True}


def test_http_client_bootstrap_error_and_log(lam: Any, functions: Functions,
                                            fn_name: str) -> None:
    create(functions, fn_name, zip_with({"bootstrap": HTTP_BOOTSTRAP}, {"bootstrap"}))
    response, body = invoke(lam, fn_name, {"fail": True}, LogType="Tail")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body == {"errorMessage": "asked to fail", "errorType": "CustomError", "stackTrace": []}
    log = base64.b64decode(response["LogResult"]).decode()
    assert "custom bootstrap up" in log  # init output of a cold start belongs to its invoke
    assert f"handling {request_id(response)}" in log
    _, ok = invoke(lam, fn_name, {"after": 1})
    assert ok["event"] == {"after": 1}


@pytest.fixture(scope="module")
def ric_function(lam: Any) -> Iterator[str]:
    helper = Functions(lam)
    name = unique_name("ric")
    files = {"bootstrap": RIC_BOOTSTRAP, "app.py": RIC_APP, **vendored_ric()}
    create(helper, name, zip_with(files, {"bootstrap"}))
    wait_active(lam, name)
    yield name
    helper.cleanup()


def test_awslambdaric_result_and_context(lam: Any, ric_function: str) -> None:
    response, body = invoke(lam, ric_function, {"via": "awslambdaric"})
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, body
    assert response["ExecutedVersion"] == "$LATEST"
    assert body["event"] == {"via": "awslambdaric"}
    assert body["function_name"] == ric_function
    assert body["function_version"] == "$LATEST"
    assert body["invoked_function_arn"] == function_arn(ric_function)
    assert body["memory_limit_in_mb"] == str(MEMORY)
    assert body["aws_request_id"] == request_id(response)
    assert body["log_group_name"] == f"/aws/lambda/{ric_function}"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", body["log_stream_name"])
    assert 0 < body["remaining"] <= TIMEOUT * 1000


def test_awslambdaric_error_result(lam: Any, ric_function: str) -> None:
    response, body = invoke(lam, ric_function, {"fail": True})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "KeyError"
    assert body["errorMessage"] == "'ric-failure'"
    assert body["requestId"] == request_id(response)
    assert any("app.py" in frame for frame in body["stackTrace"])
    _, ok = invoke(lam, ric_function, {"after": "error"})
    assert ok["event"] == {"after": "error"}


def test_zip_without_bootstrap(lam: Any, functions: Functions, fn_name: str) -> None:
    create(functions, fn_name, zip_with({"app.py": RIC_APP}, set()))
    response, body = invoke(lam, fn_name, {})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    # AWS: Runtime.InvalidEntrypoint, "Couldn't find valid bootstrap(s): [/var/task/bootstrap
    # /opt/bootstrap]"
    assert body["errorType"] == "Runtime.InvalidEntrypoint", body
    assert "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]" in (
        body["errorMessage"])
