"""Execution roles from inside functions: boto3 in a sandbox reaches Lamina with its role's rights.

A function's environment holds temporary credentials of its role (never a platform key) and
AWS_ENDPOINT_URL pointing at the relay in its own network namespace; a plain
``boto3.client("lambda")`` in the handler then calls the real server, signed as
``assumed-role/<role>/<function>`` and judged by that role's policy. The credentials die with
the environment: deleting the function makes them unusable from anywhere.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_compat_support import (
    ACCOUNT,
    Functions,
    Server,
    allow_policy,
    aws_client,
    client_for,
    error_of,
    function_arn,
    make_zip,
    trust_policy,
)

pytestmark = pytest.mark.root

CALLER = """
import json, os
import boto3
from botocore.exceptions import ClientError

def handler(event, context):
    env = {k: os.environ.get(k) for k in
           ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")}
    lam = boto3.client("lambda")
    who = boto3.client("sts").get_caller_identity()["Arn"]
    try:
        out = lam.invoke(FunctionName=event["target"], Payload=json.dumps({"from": "caller"}))
        result = {"ok": json.loads(out["Payload"].read())}
    except ClientError as exc:
        result = {"error": exc.response["Error"]["Code"], "message": exc.response["Error"]["Message"]}
    try:
        lam.create_function(FunctionName="should-not-exist-" + context.aws_request_id[:8],
                            Runtime="python3.11", Role=os.environ.get("ROLE_ARN", ""),
                            Handler="index.handler", Code={"ZipFile": b"x"})
        result["admin_call"] = "allowed"
    except ClientError as exc:
        result["admin_call"] = exc.response["Error"]["Code"]
    return {"result": result, "env": env, "who": who}
"""

TARGET = """
def handler(event, context):
    return {"target saw": event}
"""


@pytest.fixture
def functions(lam: Any) -> Iterator[Functions]:
    made = Functions(lam)
    yield made
    made.cleanup()


@pytest.fixture
def invoker_role(server: Server) -> Iterator[str]:
    """A role Lambda may assume, allowed to invoke functions whose names start with 'target-'."""
    iam = aws_client(server, "iam")
    name = f"invoker-{uuid.uuid4().hex[:8]}"
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust_policy({"Service": "lambda.amazonaws.com"}))
    policy = allow_policy("lambda:InvokeFunction", resource=function_arn("target-*"))
    iam.put_role_policy(RoleName=name, PolicyName="invoke-targets", PolicyDocument=policy)
    yield f"arn:aws:iam::{ACCOUNT}:role/{name}"
    iam.delete_role_policy(RoleName=name, PolicyName="invoke-targets")
    iam.delete_role(RoleName=name)


def _call(lam: Any, name: str, target: str) -> dict[str, Any]:
    out = lam.invoke(FunctionName=name, Payload=json.dumps({"target": target}))
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    return body  # type: ignore[no-any-return]


def test_function_invokes_another_with_its_role(lam: Any, functions: Functions, invoker_role: str) -> None:
    target = f"target-{uuid.uuid4().hex[:8]}"
    caller = f"caller-{uuid.uuid4().hex[:8]}"
    functions.create(target, code=make_zip({"index.py": TARGET}))
    functions.create(caller, code=make_zip({"index.py": CALLER}), Role=invoker_role, Timeout=30,
                     Environment={"Variables": {"ROLE_ARN": invoker_role}})
    body = _call(lam, caller, target)
    assert body["result"]["ok"] == {"target saw": {"from": "caller"}}
    assert body["who"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{invoker_role.rsplit('/', 1)[1]}/{caller}"
    assert body["env"]["AWS_ACCESS_KEY_ID"].startswith("ASIA") and body["env"]["AWS_SESSION_TOKEN"]
    # The role allows invoking targets only: an administrator's call from inside is refused.
    assert body["result"]["admin_call"] == "AccessDeniedException"


def test_function_without_permission_is_denied(lam: Any, functions: Functions, server: Server) -> None:
    target = f"target-{uuid.uuid4().hex[:8]}"
    caller = f"caller-{uuid.uuid4().hex[:8]}"
    functions.create(target, code=make_zip({"index.py": TARGET}))
    functions.create(caller, code=make_zip({"index.py": CALLER}), Timeout=30)  # the default role
    body = _call(lam, caller, target)
    assert body["result"]["error"] == "AccessDeniedException"
    assert body["result"]["message"] == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/lambda-role/{caller} is not authorized to perform: "
        f"lambda:InvokeFunction on resource: {function_arn(target)} because no identity-based policy "
        "allows the lambda:InvokeFunction action"
    )
    admin_key, admin_secret = server.credentials()
    assert admin_key not in json.dumps(body) and admin_secret not in json.dumps(body)


def test_credentials_stop_working_when_the_function_is_deleted(
    lam: Any, functions: Functions, server: Server, invoker_role: str
) -> None:
    target = f"target-{uuid.uuid4().hex[:8]}"
    caller = f"caller-{uuid.uuid4().hex[:8]}"
    functions.create(target, code=make_zip({"index.py": TARGET}))
    functions.create(caller, code=make_zip({"index.py": CALLER}), Role=invoker_role, Timeout=30)
    env = _call(lam, caller, target)["env"]
    leaked = aws_client(server, "lambda", env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                        env["AWS_SESSION_TOKEN"])
    # Outside the sandbox the role's credentials do exactly what the role allows, nothing more.
    assert json.loads(leaked.invoke(FunctionName=target, Payload=b"{}")["Payload"].read()) == {"target saw": {}}
    with pytest.raises(ClientError) as denied:
        leaked.delete_function(FunctionName=target)
    assert error_of(denied)[:2] == ("AccessDeniedException", 403)
    lam.delete_function(FunctionName=caller)
    with pytest.raises(ClientError) as revoked:
        leaked.invoke(FunctionName=target, Payload=b"{}")
    assert error_of(revoked)[:2] == ("UnrecognizedClientException", 403)
    assert lam.get_function(FunctionName=target)["Configuration"]["FunctionName"] == target


def test_each_environment_has_its_own_credentials(lam: Any, functions: Functions) -> None:
    one = f"target-{uuid.uuid4().hex[:8]}"
    two = f"target-{uuid.uuid4().hex[:8]}"
    for name in (one, two):
        functions.create(name, code=make_zip({"index.py": CALLER}), Timeout=30)
    first = _call(lam, one, one)["env"]
    second = _call(lam, two, two)["env"]
    assert first["AWS_ACCESS_KEY_ID"] != second["AWS_ACCESS_KEY_ID"]
    assert first["AWS_ENDPOINT_URL"] == second["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9002"
    assert _call(lam, one, one)["env"] == first  # a warm environment keeps its credentials


def test_role_that_lambda_cannot_assume_is_refused(lam: Any, fn_name: str, server: Server) -> None:
    iam = aws_client(server, "iam")
    name = f"not-lambda-{uuid.uuid4().hex[:8]}"
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust_policy({"Service": "ec2.amazonaws.com"}))
    try:
        for role in (f"arn:aws:iam::{ACCOUNT}:role/{name}", f"arn:aws:iam::{ACCOUNT}:role/no-such-role"):
            with pytest.raises(ClientError) as refused:
                lam.create_function(FunctionName=fn_name, Runtime="python3.11", Role=role,
                                    Handler="index.handler", Code={"ZipFile": make_zip()})
            assert error_of(refused) == (
                "InvalidParameterValueException", 400,
                "The role defined for the function cannot be assumed by Lambda.",
            )
        with pytest.raises(ClientError):
            lam.get_function(FunctionName=fn_name)
    finally:
        iam.delete_role(RoleName=name)
    client_for(server)  # the admin's client still works after the refusals


PROBE = """
import os, urllib.request, urllib.error

def handler(event, context):
    out = {}
    for path in ("/_lamina/health", "/_lamina/metrics", "/_lamina/traces"):
        try:
            with urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL"] + path, timeout=5) as r:
                out[path] = r.status
        except urllib.error.HTTPError as exc:
            out[path] = exc.code
    return out
"""


def test_platform_routes_are_not_reachable_through_the_relay(lam: Any, functions: Functions, server: Server) -> None:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    functions.create(name, code=make_zip({"index.py": PROBE}), Timeout=30)
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(out["Payload"].read()) == {
        "/_lamina/health": 200, "/_lamina/metrics": 403, "/_lamina/traces": 403,
    }
    with urllib.request.urlopen(server.endpoint + "/_lamina/metrics", timeout=5) as direct:
        assert direct.status == 200  # the host's scraper still reads them


def test_no_new_environment_for_a_role_lambda_can_no_longer_assume(
        lam: Any, functions: Functions, server: Server) -> None:
    iam = aws_client(server, "iam")
    name = f"fickle-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust_policy(
        {"Service": "lambda.amazonaws.com"}))["Role"]["Arn"]
    fn = f"fickle-fn-{uuid.uuid4().hex[:8]}"
    try:
        functions.create(fn, code=make_zip({"index.py": TARGET}), Role=role)
        assert lam.invoke(FunctionName=fn, Payload=b"{}")["StatusCode"] == 200
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust_policy({"Service": "ec2.amazonaws.com"}))
        lam.update_function_configuration(FunctionName=fn, Description="retire the warm environment")
        lam.get_waiter("function_updated_v2").wait(FunctionName=fn, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        with pytest.raises(ClientError) as refused:
            lam.invoke(FunctionName=fn, Payload=b"{}")
        assert error_of(refused) == (
            "InvalidParameterValueException", 400, "The role defined for the function cannot be assumed by Lambda.")
    finally:
        lam.delete_function(FunctionName=fn)
        iam.delete_role(RoleName=name)
