"""Synchronous Invoke through the real boto3: payloads, versions, logs, context and environment.

One probe function serves most tests (module scope: a warm environment is part of what is
under test); tests that change code or configuration create their own function. Everything
asserted is AWS Lambda's documented or observed behaviour for the python3.11 runtime.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_compat_support import (
    REGION,
    Functions,
    Server,
    client_for,
    function_arn,
    make_zip,
    unique_name,
    wait_updated,
)

MEMORY = 512
TIMEOUT = 30

PROBE = '''
import json, logging, os, time, uuid

ENV_TOKEN = uuid.uuid4().hex
with open("/tmp/env-token", "w") as f:
    f.write(ENV_TOKEN)
COUNT = 0
log = logging.getLogger()
log.setLevel(logging.INFO)


def handler(event, context):
    global COUNT
    COUNT += 1
    op = event.get("op", "echo") if isinstance(event, dict) else "echo"
    if op == "echo":
        return {"event": event}
    if op == "state":
        with open("/tmp/env-token") as f:
            return {"count": COUNT, "token": ENV_TOKEN, "tmp": f.read()}
    if op == "log":
        print("printed-line", event.get("marker"))
        log.info("logged-line %s", event.get("marker"))
        print("x" * event.get("pad", 0))
        return {"rid": context.aws_request_id}
    if op == "context":
        cc = context.client_context
        return {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining": context.get_remaining_time_in_millis(),
            "client_context": None if cc is None else {
                "custom": cc.custom, "env": cc.env,
                "installation_id": cc.client.installation_id if cc.client else None,
                "app_title": cc.client.app_title if cc.client else None,
            },
        }
    if op == "env":
        return {"env": dict(os.environ)}
    if op == "boto3":
        import boto3
        client = boto3.client("s3", region_name="us-east-1")
        return {"version": boto3.__version__, "service": client.meta.service_model.service_name}
    raise ValueError("unknown op " + op)
'''


def invoke(lam: Any, name: str, event: Any, **params: Any) -> tuple[dict[str, Any], Any]:
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **params)
    raw = response["Payload"].read()
    return response, json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def probe(lam: Any) -> Iterator[str]:
    """The probe function, with a published version 1 and an alias `live` → 1."""
    helper = Functions(lam)
    name = unique_name("invoke-probe")
    helper.create(name, code=make_zip({"index.py": PROBE}), MemorySize=MEMORY, Timeout=TIMEOUT,
                  Environment={"Variables": {"MY_SETTING": "from-config", "OTHER": "x y=z"}})
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    yield name
    helper.cleanup()


def test_request_response_round_trip(lam: Any, probe: str) -> None:
    event = {"op": "echo", "nested": {"list": [1, 2.5, None, True], "text": "héllo ✓"}}
    response, body = invoke(lam, probe, event)
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert "LogResult" not in response
    assert body == {"event": event}


def test_empty_payload_reaches_the_handler_as_an_empty_object(lam: Any, probe: str) -> None:
    response = lam.invoke(FunctionName=probe)
    assert response["StatusCode"] == 200
    assert json.loads(response["Payload"].read()) == {"event": {}}


def test_request_id_header_is_the_invocation_request_id(lam: Any, probe: str) -> None:
    response, body = invoke(lam, probe, {"op": "context"})
    header = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert body["aws_request_id"] == header
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", header)


@pytest.mark.parametrize(("qualifier", "executed"), [
    (None, "$LATEST"), ("$LATEST", "$LATEST"), ("1", "1"), ("live", "1"),
])
def test_executed_version_and_invoked_arn(lam: Any, probe: str, qualifier: str | None,
                                          executed: str) -> None:
    params = {"Qualifier": qualifier} if qualifier else {}
    response, body = invoke(lam, probe, {"op": "context"}, **params)
    assert response["ExecutedVersion"] == executed
    assert body["function_version"] == executed
    assert body["invoked_function_arn"] == function_arn(probe, qualifier)


def test_qualified_arn_as_function_name(lam: Any, probe: str) -> None:
    response, body = invoke(lam, function_arn(probe, "live"), {"op": "context"})
    assert response["ExecutedVersion"] == "1"
    assert body["invoked_function_arn"] == function_arn(probe, "live")


def test_globals_and_tmp_persist_across_warm_invokes(lam: Any, probe: str) -> None:
    _, first = invoke(lam, probe, {"op": "state"})
    _, second = invoke(lam, probe, {"op": "state"})
    assert second["token"] == first["token"]  # the same environment served both
    assert second["count"] == first["count"] + 1
    assert first["tmp"] == first["token"] and second["tmp"] == first["token"]


def test_log_tail_has_platform_lines_and_function_output(lam: Any, probe: str) -> None:
    marker = uuid.uuid4().hex
    response, body = invoke(lam, probe, {"op": "log", "marker": marker}, LogType="Tail")
    log = base64.b64decode(response["LogResult"]).decode()
    rid = body["rid"]
    assert f"START RequestId: {rid} Version: $LATEST" in log
    assert f"printed-line {marker}" in log
    assert re.search(rf"\[INFO\]\t\S+Z\t{rid}\tlogged-line {marker}", log)
    assert f"END RequestId: {rid}" in log
    report = re.search(rf"REPORT RequestId: {rid}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
                       rf"Memory Size: {MEMORY} MB\tMax Memory Used: \d+ MB", log)
    assert report is not None
    assert log.index("START") < log.index("printed-line") < log.index("END") < log.index("REPORT")


def test_log_tail_is_the_last_4_kb(lam: Any, probe: str) -> None:
    marker = uuid.uuid4().hex
    response, body = invoke(lam, probe, {"op": "log", "marker": marker, "pad": 20_000},
                            LogType="Tail")
    raw = base64.b64decode(response["LogResult"])
    assert 3000 < len(raw) <= 4096
    text = raw.decode(errors="replace")
    assert f"REPORT RequestId: {body['rid']}" in text  # the end is kept...
    assert f"START RequestId: {body['rid']}" not in text  # ...the start is cut


def test_log_type_none_gives_no_log(lam: Any, probe: str) -> None:
    response, _ = invoke(lam, probe, {"op": "echo"}, LogType="None")
    assert "LogResult" not in response


def test_context_object(lam: Any, probe: str) -> None:
    response, body = invoke(lam, probe, {"op": "context"})
    assert body["function_name"] == probe
    assert body["function_version"] == "$LATEST"
    assert body["invoked_function_arn"] == function_arn(probe)
    assert body["memory_limit_in_mb"] == str(MEMORY)  # a string in AWS's Python runtime
    assert body["log_group_name"] == f"/aws/lambda/{probe}"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", body["log_stream_name"])
    assert 0 < body["remaining"] <= TIMEOUT * 1000
    assert body["remaining"] > (TIMEOUT - 5) * 1000
    assert body["client_context"] is None


def test_client_context_reaches_the_function(lam: Any, probe: str) -> None:
    doc = {"custom": {"k": "v"}, "env": {"platform": "test"},
           "client": {"installation_id": "inst-1", "app_title": "compat"}}
    encoded = base64.b64encode(json.dumps(doc).encode()).decode()
    _, body = invoke(lam, probe, {"op": "context"}, ClientContext=encoded)
    assert body["client_context"] == {"custom": {"k": "v"}, "env": {"platform": "test"},
                                      "installation_id": "inst-1", "app_title": "compat"}


def test_environment_variables_aws_sets(lam: Any, probe: str, server: Server) -> None:
    _, body = invoke(lam, probe, {"op": "env"})
    env = body["env"]
    _, context = invoke(lam, probe, {"op": "context"})
    assert env["_HANDLER"] == "index.handler"
    assert env["AWS_REGION"] == REGION and env["AWS_DEFAULT_REGION"] == REGION
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == probe
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == str(MEMORY)
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{probe}"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == context["log_stream_name"]
    assert re.fullmatch(r"[\w.-]+:\d+", env["AWS_LAMBDA_RUNTIME_API"])
    assert env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert env["LAMBDA_RUNTIME_DIR"] == "/var/runtime"
    assert env["TZ"] == ":UTC"
    assert env["LANG"] == "en_US.UTF-8"
    assert env["PATH"].split(":")[0] == "/var/lang/bin"
    assert {"/usr/local/bin", "/bin", "/opt/bin"} <= set(env["PATH"].split(":"))
    assert env["MY_SETTING"] == "from-config" and env["OTHER"] == "x y=z"


def test_credentials_present_but_never_the_administrators(lam: Any, probe: str,
                                                          server: Server) -> None:
    _, body = invoke(lam, probe, {"op": "env"})
    env = body["env"]
    admin_key, admin_secret = server.credentials()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert env.get(name), f"{name} missing"
    assert env["AWS_ACCESS_KEY_ID"] != admin_key
    assert admin_secret not in json.dumps(env)
    assert admin_key not in json.dumps(env)


def test_boto3_is_importable_inside_the_function(lam: Any, probe: str) -> None:
    response, body = invoke(lam, probe, {"op": "boto3"})
    assert "FunctionError" not in response, body
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"])
    assert body["service"] == "s3"


def _trace_of(lam: Any, name: str) -> str | None:
    _, body = invoke(lam, name, {"op": "env"})
    value = body["env"].get("_X_AMZN_TRACE_ID")
    return value if isinstance(value, str) else None


def test_trace_header_reaches_the_function(server: Server, probe: str) -> None:
    traced = client_for(server)
    root = "1-5759e988-bd862e3fe1be46a994272793"
    header = f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1"

    def add_header(request: Any, **_: Any) -> None:
        request.headers["X-Amzn-Trace-Id"] = header

    traced.meta.events.register("before-sign.lambda.Invoke", add_header)
    value = _trace_of(traced, probe)
    assert value is not None and f"Root={root}" in value


def test_trace_id_is_set_without_a_trace_header(lam: Any, probe: str) -> None:
    value = _trace_of(lam, probe)
    assert value is not None
    assert re.search(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", value)
    assert value != _trace_of(lam, probe)  # one per invocation


def test_dry_run_is_204_with_no_payload_and_runs_nothing(lam: Any, probe: str) -> None:
    _, before = invoke(lam, probe, {"op": "state"})
    response = lam.invoke(FunctionName=probe, InvocationType="DryRun",
                          Payload=json.dumps({"op": "state"}).encode())
    assert response["StatusCode"] == 204
    assert response["Payload"].read() == b""
    assert "FunctionError" not in response
    _, after = invoke(lam, probe, {"op": "state"})
    assert after["token"] == before["token"]
    assert after["count"] == before["count"] + 1  # the dry run did not reach the handler


def test_dry_run_checks_that_the_function_exists(lam: Any) -> None:
    name = unique_name("nope")
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=name, InvocationType="DryRun")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert exc.value.response["Error"]["Code"] == "ResourceNotFoundException"



# -- updates and versions ------------------------------------------------------------------

UPDATE_CODE = '''
import os, uuid
TOKEN = uuid.uuid4().hex
def handler(event, context):
    return {"code": "CODE", "setting": os.environ.get("SETTING"), "token": TOKEN}
'''


def _update_zip(tag: str) -> bytes:
    return make_zip({"index.py": UPDATE_CODE.replace("CODE", tag)})


def test_updates_reach_the_next_invoke_and_versions_keep_their_code(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, code=_update_zip("v1"), MemorySize=MEMORY,
                     Environment={"Variables": {"SETTING": "one"}})
    _, first = invoke(lam, fn_name, {})
    assert (first["code"], first["setting"]) == ("v1", "one")
    assert lam.publish_version(FunctionName=fn_name)["Version"] == "1"

    lam.update_function_code(FunctionName=fn_name, ZipFile=_update_zip("v2"))
    wait_updated(lam, fn_name)
    _, second = invoke(lam, fn_name, {})
    assert (second["code"], second["setting"]) == ("v2", "one")
    assert second["token"] != first["token"]  # a new environment, never the old one

    lam.update_function_configuration(FunctionName=fn_name,
                                      Environment={"Variables": {"SETTING": "two"}})
    wait_updated(lam, fn_name)
    _, third = invoke(lam, fn_name, {})
    assert (third["code"], third["setting"]) == ("v2", "two")
    assert third["token"] != second["token"]

    response, pinned = invoke(lam, fn_name, {}, Qualifier="1")
    assert response["ExecutedVersion"] == "1"
    assert (pinned["code"], pinned["setting"]) == ("v1", "one")


def test_weighted_alias_runs_both_versions(lam: Any, functions: Functions,
                                          fn_name: str) -> None:
    functions.create(fn_name, code=_update_zip("a"), MemorySize=MEMORY)
    lam.publish_version(FunctionName=fn_name)
    lam.update_function_code(FunctionName=fn_name, ZipFile=_update_zip("b"))
    wait_updated(lam, fn_name)
    lam.publish_version(FunctionName=fn_name)
    lam.create_alias(FunctionName=fn_name, Name="split", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    seen: dict[str, set[str]] = {}
    for _ in range(40):
        response, body = invoke(lam, fn_name, {}, Qualifier="split")
        seen.setdefault(response["ExecutedVersion"], set()).add(body["code"])
    assert seen == {"1": {"a"}, "2": {"b"}}

