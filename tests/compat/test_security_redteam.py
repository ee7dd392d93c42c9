"""Red team (SECURITY.md class G): a low-privilege principal tries to get more than its policies
allow, against a real server, with boto3 and hand-signed HTTP.

Every test asserts the SAFE outcome: an AWS-style refusal and nothing changed. Four attempts
succeeded when this file was written and were closed since (destinations invoked without the
execution role's permission, Attach/DetachUserPolicy authorized on the policy, forwarded-for
headers trusted from loopback, platform routes open to functions on an IPv6 server); their
tests stay here as regressions.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from test_compat_support import (
    ACCOUNT,
    LAMINA,
    REGION,
    ROLE,
    RUNTIME,
    Functions,
    Server,
    allow_policy,
    aws_client,
    client_for,
    function_arn,
    make_zip,
    trust_policy,
    unique_name,
)

INVOKE = "lambda:InvokeFunction"
OWN_USER = f"arn:aws:iam::{ACCOUNT}:user/${{aws:username}}"
ADMIN_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"
VICTIM_CODE = "def handler(event, context):\n    print('VICTIM-RAN')\n    return 'victim'\n"


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _st(
    effect: str, action: str | list[str], resource: str | list[str] = "*", **extra: Any
) -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource, **extra}


def refused(call: Any, **params: Any) -> tuple[str, int]:
    """(code, status) of a call that must fail; a success fails the test with what it returned."""
    try:
        result = call(**params)
    except ClientError as exc:
        return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]
    pytest.fail(f"{getattr(call, '__name__', call)}({params}) succeeded: {result}")


@dataclass(frozen=True)
class Principal:
    name: str
    arn: str
    key: str
    secret: str
    token: str | None = None

    def client(self, server: Server, service: str, *, validate: bool = True) -> Any:
        return aws_client(server, service, self.key, self.secret, self.token, validate=validate)


class Users:
    """IAM users made with the admin key; keys, inline and attached policies and the users
    are removed at teardown."""

    def __init__(self, server: Server, iam: Any) -> None:
        self.server = server
        self.iam = iam
        self.names: list[str] = []

    def create(self, *documents: str) -> Principal:
        name = unique_name("rt")
        arn = self.iam.create_user(UserName=name)["User"]["Arn"]
        self.names.append(name)
        for index, document in enumerate(documents):
            self.iam.put_user_policy(UserName=name, PolicyName=f"p{index}", PolicyDocument=document)
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        return Principal(name, arn, key["AccessKeyId"], key["SecretAccessKey"])

    def cleanup(self) -> None:
        for name in self.names:
            try:
                for key in self.iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
                    self.iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
                for policy in self.iam.list_user_policies(UserName=name)["PolicyNames"]:
                    self.iam.delete_user_policy(UserName=name, PolicyName=policy)
                for attached in self.iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]:
                    self.iam.detach_user_policy(UserName=name, PolicyArn=attached["PolicyArn"])
                self.iam.delete_user(UserName=name)
            except ClientError:
                pass


@pytest.fixture(scope="module")
def iam(server: Server) -> Any:
    return aws_client(server, "iam")


@pytest.fixture(scope="module")
def admin_logs(server: Server) -> Any:
    return aws_client(server, "logs")


@pytest.fixture
def users(server: Server, iam: Any) -> Iterator[Users]:
    helper = Users(server, iam)
    yield helper
    helper.cleanup()


@pytest.fixture
def roles(iam: Any) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        try:
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
            iam.delete_role(RoleName=name)
        except ClientError:
            pass


@pytest.fixture
def policies(iam: Any) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for arn in made:
        try:
            for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
                if not version["IsDefaultVersion"]:
                    iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
            iam.delete_policy(PolicyArn=arn)
        except ClientError:
            pass


def _role(iam: Any, roles: list[str], trust: str, policy: str | None = None) -> str:
    name = unique_name("rtrole")
    arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    roles.append(name)
    if policy is not None:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=policy)
    return arn


def _own_functions(name: str) -> str:
    """Everything Lambda on one function (and its versions/aliases), and passing lambda-role."""
    return _doc(
        _st("Allow", "lambda:*", [function_arn(name), function_arn(name) + ":*"]),
        _st("Allow", "iam:PassRole", ROLE),
    )


def _victim_ran(admin_logs: Any, victim: str, wait_s: float) -> bool:
    """Whether the victim function printed its marker within ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            events = admin_logs.filter_log_events(logGroupName=f"/aws/lambda/{victim}")["events"]
        except ClientError:
            events = []
        if any("VICTIM-RAN" in e["message"] for e in events):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)


# -- raw HTTP ---------------------------------------------------------------------------------


def _send(
    server: Server, method: str, target: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _signed(
    server: Server,
    who: Principal,
    method: str,
    path: str,
    *,
    service: str = "lambda",
    region: str = REGION,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> tuple[str, dict[str, str]]:
    """(target, headers) of a request signed by ``who`` with botocore's SigV4Auth."""
    url = server.endpoint + path + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    botocore.auth.SigV4Auth(Credentials(who.key, who.secret, who.token), service, region).add_auth(request)
    prepared = request.prepare()
    target = path + (f"?{query}" if query else "")
    return target, {k: v for k, v in prepared.headers.items()}


def _raw(server: Server, who: Principal, method: str, path: str, **kw: Any) -> tuple[int, bytes]:
    body = kw.get("body", b"")
    target, headers = _signed(server, who, method, path, **kw)
    return _send(server, method, target, headers, body)


# -- Lambda: names, ARNs, qualifiers ------------------------------------------------------------


def test_function_name_forms_do_not_escape_the_policy(
    server: Server, lam: Any, functions: Functions, users: Users, admin_logs: Any
) -> None:
    victim, mine = unique_name("victim"), unique_name("mine")
    functions.create(victim, code=make_zip({"index.py": VICTIM_CODE}))
    functions.create(mine)
    lam.publish_version(FunctionName=victim)
    user = users.create(_own_functions(mine))
    ul = user.client(server, "lambda", validate=False)
    forms: list[tuple[str, str | None]] = [
        (victim, None),
        (f"{ACCOUNT}:function:{victim}", None),
        (f"{ACCOUNT}:function:{victim}:1", None),
        (function_arn(victim, "1"), None),
        (function_arn(victim), "1"),
        (function_arn(victim, "$LATEST"), None),
        (victim, "$LATEST"),
        (function_arn(victim, account="111111111111"), None),
        (function_arn(victim, region="eu-west-1"), None),
        (victim.upper(), None),
        (f"{mine}:{victim}", None),
        (function_arn(mine), "1"),  # own name, a qualifier that does not exist
        (function_arn(victim, "1"), "$LATEST"),  # ARN qualifier vs Qualifier
    ]
    for name, qualifier in forms:
        params: dict[str, Any] = {"FunctionName": name}
        if qualifier is not None:
            params["Qualifier"] = qualifier
        code, status = refused(ul.invoke, **params)
        assert (code, status) in {
            ("AccessDeniedException", 403),
            ("ResourceNotFoundException", 404),
            ("InvalidParameterValueException", 400),
        }, (name, qualifier, code)
        assert refused(ul.get_function, **params)[1] in (400, 403, 404)
    assert refused(ul.invoke_async, FunctionName=victim, InvokeArgs=b"{}") == ("AccessDeniedException", 403)
    assert not _victim_ran(admin_logs, victim, 0.5)


def test_raw_path_variants_are_authorized_like_the_plain_path(
    server: Server, functions: Functions, users: Users
) -> None:
    victim = unique_name("victim")
    functions.create(victim)
    user = users.create(allow_policy("lambda:ListFunctions"))
    base = "/2015-03-31/functions"
    for path in (
        f"{base}/{victim}",
        f"{base}/%{ord(victim[0]):02x}{victim[1:]}",  # a percent-encoded name
        f"{base}/{victim}/",
        f"/{base}/{victim}",
        f"{base}/x/../{victim}",
        f"{base}/{urllib.parse.quote(function_arn(victim), safe='')}",
    ):
        status, body = _raw(server, user, "GET", path)
        assert status in (403, 404), (path, status, body)
        assert victim.encode() not in body or b"not authorized" in body, (path, body)
    status, _ = _raw(server, user, "HEAD", f"{base}/{victim}")
    assert status in (403, 404)


def test_signing_for_another_service_or_region_reaches_no_lambda_handler(
    server: Server, functions: Functions, users: Users, lam: Any
) -> None:
    victim = unique_name("victim")
    functions.create(victim)
    user = users.create(allow_policy("lambda:ListFunctions"))
    path = f"/2015-03-31/functions/{victim}"
    for service in ("iam", "sts", "logs", "s3", "execute-api"):
        status, body = _raw(server, user, "GET", path, service=service)
        assert status in (400, 403, 404), (service, body)
        assert b"FunctionArn" not in body
        status, _ = _raw(server, user, "DELETE", path, service=service)
        assert status in (400, 403, 404)
    status, _ = _raw(server, user, "DELETE", path, region="eu-west-1")
    assert status == 403
    assert lam.get_function(FunctionName=victim)["Configuration"]["FunctionName"] == victim


def test_tag_resource_needs_the_right_on_the_named_function(
    server: Server, lam: Any, functions: Functions, users: Users
) -> None:
    victim, mine = unique_name("victim"), unique_name("mine")
    functions.create(victim)
    functions.create(mine)
    user = users.create(_own_functions(mine))
    ul = user.client(server, "lambda", validate=False)
    for resource in (
        function_arn(victim),
        function_arn(victim, account="111111111111"),
        function_arn(victim, region="eu-west-1"),
        f"{ACCOUNT}:function:{victim}",
        f"{function_arn(mine)}/../{victim}",
        function_arn(victim, "$LATEST"),
    ):
        assert refused(ul.tag_resource, Resource=resource, Tags={"owned": "yes"})[1] in (400, 403, 404)
        assert refused(ul.untag_resource, Resource=resource, TagKeys=["keep"])[1] in (400, 403, 404)
    assert lam.list_tags(Resource=function_arn(victim))["Tags"] == {}


def test_add_permission_on_own_function_grants_nothing_on_another(
    server: Server, lam: Any, functions: Functions, users: Users
) -> None:
    victim, mine = unique_name("victim"), unique_name("mine")
    functions.create(victim)
    functions.create(mine)
    user = users.create(_own_functions(mine))
    ul = user.client(server, "lambda")
    assert refused(
        ul.add_permission, FunctionName=victim, StatementId="me", Action=INVOKE, Principal=user.arn
    ) == ("AccessDeniedException", 403)
    assert refused(
        ul.add_permission,
        FunctionName=function_arn(victim),
        StatementId="me",
        Action="lambda:*",
        Principal="*",
    ) == ("AccessDeniedException", 403)
    ul.add_permission(FunctionName=mine, StatementId="me", Action="lambda:*", Principal=user.arn)
    assert refused(ul.invoke, FunctionName=victim) == ("AccessDeniedException", 403)
    assert refused(ul.get_policy, FunctionName=victim) == ("AccessDeniedException", 403)
    assert refused(ul.remove_permission, FunctionName=victim, StatementId="any") == (
        "AccessDeniedException",
        403,
    )
    assert refused(lam.get_policy, FunctionName=victim)[0] == "ResourceNotFoundException"


def test_unimplemented_operations_do_nothing(server: Server, users: Users) -> None:
    user = users.create()
    ul = user.client(server, "lambda")
    assert refused(ul.list_event_source_mappings)[1] in (403, 501)
    assert refused(ul.get_function_url_config, FunctionName="anything")[1] in (403, 404, 501)


@pytest.mark.parametrize("route", ["on-success", "dead-letter"])
def test_destinations_do_not_invoke_a_function_nobody_allowed(
    server: Server, lam: Any, functions: Functions, users: Users, admin_logs: Any, route: str
) -> None:
    victim, mine = unique_name("victim"), unique_name("mine")
    functions.create(victim, code=make_zip({"index.py": VICTIM_CODE}))
    user = users.create(_own_functions(mine))
    ul = user.client(server, "lambda")
    failing = "def handler(event, context):\n    raise RuntimeError('boom')\n"
    ul.create_function(
        FunctionName=mine,
        Runtime=RUNTIME,
        Role=ROLE,
        Handler="index.handler",
        Code={"ZipFile": make_zip({"index.py": failing}) if route == "dead-letter" else make_zip()},
    )
    functions.created.append(mine)
    lam.get_waiter("function_active_v2").wait(FunctionName=mine, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    try:
        if route == "on-success":
            ul.put_function_event_invoke_config(
                FunctionName=mine, DestinationConfig={"OnSuccess": {"Destination": function_arn(victim)}}
            )
        else:
            ul.put_function_event_invoke_config(FunctionName=mine, MaximumRetryAttempts=0)
            ul.update_function_configuration(
                FunctionName=mine, DeadLetterConfig={"TargetArn": function_arn(victim)}
            )
            lam.get_waiter("function_updated_v2").wait(
                FunctionName=mine, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
            )
    except ClientError as exc:  # refusing the configuration is a safe outcome too
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403)
        return
    ul.invoke(FunctionName=mine, InvocationType="Event", Payload=b'{"from": "attacker"}')
    assert not _victim_ran(admin_logs, victim, 4.0)


# -- CloudWatch Logs ----------------------------------------------------------------------------


def test_logs_of_another_function_stay_closed(server: Server, functions: Functions, users: Users) -> None:
    victim, mine = unique_name("victim"), unique_name("mine")
    functions.create(victim)
    mine_group = f"/aws/lambda/{mine}"
    user = users.create(
        _doc(_st("Allow", "logs:*", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{mine_group}:*"))
    )
    logs = user.client(server, "logs", validate=False)
    group = f"/aws/lambda/{victim}"
    group_arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
    attempts: list[tuple[Any, dict[str, Any]]] = [
        (logs.filter_log_events, {"logGroupName": group}),
        (logs.filter_log_events, {"logGroupIdentifier": group}),
        (logs.filter_log_events, {"logGroupIdentifier": group_arn}),
        (logs.filter_log_events, {"logGroupName": mine_group, "logGroupIdentifier": group}),
        (logs.filter_log_events, {"logGroupName": f"{mine_group}:*:log-group:{group}"}),
        (logs.describe_log_streams, {"logGroupName": mine_group, "logGroupIdentifier": group}),
        (logs.get_log_events, {"logGroupName": group, "logStreamName": "x"}),
        (logs.get_log_events, {"logGroupIdentifier": group_arn, "logStreamName": "x"}),
        (logs.describe_log_groups, {}),
        (logs.delete_log_group, {"logGroupName": group}),
        (logs.put_retention_policy, {"logGroupName": group, "retentionInDays": 1}),
    ]
    for call, params in attempts:
        code, status = refused(call, **params)
        assert status == 400 and code in (
            "AccessDeniedException",
            "InvalidParameterException",
            "ValidationException",
        ), (call, params, code)


# -- the platform's own routes ------------------------------------------------------------------


def test_platform_routes_refuse_a_users_own_signature(
    server: Server, lam: Any, functions: Functions, users: Users
) -> None:
    victim, mine = unique_name("victim"), unique_name("mine")
    functions.create(victim)
    functions.create(mine)
    user = users.create(allow_policy("lambda:*"))
    for path in (
        f"/_lamina/history/{victim}",
        "/_lamina/traces",
        f"/_lamina/code/{victim}/$LATEST",
        f"/_lamina/code/{victim}/%24LATEST",
        "/_lamina/layer/x/1",
    ):
        status, _ = _raw(server, user, "GET", path)
        assert status == 403, path
    # Own-key presigned code URL.
    request = AWSRequest(method="GET", url=f"{server.endpoint}/_lamina/code/{victim}/%24LATEST")
    botocore.auth.SigV4QueryAuth(Credentials(user.key, user.secret), "lambda", REGION, expires=60).add_auth(
        request
    )
    assert _http_status(request.url) == 403
    # A real presigned URL for one function, re-pointed at another.
    location: str = lam.get_function(FunctionName=mine)["Code"]["Location"]
    assert _http_status(location.replace(mine, victim)) == 403
    for method in ("HEAD", "POST", "PUT", "DELETE"):
        assert _http_status(location, method) in (403, 404, 405), method


def _http_status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


# -- IAM: self-escalation -----------------------------------------------------------------------


def test_iam_self_escalation_is_refused(
    server: Server, iam: Any, users: Users, roles: list[str], policies: list[str]
) -> None:
    other = users.create()
    own_keys = _doc(_st("Allow", ["iam:*AccessKey*", "iam:GetUser"], OWN_USER))
    user = users.create(own_keys)
    ui = user.client(server, "iam")
    assert refused(
        ui.put_user_policy, UserName=user.name, PolicyName="all", PolicyDocument=allow_policy("*")
    ) == (
        "AccessDenied",
        403,
    )
    assert (
        refused(
            ui.put_user_policy, UserName=user.name.upper(), PolicyName="all", PolicyDocument=allow_policy("*")
        )[1]
        == 403
    )
    assert refused(ui.create_access_key, UserName=other.name) == ("AccessDenied", 403)
    assert refused(ui.create_access_key, UserName=other.name.upper()) == ("AccessDenied", 403)
    # Own-keys rights never reach another user's key or the admin's by naming only the key id.
    for key_id in (other.key, server.credentials()[0]):
        assert refused(ui.update_access_key, AccessKeyId=key_id, Status="Inactive")[1] in (403, 404)
        assert refused(ui.delete_access_key, AccessKeyId=key_id)[1] in (403, 404)
    assert iam.list_access_keys(UserName=other.name)["AccessKeyMetadata"][0]["Status"] == "Active"
    assert refused(ui.attach_user_policy, UserName=user.name, PolicyArn=ADMIN_POLICY) == ("AccessDenied", 403)
    assert refused(ui.create_user, UserName=unique_name("evil")) == ("AccessDenied", 403)

    target = _role(iam, roles, trust_policy({"AWS": other.arn}), allow_policy("*"))
    target_name = target.rsplit("/", 1)[-1]
    assert (
        refused(
            ui.update_assume_role_policy, RoleName=target_name, PolicyDocument=trust_policy({"AWS": user.arn})
        )[1]
        == 403
    )
    assert (
        refused(ui.put_role_policy, RoleName=target_name, PolicyName="x", PolicyDocument=allow_policy("*"))[1]
        == 403
    )
    assert refused(ui.attach_role_policy, RoleName=target_name, PolicyArn=ADMIN_POLICY)[1] == 403

    mine = iam.create_policy(
        PolicyName=unique_name("rtpol"), PolicyDocument=allow_policy("lambda:GetAccountSettings")
    )
    policy_arn = mine["Policy"]["Arn"]
    policies.append(policy_arn)
    iam.attach_user_policy(UserName=user.name, PolicyArn=policy_arn)
    assert refused(
        ui.create_policy_version, PolicyArn=policy_arn, PolicyDocument=allow_policy("*"), SetAsDefault=True
    ) == ("AccessDenied", 403)
    assert refused(ui.set_default_policy_version, PolicyArn=policy_arn, VersionId="v1") == (
        "AccessDenied",
        403,
    )
    assert refused(ui.create_policy, PolicyName="escalate", PolicyDocument=allow_policy("*")) == (
        "AccessDenied",
        403,
    )
    assert [v["VersionId"] for v in iam.list_policy_versions(PolicyArn=policy_arn)["Versions"]] == ["v1"]
    assert iam.list_user_policies(UserName=user.name)["PolicyNames"] == ["p0"]
    assert [
        p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=user.name)["AttachedPolicies"]
    ] == [policy_arn]


def test_query_protocol_method_and_path_variants_are_enforced(server: Server, iam: Any, users: Users) -> None:
    user = users.create(allow_policy("lambda:ListFunctions"))
    evil = unique_name("evil")
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    attempts = [
        ("POST", "/", b"Action=CreateUser&Version=2010-05-08&UserName=" + evil.encode(), ""),
        (
            "POST",
            "/2015-03-31/functions",
            b"Action=CreateUser&Version=2010-05-08&UserName=" + evil.encode(),
            "",
        ),
        ("GET", "/", b"", f"Action=CreateUser&Version=2010-05-08&UserName={evil}"),
        ("PUT", "/", b"", f"Action=CreateUser&Version=2010-05-08&UserName={evil}"),
    ]
    for method, path, body, query in attempts:
        status, text = _raw(server, user, method, path, service="iam", body=body, headers=form, query=query)
        assert status in (400, 403), (method, path, text)
    assert refused(iam.get_user, UserName=evil)[0] == "NoSuchEntity"


@pytest.mark.parametrize("grant", ["deny-on-own-user", "allow-on-policy-arns"])
def test_attach_user_policy_is_authorized_on_the_user(
    server: Server, iam: Any, users: Users, grant: str
) -> None:
    if grant == "deny-on-own-user":
        document = _doc(_st("Allow", "iam:AttachUserPolicy", "*"), _st("Deny", "iam:*", OWN_USER))
    else:
        document = _doc(_st("Allow", "iam:AttachUserPolicy", "arn:aws:iam::aws:policy/*"))
    user = users.create(document)
    ui = user.client(server, "iam")
    outcome: tuple[str, int] | None = None
    try:
        ui.attach_user_policy(UserName=user.name, PolicyArn=ADMIN_POLICY)
    except ClientError as exc:
        outcome = (exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"])
    attached = iam.list_attached_user_policies(UserName=user.name)["AttachedPolicies"]
    assert attached == [] and outcome == ("AccessDenied", 403), (outcome, attached)


# -- STS ---------------------------------------------------------------------------------------


def test_assume_role_and_session_tokens_cannot_be_stretched(
    server: Server, iam: Any, users: Users, roles: list[str]
) -> None:
    bystander = users.create()
    user = users.create(allow_policy("sts:AssumeRole"))  # identity allows every role...
    sts = user.client(server, "sts", validate=False)
    powerful = _role(iam, roles, trust_policy({"AWS": bystander.arn}), allow_policy("*"))
    # ...but the trust policy of each of these does not name the user.
    for arn in (
        powerful,
        ROLE,
        powerful.replace(":role/", ":role/x/"),
        powerful.replace(powerful.rsplit("/", 1)[-1], powerful.rsplit("/", 1)[-1].upper()),
        powerful.replace(ACCOUNT, "111111111111"),
    ):
        assert refused(sts.assume_role, RoleArn=arn, RoleSessionName="rt") == ("AccessDenied", 403), arn
    # Chaining through a role that trusts the user to one that trusts somebody else.
    hop = _role(iam, roles, trust_policy({"AWS": user.arn}))
    creds = sts.assume_role(RoleArn=hop, RoleSessionName="hop")["Credentials"]
    session = Principal("hop", "", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert (
        refused(
            session.client(server, "sts", validate=False).assume_role, RoleArn=powerful, RoleSessionName="x1"
        )[0]
        == "AccessDenied"
    )
    si = session.client(server, "iam")
    hop_name = hop.rsplit("/", 1)[-1]
    assert (
        refused(si.put_role_policy, RoleName=hop_name, PolicyName="x", PolicyDocument=allow_policy("*"))[1]
        == 403
    )
    assert (
        refused(
            si.update_assume_role_policy,
            RoleName=powerful.rsplit("/", 1)[-1],
            PolicyDocument=trust_policy({"AWS": hop}),
        )[1]
        == 403
    )
    assert refused(si.create_access_key)[1] in (400, 403)
    assert refused(si.create_access_key, UserName=bystander.name)[1] == 403
    assert refused(sts.assume_role, RoleArn=hop, RoleSessionName="aa/bb")[0] == "ValidationError"
    # Tokens belong to one key: another session's, or any on a long-term key, are refused.
    other = sts.assume_role(RoleArn=hop, RoleSessionName="other")["Credentials"]
    mixed = Principal("m", "", other["AccessKeyId"], other["SecretAccessKey"], creds["SessionToken"])
    assert refused(mixed.client(server, "sts").get_caller_identity) == ("InvalidClientTokenId", 403)
    padded = Principal("p", "", user.key, user.secret, creds["SessionToken"])
    assert refused(padded.client(server, "sts").get_caller_identity) == ("InvalidClientTokenId", 403)
    # Deleting the role ends its sessions at once.
    assert session.client(server, "sts").get_caller_identity()["Arn"].endswith("/hop")
    iam.delete_role(RoleName=hop_name)
    roles.remove(hop_name)
    assert refused(session.client(server, "sts").get_caller_identity)[1] == 403


# -- decisions are not stuck in caches ----------------------------------------------------------


def test_conditional_allow_is_not_cached_past_its_condition(
    server: Server, functions: Functions, users: Users
) -> None:
    name = unique_name("cond")
    functions.create(name)
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    until = {"DateLessThan": {"aws:CurrentTime": soon.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    user = users.create(_doc(_st("Allow", "lambda:GetFunction", "*", Condition=until)))
    ul = user.client(server, "lambda")
    assert ul.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    time.sleep(max(0.0, (soon - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 1.1)
    assert refused(ul.get_function, FunctionName=name) == ("AccessDeniedException", 403)


def test_a_replayed_request_is_authorized_again(
    server: Server, iam: Any, functions: Functions, users: Users
) -> None:
    name = unique_name("replay")
    functions.create(name)
    user = users.create(allow_policy("lambda:GetFunction"))
    target, headers = _signed(server, user, "GET", f"/2015-03-31/functions/{name}")
    assert _send(server, "GET", target, headers)[0] == 200
    assert _send(server, "GET", target, headers)[0] == 200  # SigV4 has no nonce, as on AWS
    iam.put_user_policy(UserName=user.name, PolicyName="no", PolicyDocument=_doc(_st("Deny", "lambda:*")))
    assert _send(server, "GET", target, headers)[0] == 403
    iam.delete_user_policy(UserName=user.name, PolicyName="no")
    assert _send(server, "GET", target, headers)[0] == 200
    iam.update_access_key(UserName=user.name, AccessKeyId=user.key, Status="Inactive")
    assert _send(server, "GET", target, headers)[0] == 403


def test_resource_and_managed_policy_changes_apply_at_once(
    server: Server, lam: Any, iam: Any, functions: Functions, users: Users, policies: list[str]
) -> None:
    name = unique_name("cache")
    functions.create(name)
    user = users.create()
    ul = user.client(server, "lambda")
    lam.add_permission(FunctionName=name, StatementId="u", Action="lambda:GetFunction", Principal=user.arn)
    assert ul.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    lam.remove_permission(FunctionName=name, StatementId="u")
    assert refused(ul.get_function, FunctionName=name) == ("AccessDeniedException", 403)
    arn = iam.create_policy(
        PolicyName=unique_name("rtmp"), PolicyDocument=allow_policy("lambda:GetFunction")
    )["Policy"]["Arn"]
    policies.append(arn)
    iam.attach_user_policy(UserName=user.name, PolicyArn=arn)
    assert ul.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    iam.create_policy_version(
        PolicyArn=arn, PolicyDocument=allow_policy("lambda:ListFunctions"), SetAsDefault=True
    )
    assert refused(ul.get_function, FunctionName=name) == ("AccessDeniedException", 403)
    iam.set_default_policy_version(PolicyArn=arn, VersionId="v1")
    assert ul.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    iam.detach_user_policy(UserName=user.name, PolicyArn=arn)
    assert refused(ul.get_function, FunctionName=name) == ("AccessDeniedException", 403)


# -- network condition keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "header"),
    [
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"X-Forwarded-For": "10.1.2.3"}),
        ({"Bool": {"aws:SecureTransport": "true"}}, {"X-Forwarded-Proto": "https"}),
    ],
)
def test_forwarding_headers_do_not_change_network_condition_keys(
    server: Server, functions: Functions, users: Users, condition: dict[str, Any], header: dict[str, str]
) -> None:
    name = unique_name("net")
    functions.create(name)
    user = users.create(_doc(_st("Allow", "lambda:GetFunction", "*", Condition=condition)))
    assert _raw(server, user, "GET", f"/2015-03-31/functions/{name}")[0] == 403
    status, _ = _raw(server, user, "GET", f"/2015-03-31/functions/{name}", headers=header)
    assert status == 403


# -- from inside a function ---------------------------------------------------------------------

_INSIDE = r"""
import json, os, socket, urllib.error, urllib.request
import boto3
from botocore.config import Config

RELAY = "http://127.0.0.1:9002"


def get(url, headers=None, method="GET"):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}, method=method), timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return repr(e)[:80]


def raw(line, host):
    s = socket.create_connection(("127.0.0.1", 9002), timeout=3)
    try:
        s.sendall(line + b"\r\nHost: " + host + b"\r\n\r\n")
        return s.recv(64).decode("latin-1").split("\r\n")[0]
    finally:
        s.close()


def handler(event, context):
    out = {"creds": [os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_SESSION_TOKEN"]]}
    for path in ("/_lamina/metrics", "/_lamina//metrics", "/_lamina/%6detrics", "/_lamina/metrics?x=1",
                 "/_lamina/traces", "/_lamina/history/x"):
        out[path] = get(RELAY + path)
    out["metrics-xff"] = get(RELAY + "/_lamina/metrics", {"X-Forwarded-For": "127.0.0.1"})
    out["host-api"] = get("http://127.0.0.1:%d/_lamina/health" % event["port"])
    out["connect"] = raw(b"CONNECT 127.0.0.1:22 HTTP/1.1", b"127.0.0.1:22")
    out["absolute"] = raw(b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1", b"169.254.169.254")
    cfg = Config(retries={"total_max_attempts": 1}, connect_timeout=3, read_timeout=10)

    def attempt(label, call):
        try:
            call()
            out[label] = "ALLOWED"
        except Exception as e:
            out[label] = getattr(e, "response", {}).get("Error", {}).get("Code") or repr(e)[:80]

    lam, iam = boto3.client("lambda", config=cfg), boto3.client("iam", config=cfg)
    admin_doc = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    attempt("list_functions", lambda: lam.list_functions())
    attempt("invoke_victim", lambda: lam.invoke(FunctionName=event["victim"]))
    attempt("create_user", lambda: iam.create_user(UserName="evil-from-function"))
    attempt("put_role_policy", lambda: iam.put_role_policy(RoleName="lambda-role", PolicyName="x", PolicyDocument=admin_doc))
    attempt("victim_logs", lambda: boto3.client("logs", config=cfg).filter_log_events(logGroupName="/aws/lambda/" + event["victim"]))
    attempt("assume_role", lambda: boto3.client("sts", config=cfg).assume_role(RoleArn=event["role"], RoleSessionName="again"))
    return out
"""


def test_a_function_gets_only_its_role_through_the_relay(
    server: Server, lam: Any, iam: Any, functions: Functions
) -> None:
    victim, inside = unique_name("victim"), unique_name("inside")
    functions.create(victim)
    functions.create(inside, code=make_zip({"index.py": _INSIDE}), Timeout=30)
    port = urllib.parse.urlsplit(server.endpoint).port
    response = lam.invoke(
        FunctionName=inside, Payload=json.dumps({"port": port, "victim": victim, "role": ROLE}).encode()
    )
    out = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, out
    for path in (
        "/_lamina/metrics",
        "/_lamina//metrics",
        "/_lamina/%6detrics",
        "/_lamina/metrics?x=1",
        "/_lamina/traces",
        "/_lamina/history/x",
        "metrics-xff",
    ):
        assert out[path] == 403, (path, out[path])
    assert "Connection refused" in str(out["host-api"]) or "timed out" in str(out["host-api"]), out[
        "host-api"
    ]
    assert " 200 " not in out["connect"] and " 200 " not in out["absolute"], out
    assert out["list_functions"] == "AccessDeniedException"
    assert out["invoke_victim"] == "AccessDeniedException"
    assert out["create_user"] == "AccessDenied"
    assert out["put_role_policy"] == "AccessDenied"
    assert out["victim_logs"] == "AccessDeniedException"
    assert out["assume_role"] == "AccessDenied"
    assert iam.list_role_policies(RoleName="lambda-role")["PolicyNames"] == ["lamina-basic-execution"]
    # The leaked credentials work outside, as on AWS, but only until the function is gone.
    key, secret, token = out["creds"]
    leaked = aws_client(server, "sts", key, secret, token)
    assert leaked.get_caller_identity()["Arn"].endswith(f":assumed-role/lambda-role/{inside}")
    lam.delete_function(FunctionName=inside)
    functions.created.remove(inside)
    assert refused(leaked.get_caller_identity)[1] == 403


def _free_port(family: int, host: str) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(endpoint: str) -> bool:
    try:
        return _http_status(f"{endpoint}/_lamina/health") == 200
    except (urllib.error.URLError, OSError):
        return False


_METRICS_FROM_INSIDE = r"""
import urllib.error, urllib.request


def handler(event, context):
    try:
        with urllib.request.urlopen("http://127.0.0.1:9002/_lamina/metrics", timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
"""


def test_platform_routes_stay_closed_to_functions_on_an_ipv6_server(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 loopback")
    port = _free_port(socket.AF_INET6, "::1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAMINA_"))}
    log_path = tmp_path / "server.log"
    data = tmp_path / "data"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(LAMINA), "server", "--data-dir", str(data), "--host", "::1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = Server(f"http://[::1]:{port}", data, log_path, process)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(server.endpoint):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text(
                errors="replace"
            )
            time.sleep(0.1)
        lam = client_for(server)
        helper = Functions(lam)
        name = unique_name("v6")
        helper.create(name, code=make_zip({"index.py": _METRICS_FROM_INSIDE}), Timeout=10)
        assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == 403
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
