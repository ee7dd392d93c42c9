"""Who may do what (SECURITY.md class G): IAM users, role sessions and resource policies, driven
through the real boto3 against a real server.

Each test makes its own IAM users with the admin key, gives them inline policies and acts with
their own access keys. Expectations are AWS's: ``AccessDeniedException`` from Lambda (403) and
CloudWatch Logs (400, as every JSON 1.1 client error), 403 ``AccessDenied`` from IAM, AWS's
message texts, and a refused call leaves nothing changed.
"""

from __future__ import annotations

import datetime
import http.client
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from test_compat_support import (
    ACCOUNT,
    REGION,
    ROLE,
    RUNTIME,
    Functions,
    Server,
    aws_client,
    client_for,
    error_of,
    function_arn,
    make_zip,
    trust_policy,
    unique_name,
)

INVOKE = "lambda:InvokeFunction"
ALL_FUNCTIONS = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:*"
NOT_ASSUMABLE = "The role defined for the function cannot be assumed by Lambda."
LAMBDA_TRUST = trust_policy({"Service": "lambda.amazonaws.com"})
ACCOUNT_TRUST = trust_policy({"AWS": f"arn:aws:iam::{ACCOUNT}:root"})


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str | list[str], resource: str | list[str] = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def deny(action: str | list[str], resource: str | list[str] = "*") -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


def implicit(principal: str, action: str, resource: str) -> str:
    return (
        f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )


def explicit(principal: str, action: str, resource: str) -> str:
    return (
        f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
        "with an explicit deny in an identity-based policy"
    )


def denied(call: Any, **params: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as exc:
        call(**params)
    return error_of(exc)


@dataclass(frozen=True)
class User:
    name: str
    arn: str
    key: str
    secret: str
    lam: Any

    def client(self, server: Server, service: str) -> Any:
        return aws_client(server, service, self.key, self.secret)


class Users:
    """IAM users made with the admin key; deleted (keys and policies first) at teardown."""

    def __init__(self, server: Server, iam: Any) -> None:
        self.server = server
        self.iam = iam
        self.names: list[str] = []

    def create(self, *policies: dict[str, Any], hint: str = "user") -> User:
        name = unique_name(hint)
        arn = self.iam.create_user(UserName=name)["User"]["Arn"]
        self.names.append(name)
        for index, doc in enumerate(policies):
            self.iam.put_user_policy(UserName=name, PolicyName=f"p{index}", PolicyDocument=json.dumps(doc))
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        lam = client_for(self.server, access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"])
        return User(name, arn, key["AccessKeyId"], key["SecretAccessKey"], lam)

    def cleanup(self) -> None:
        for name in self.names:
            try:
                for key in self.iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
                    self.iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
                for policy in self.iam.list_user_policies(UserName=name)["PolicyNames"]:
                    self.iam.delete_user_policy(UserName=name, PolicyName=policy)
                self.iam.delete_user(UserName=name)
            except ClientError:
                pass


@pytest.fixture(scope="module")
def iam(server: Server) -> Any:
    return aws_client(server, "iam")


@pytest.fixture
def users(server: Server, iam: Any) -> Iterator[Users]:
    helper = Users(server, iam)
    yield helper
    helper.cleanup()


@pytest.fixture
def roles(iam: Any) -> Iterator[list[str]]:
    """Names of roles a test made; their inline policies and the roles are deleted at teardown."""
    made: list[str] = []
    yield made
    for name in made:
        try:
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
            iam.delete_role(RoleName=name)
        except ClientError:
            pass


def _invoke(lam: Any, name: str, **params: Any) -> dict[str, Any]:
    response = lam.invoke(FunctionName=name, Payload=b'{"k": 1}', **params)
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    result: dict[str, Any] = json.loads(response["Payload"].read())
    return result


def _versioned(lam: Any, functions: Functions, name: str) -> None:
    """The function with version 1 and alias ``live`` → 1."""
    functions.create(name)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")


# -- identity-based policies -------------------------------------------------------------------


def test_no_policy_is_an_implicit_deny_with_aws_text(
    lam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    functions.create(fn_name)
    user = users.create()
    assert denied(user.lam.invoke, FunctionName=fn_name) == (
        "AccessDeniedException",
        403,
        implicit(user.arn, INVOKE, function_arn(fn_name)),
    )
    assert denied(user.lam.get_function, FunctionName=fn_name) == (
        "AccessDeniedException",
        403,
        implicit(user.arn, "lambda:GetFunction", function_arn(fn_name)),
    )
    assert denied(user.lam.list_functions) == (
        "AccessDeniedException",
        403,
        implicit(user.arn, "lambda:ListFunctions", "*"),
    )
    ghost = unique_name("ghost")  # refused before lookup: a denial does not reveal existence
    assert denied(user.lam.get_function, FunctionName=ghost) == (
        "AccessDeniedException",
        403,
        implicit(user.arn, "lambda:GetFunction", function_arn(ghost)),
    )


def test_function_arn_grants_the_function_and_not_its_versions_or_aliases(
    lam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    _versioned(lam, functions, fn_name)
    user = users.create(_policy(allow(INVOKE, function_arn(fn_name))))
    assert _invoke(user.lam, fn_name)["ok"] is True
    for qualifier in ("1", "live"):
        assert denied(user.lam.invoke, FunctionName=fn_name, Qualifier=qualifier) == (
            "AccessDeniedException",
            403,
            implicit(user.arn, INVOKE, function_arn(fn_name, qualifier)),
        )
    assert denied(user.lam.invoke, FunctionName=function_arn(fn_name, "live"))[:2] == (
        "AccessDeniedException",
        403,
    )


def test_qualified_pattern_grants_versions_and_aliases_but_not_the_function(
    lam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    _versioned(lam, functions, fn_name)
    user = users.create(_policy(allow(INVOKE, function_arn(fn_name) + ":*")))
    assert _invoke(user.lam, fn_name, Qualifier="1")["ok"] is True
    assert _invoke(user.lam, function_arn(fn_name, "live"))["ok"] is True
    assert denied(user.lam.invoke, FunctionName=fn_name) == (
        "AccessDeniedException",
        403,
        implicit(user.arn, INVOKE, function_arn(fn_name)),
    )


def test_action_wildcards(lam: Any, functions: Functions, users: Users, fn_name: str) -> None:
    functions.create(fn_name, Description="before")
    getter = users.create(_policy(allow("lambda:Get*", function_arn(fn_name))))
    assert getter.lam.get_function(FunctionName=fn_name)["Configuration"]["FunctionName"] == fn_name
    assert getter.lam.get_function_configuration(FunctionName=fn_name)["Description"] == "before"
    assert denied(getter.lam.invoke, FunctionName=fn_name)[2] == implicit(
        getter.arn, INVOKE, function_arn(fn_name)
    )
    assert denied(getter.lam.update_function_configuration, FunctionName=fn_name, Description="after")[
        :2
    ] == ("AccessDeniedException", 403)
    assert lam.get_function_configuration(FunctionName=fn_name)["Description"] == "before"

    owner = users.create(_policy(allow("lambda:*", function_arn(fn_name))))
    assert _invoke(owner.lam, fn_name)["ok"] is True
    owner.lam.update_function_configuration(FunctionName=fn_name, Description="by owner")
    assert lam.get_function_configuration(FunctionName=fn_name)["Description"] == "by owner"
    # ListFunctions has no resource-level permission: only Resource "*" grants it.
    assert denied(owner.lam.list_functions)[2] == implicit(owner.arn, "lambda:ListFunctions", "*")


def test_not_action_allows_everything_else(
    lam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    functions.create(fn_name)
    user = users.create(
        _policy({"Effect": "Allow", "NotAction": ["lambda:DeleteFunction", INVOKE], "Resource": "*"})
    )
    assert user.lam.get_function(FunctionName=fn_name)["Configuration"]["FunctionName"] == fn_name
    assert isinstance(user.lam.list_functions()["Functions"], list)
    assert denied(user.lam.delete_function, FunctionName=fn_name) == (
        "AccessDeniedException",
        403,
        implicit(user.arn, "lambda:DeleteFunction", function_arn(fn_name)),
    )
    assert denied(user.lam.invoke, FunctionName=fn_name)[:2] == ("AccessDeniedException", 403)
    assert lam.get_function(FunctionName=fn_name)["Configuration"]["FunctionName"] == fn_name


def test_resource_wildcards(lam: Any, functions: Functions, users: Users, fn_name: str) -> None:
    prefix = fn_name[:40]
    inside, outside = f"{prefix}-in", unique_name("other")
    functions.create(inside, wait=False)
    functions.create(outside, wait=False)
    user = users.create(
        _policy(
            allow(
                "lambda:GetFunctionConfiguration", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{prefix}-??"
            )
        )
    )
    assert user.lam.get_function_configuration(FunctionName=inside)["FunctionName"] == inside
    assert denied(user.lam.get_function_configuration, FunctionName=outside)[2] == implicit(
        user.arn, "lambda:GetFunctionConfiguration", function_arn(outside)
    )
    everywhere = users.create(_policy(allow("lambda:GetFunctionConfiguration", ALL_FUNCTIONS)))
    for name in (inside, outside):
        assert everywhere.lam.get_function_configuration(FunctionName=name)["FunctionName"] == name


def test_explicit_deny_beats_allow_and_a_denied_delete_changes_nothing(
    lam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    functions.create(fn_name)
    spare = unique_name("spare")
    functions.create(spare, wait=False)
    # The Allow and the Deny in two inline policies: every policy of the user applies.
    user = users.create(
        _policy(allow("lambda:*")), _policy(deny("lambda:DeleteFunction", function_arn(fn_name)))
    )
    assert denied(user.lam.delete_function, FunctionName=fn_name) == (
        "AccessDeniedException",
        403,
        explicit(user.arn, "lambda:DeleteFunction", function_arn(fn_name)),
    )
    assert lam.get_function(FunctionName=fn_name)["Configuration"]["FunctionName"] == fn_name
    user.lam.delete_function(FunctionName=spare)  # the Allow still applies elsewhere
    assert denied(lam.get_function, FunctionName=spare)[:2] == ("ResourceNotFoundException", 404)

    invoker = users.create(_policy(allow(INVOKE), deny(INVOKE, function_arn(fn_name))))
    assert denied(invoker.lam.invoke, FunctionName=fn_name) == (
        "AccessDeniedException",
        403,
        explicit(invoker.arn, INVOKE, function_arn(fn_name)),
    )


# -- iam:PassRole and the execution role --------------------------------------------------------


def test_create_function_needs_pass_role(lam: Any, functions: Functions, users: Users, fn_name: str) -> None:
    request = {
        "FunctionName": fn_name,
        "Runtime": RUNTIME,
        "Role": ROLE,
        "Handler": "index.handler",
        "Code": {"ZipFile": make_zip()},
    }
    creator = users.create(_policy(allow("lambda:CreateFunction")))
    assert denied(creator.lam.create_function, **request) == (
        "AccessDeniedException",
        403,
        implicit(creator.arn, "iam:PassRole", ROLE),
    )
    assert denied(lam.get_function, FunctionName=fn_name)[:2] == ("ResourceNotFoundException", 404)

    passer = users.create(_policy(allow("lambda:CreateFunction"), allow("iam:PassRole", ROLE)))
    functions.created.append(fn_name)
    assert passer.lam.create_function(**request)["Role"] == ROLE


def test_a_role_lambda_cannot_assume_is_refused(
    lam: Any, iam: Any, functions: Functions, users: Users, roles: list[str], fn_name: str
) -> None:
    untrusting = unique_name("ec2-only")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    ec2_role = iam.create_role(RoleName=untrusting, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    roles.append(untrusting)
    missing = f"arn:aws:iam::{ACCOUNT}:role/{unique_name('missing')}"
    user = users.create(
        _policy(allow(["lambda:CreateFunction", "lambda:UpdateFunctionConfiguration", "iam:PassRole"]))
    )
    for role in (missing, ec2_role):
        assert denied(
            user.lam.create_function,
            FunctionName=fn_name,
            Runtime=RUNTIME,
            Role=role,
            Handler="index.handler",
            Code={"ZipFile": make_zip()},
        ) == ("InvalidParameterValueException", 400, NOT_ASSUMABLE)
    assert denied(lam.get_function, FunctionName=fn_name)[:2] == ("ResourceNotFoundException", 404)

    functions.create(fn_name)
    for role in (missing, ec2_role):
        assert denied(user.lam.update_function_configuration, FunctionName=fn_name, Role=role) == (
            "InvalidParameterValueException",
            400,
            NOT_ASSUMABLE,
        )
    assert lam.get_function_configuration(FunctionName=fn_name)["Role"] == ROLE

    lambda_role = unique_name("for-lambda")
    good = iam.create_role(RoleName=lambda_role, AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]["Arn"]
    roles.append(lambda_role)
    no_pass = users.create(_policy(allow("lambda:UpdateFunctionConfiguration")))
    assert denied(no_pass.lam.update_function_configuration, FunctionName=fn_name, Role=good) == (
        "AccessDeniedException",
        403,
        implicit(no_pass.arn, "iam:PassRole", good),
    )
    assert user.lam.update_function_configuration(FunctionName=fn_name, Role=good)["Role"] == good


# -- resource-based policies (AddPermission) ----------------------------------------------------


def test_add_permission_grants_and_remove_permission_revokes(
    lam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    functions.create(fn_name)
    user = users.create()
    assert denied(user.lam.invoke, FunctionName=fn_name)[:2] == ("AccessDeniedException", 403)
    lam.add_permission(FunctionName=fn_name, StatementId="user", Action=INVOKE, Principal=user.arn)
    assert _invoke(user.lam, fn_name)["ok"] is True
    # The permission is for InvokeFunction only.
    assert denied(user.lam.get_function, FunctionName=fn_name)[:2] == ("AccessDeniedException", 403)
    lam.remove_permission(FunctionName=fn_name, StatementId="user")
    assert denied(user.lam.invoke, FunctionName=fn_name) == (
        "AccessDeniedException",
        403,
        implicit(user.arn, INVOKE, function_arn(fn_name)),
    )


def test_a_permission_on_an_alias_grants_only_the_alias(
    lam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    _versioned(lam, functions, fn_name)
    user = users.create()
    lam.add_permission(
        FunctionName=fn_name, Qualifier="live", StatementId="alias", Action=INVOKE, Principal=user.arn
    )
    assert _invoke(user.lam, fn_name, Qualifier="live")["ok"] is True
    for qualifier in (None, "1"):
        params = {"Qualifier": qualifier} if qualifier else {}
        assert denied(user.lam.invoke, FunctionName=fn_name, **params)[:2] == ("AccessDeniedException", 403)


def test_identity_deny_beats_a_resource_policy_allow(
    lam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    functions.create(fn_name)
    user = users.create(_policy(deny(INVOKE)))
    lam.add_permission(FunctionName=fn_name, StatementId="user", Action=INVOKE, Principal=user.arn)
    assert denied(user.lam.invoke, FunctionName=fn_name) == (
        "AccessDeniedException",
        403,
        explicit(user.arn, INVOKE, function_arn(fn_name)),
    )


def test_another_accounts_principal_grants_nothing_here(
    lam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    functions.create(fn_name)
    user = users.create()
    lam.add_permission(FunctionName=fn_name, StatementId="acct", Action=INVOKE, Principal="111122223333")
    lam.add_permission(
        FunctionName=fn_name,
        StatementId="twin",
        Action=INVOKE,
        Principal=f"arn:aws:iam::111122223333:user/{user.name}",
    )
    assert denied(user.lam.invoke, FunctionName=fn_name)[:2] == ("AccessDeniedException", 403)


# -- other services and principals --------------------------------------------------------------


def test_cloudwatch_logs_calls_are_enforced(server: Server, users: Users) -> None:
    nobody = users.create()
    # CloudWatch Logs speaks JSON 1.1, whose services answer every client error with HTTP 400.
    assert denied(nobody.client(server, "logs").describe_log_groups) == (
        "AccessDeniedException",
        400,
        implicit(nobody.arn, "logs:DescribeLogGroups", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*"),
    )
    reader = users.create(_policy(allow("logs:DescribeLogGroups")))
    assert isinstance(reader.client(server, "logs").describe_log_groups()["logGroups"], list)


def test_the_admin_key_needs_no_policy(
    server: Server, lam: Any, iam: Any, functions: Functions, fn_name: str
) -> None:
    identity = aws_client(server, "sts").get_caller_identity()
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    functions.create(fn_name)
    assert _invoke(lam, fn_name)["ok"] is True
    lam.update_function_configuration(FunctionName=fn_name, Description="admin")
    assert isinstance(iam.list_users()["Users"], list)
    assert isinstance(aws_client(server, "logs").describe_log_groups()["logGroups"], list)
    lam.delete_function(FunctionName=fn_name)


def _reader_session(
    server: Server, iam: Any, roles: list[str], hint: str, session_name: str
) -> tuple[str, str, dict[str, str]]:
    """(role name, role ARN, session credentials) of a new role that trusts the account and may
    only lambda:GetFunction, assumed by the admin; the role is left in ``roles`` for cleanup."""
    role_name = unique_name(hint)
    role_arn: str = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=ACCOUNT_TRUST)["Role"]["Arn"]
    roles.append(role_name)
    iam.put_role_policy(
        RoleName=role_name, PolicyName="get", PolicyDocument=json.dumps(_policy(allow("lambda:GetFunction")))
    )
    sts = aws_client(server, "sts")
    creds: dict[str, str] = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
    return role_name, role_arn, creds


def test_a_role_session_gets_only_its_roles_policy(
    server: Server, lam: Any, iam: Any, functions: Functions, roles: list[str], fn_name: str
) -> None:
    functions.create(fn_name)
    role_name, _, creds = _reader_session(server, iam, roles, "reader", "s1")
    session = (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    principal = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/s1"
    assert aws_client(server, "sts", *session).get_caller_identity()["Arn"] == principal

    role_lam = aws_client(server, "lambda", *session)
    assert role_lam.get_function(FunctionName=fn_name)["Configuration"]["FunctionName"] == fn_name
    other = unique_name("by-role")
    assert denied(
        role_lam.create_function,
        FunctionName=other,
        Runtime=RUNTIME,
        Role=ROLE,
        Handler="index.handler",
        Code={"ZipFile": make_zip()},
    ) == ("AccessDeniedException", 403, implicit(principal, "lambda:CreateFunction", function_arn(other)))
    assert denied(role_lam.delete_function, FunctionName=fn_name) == (
        "AccessDeniedException",
        403,
        implicit(principal, "lambda:DeleteFunction", function_arn(fn_name)),
    )
    assert lam.get_function(FunctionName=fn_name)["Configuration"]["FunctionName"] == fn_name
    user_name = unique_name("by-role")
    assert denied(aws_client(server, "iam", *session).create_user, UserName=user_name) == (
        "AccessDenied",
        403,
        implicit(principal, "iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/{user_name}"),
    )
    assert denied(iam.get_user, UserName=user_name)[:2] == ("NoSuchEntity", 404)


# -- signatures on the query endpoints ----------------------------------------------------------


def _raw_query(
    server: Server, service: str, body: bytes, signed_body: bytes, **changed_headers: str
) -> tuple[int, str]:
    """(status, Error.Code) of a POST signed over ``signed_body`` but sending ``body`` (and
    ``changed_headers``, underscores for dashes, in place of the signed ones)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    request = AWSRequest(method="POST", url=f"{server.endpoint}/", data=signed_body, headers=headers)
    botocore.auth.SigV4Auth(Credentials(*server.credentials()), service, REGION).add_auth(request)
    sent = dict(request.headers.items())
    sent.update({name.replace("_", "-"): value for name, value in changed_headers.items()})
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(server.endpoint).netloc, timeout=10)
    try:
        conn.request("POST", "/", body=body, headers=sent)
        resp = conn.getresponse()
        text = resp.read().decode()
    finally:
        conn.close()
    code = text.split("<Code>", 1)[-1].split("</Code>", 1)[0] if "<Code>" in text else ""
    return resp.status, code


@pytest.mark.parametrize("service", ["iam", "sts"])
def test_bad_signatures_on_query_endpoints(server: Server, service: str) -> None:
    key, secret = server.credentials()
    call = "list_users" if service == "iam" else "get_caller_identity"
    wrong = aws_client(server, service, key, "x" * 40)
    code, status, message = denied(getattr(wrong, call))
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert message.startswith(
        "The request signature we calculated does not match the signature you provided."
    )
    unknown = aws_client(server, service, "AKIAIOSFODNN7EXAMPLE", secret)
    assert denied(getattr(unknown, call)) == (
        "InvalidClientTokenId",
        403,
        "The security token included in the request is invalid.",
    )

    action = "ListUsers&Version=2010-05-08" if service == "iam" else "GetCallerIdentity&Version=2011-06-15"
    good = f"Action={action}".encode()
    assert _raw_query(server, service, good, good) == (200, "")
    assert _raw_query(server, service, good + b"&MaxItems=1", good) == (403, "SignatureDoesNotMatch")
    assert _raw_query(server, service, good, good, Content_Type="application/x-www-form-urlencoded") == (
        403,
        "SignatureDoesNotMatch",
    )


def test_deactivated_and_deleted_user_keys_stop_working(server: Server, iam: Any, users: Users) -> None:
    user = users.create(_policy(allow(["lambda:ListFunctions", "iam:GetUser"])))
    user_iam = user.client(server, "iam")
    assert user_iam.get_user(UserName=user.name)["User"]["Arn"] == user.arn
    iam.update_access_key(UserName=user.name, AccessKeyId=user.key, Status="Inactive")
    assert denied(user.lam.list_functions)[:2] == ("UnrecognizedClientException", 403)
    assert denied(user_iam.get_user, UserName=user.name)[:2] == ("InvalidClientTokenId", 403)
    iam.update_access_key(UserName=user.name, AccessKeyId=user.key, Status="Active")
    assert isinstance(user.lam.list_functions()["Functions"], list)
    iam.delete_access_key(UserName=user.name, AccessKeyId=user.key)
    assert denied(user.lam.list_functions)[:2] == ("UnrecognizedClientException", 403)


# -- changes apply at once, and nobody grants themselves more ------------------------------------


def test_policy_changes_apply_to_the_next_request(
    lam: Any, iam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    functions.create(fn_name)
    user = users.create()
    assert denied(user.lam.get_function, FunctionName=fn_name)[:2] == ("AccessDeniedException", 403)
    iam.put_user_policy(
        UserName=user.name, PolicyName="get", PolicyDocument=json.dumps(_policy(allow("lambda:GetFunction")))
    )
    assert user.lam.get_function(FunctionName=fn_name)["Configuration"]["FunctionName"] == fn_name
    iam.put_user_policy(
        UserName=user.name, PolicyName="no", PolicyDocument=json.dumps(_policy(deny("lambda:GetFunction")))
    )
    assert denied(user.lam.get_function, FunctionName=fn_name)[2] == explicit(
        user.arn, "lambda:GetFunction", function_arn(fn_name)
    )
    iam.delete_user_policy(UserName=user.name, PolicyName="no")
    iam.delete_user_policy(UserName=user.name, PolicyName="get")
    assert denied(user.lam.get_function, FunctionName=fn_name)[:2] == ("AccessDeniedException", 403)


def test_a_user_cannot_grant_itself_more(
    server: Server, lam: Any, iam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    functions.create(fn_name)
    user = users.create(_policy(allow("lambda:GetFunction")))
    assert denied(
        user.lam.add_permission, FunctionName=fn_name, StatementId="me", Action=INVOKE, Principal=user.arn
    ) == ("AccessDeniedException", 403, implicit(user.arn, "lambda:AddPermission", function_arn(fn_name)))
    assert denied(lam.get_policy, FunctionName=fn_name)[:2] == ("ResourceNotFoundException", 404)
    user_iam = user.client(server, "iam")
    assert denied(
        user_iam.put_user_policy,
        UserName=user.name,
        PolicyName="all",
        PolicyDocument=json.dumps(_policy(allow("*"))),
    )[:2] == ("AccessDenied", 403)
    assert denied(user_iam.create_access_key, UserName=user.name)[:2] == ("AccessDenied", 403)
    assert iam.list_user_policies(UserName=user.name)["PolicyNames"] == ["p0"]
    assert len(iam.list_access_keys(UserName=user.name)["AccessKeyMetadata"]) == 1


def test_async_and_dry_run_invokes_are_enforced_too(
    lam: Any, functions: Functions, users: Users, fn_name: str
) -> None:
    functions.create(fn_name)
    user = users.create()
    for kind in ("Event", "DryRun"):
        assert denied(user.lam.invoke, FunctionName=fn_name, InvocationType=kind) == (
            "AccessDeniedException",
            403,
            implicit(user.arn, INVOKE, function_arn(fn_name)),
        )


def test_a_role_session_loses_what_its_role_loses(
    server: Server, iam: Any, functions: Functions, roles: list[str], fn_name: str
) -> None:
    functions.create(fn_name)
    role_name, role_arn, creds = _reader_session(server, iam, roles, "fading", "s2")
    role_lam = aws_client(
        server, "lambda", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    )
    assert role_lam.get_function(FunctionName=fn_name)["Configuration"]["FunctionName"] == fn_name
    iam.delete_role_policy(RoleName=role_name, PolicyName="get")
    assert denied(role_lam.get_function, FunctionName=fn_name)[:2] == ("AccessDeniedException", 403)
    # A resource policy naming the role grants to every session of it.
    assert denied(role_lam.invoke, FunctionName=fn_name)[:2] == ("AccessDeniedException", 403)
    functions.lam.add_permission(FunctionName=fn_name, StatementId="role", Action=INVOKE, Principal=role_arn)
    assert _invoke(role_lam, fn_name)["ok"] is True

    forged = aws_client(server, "lambda", creds["AccessKeyId"], creds["SecretAccessKey"], "not-the-token")
    assert denied(forged.get_function, FunctionName=fn_name) == (
        "UnrecognizedClientException",
        403,
        "The security token included in the request is invalid.",
    )
    tokenless = aws_client(server, "lambda", creds["AccessKeyId"], creds["SecretAccessKey"])
    assert denied(tokenless.get_function, FunctionName=fn_name)[:2] == ("UnrecognizedClientException", 403)


@pytest.mark.parametrize("service", ["iam", "sts"])
def test_expired_signature_on_query_endpoints(
    server: Server, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(hours=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: old)
    client = aws_client(server, service)
    call = client.list_users if service == "iam" else client.get_caller_identity
    code, status, message = denied(call)
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert message.startswith("Signature expired: ")


def _trusting(iam: Any, roles: list[str], principal: str) -> str:
    name = unique_name("trusting")
    trust = trust_policy({"AWS": principal})
    arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    roles.append(name)
    return arn


def test_assume_role_by_a_user(server: Server, iam: Any, users: Users, roles: list[str]) -> None:
    nobody = users.create()
    via_account = _trusting(iam, roles, f"arn:aws:iam::{ACCOUNT}:root")
    naming_user = _trusting(iam, roles, nobody.arn)
    sts = nobody.client(server, "sts")
    # The account in a trust policy delegates to identity policies, and this user has none.
    code, status, message = denied(sts.assume_role, RoleArn=via_account, RoleSessionName="s1")
    assert (code, status) == ("AccessDenied", 403)
    assert message.startswith(
        f"User: {nobody.arn} is not authorized to perform: sts:AssumeRole on resource: {via_account}"
    )
    # A trust policy naming the user grants by itself.
    creds = sts.assume_role(RoleArn=naming_user, RoleSessionName="s1")["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")

    allowed = users.create(_policy(allow("sts:AssumeRole", via_account)))
    creds = allowed.client(server, "sts").assume_role(RoleArn=via_account, RoleSessionName="s1")[
        "Credentials"
    ]
    assert creds["AccessKeyId"].startswith("ASIA")
    assert denied(allowed.client(server, "sts").assume_role, RoleArn=naming_user, RoleSessionName="s1")[
        :2
    ] == (
        "AccessDenied",
        403,
    )
