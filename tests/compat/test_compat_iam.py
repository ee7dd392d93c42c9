"""IAM through the real boto3 and AWS CLI: roles, users, inline policies and access keys.

The assertions are AWS's: botocore's model for the shapes (trust and inline policies come back
URL-encoded and botocore hands them over as dicts), IAM's error codes, HTTP statuses and
messages, and what a user's own key may do once IAM says so (Lambda answers a refusal with
``AccessDeniedException``, IAM with ``AccessDenied`` in an XML error document).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_compat_support import (
    ACCOUNT,
    REGION,
    ROLE,
    Server,
    allow_policy,
    aws_client,
    client_for,
    error_of,
    trust_policy,
    unique_name,
)

AWS = Path(sys.executable).parent / "aws"
INVALID_TOKEN = "The security token included in the request is invalid."
TRUST_ACCOUNT = trust_policy({"AWS": f"arn:aws:iam::{ACCOUNT}:root"})
TRUST_LAMBDA = trust_policy({"Service": "lambda.amazonaws.com"})


@pytest.fixture(scope="module")
def iam(server: Server) -> Any:
    return aws_client(server, "iam")


@pytest.fixture(scope="module")
def iam_raw(server: Server) -> Any:
    """Skips botocore's own checks, so the server's are what answers."""
    return aws_client(server, "iam", validate=False)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return unique_name(request.node.name)


def _recent(moment: datetime) -> bool:
    return moment.tzinfo is not None and abs(datetime.now(timezone.utc) - moment) < timedelta(minutes=5)


# roles


def test_create_and_get_role_round_trip_the_trust_policy(iam: Any, name: str) -> None:
    created = iam.create_role(
        RoleName=name, AssumeRolePolicyDocument=TRUST_LAMBDA, Path="/team/",
        Description="compat role", MaxSessionDuration=7200, Tags=[{"Key": "k", "Value": "v"}],
    )["Role"]
    assert created["RoleName"] == name
    assert created["Path"] == "/team/"
    assert created["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/team/{name}"
    assert created["RoleId"].startswith("AROA") and len(created["RoleId"]) == 20
    assert _recent(created["CreateDate"])
    assert created["AssumeRolePolicyDocument"] == json.loads(TRUST_LAMBDA)  # decoded by botocore

    got = iam.get_role(RoleName=name)["Role"]
    assert got["Arn"] == created["Arn"] and got["RoleId"] == created["RoleId"]
    assert got["AssumeRolePolicyDocument"] == json.loads(TRUST_LAMBDA)
    assert got["Description"] == "compat role"
    assert got["MaxSessionDuration"] == 7200
    assert got["Tags"] == [{"Key": "k", "Value": "v"}]
    iam.delete_role(RoleName=name)


def test_the_default_execution_role_exists(iam: Any) -> None:
    role = iam.get_role(RoleName="lambda-role")["Role"]
    assert role["Arn"] == ROLE
    assert role["AssumeRolePolicyDocument"] == json.loads(TRUST_LAMBDA)


def test_update_assume_role_policy_replaces_the_trust_policy(iam: Any, name: str) -> None:
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_LAMBDA)
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=TRUST_ACCOUNT)
    assert iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"] == json.loads(TRUST_ACCOUNT)
    with pytest.raises(ClientError) as exc:
        iam.update_assume_role_policy(RoleName=f"{name}-x", PolicyDocument=TRUST_ACCOUNT)
    assert error_of(exc) == ("NoSuchEntity", 404, f"The role with name {name}-x cannot be found.")
    iam.delete_role(RoleName=name)


def test_role_names_are_unique_regardless_of_case(iam: Any, name: str) -> None:
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_LAMBDA)
    for again in (name, name.upper()):
        with pytest.raises(ClientError) as exc:
            iam.create_role(RoleName=again, AssumeRolePolicyDocument=TRUST_LAMBDA)
        assert error_of(exc) == ("EntityAlreadyExists", 409, f"Role with name {again} already exists.")
    assert iam.get_role(RoleName=name.upper())["Role"]["RoleName"] == name
    iam.delete_role(RoleName=name.upper())
    assert name not in [r["RoleName"] for r in iam.list_roles()["Roles"]]


def test_missing_role_is_no_such_entity(iam: Any, name: str) -> None:
    for call in (iam.get_role, iam.delete_role, iam.list_role_policies):
        with pytest.raises(ClientError) as exc:
            call(RoleName=name)
        assert error_of(exc) == ("NoSuchEntity", 404, f"The role with name {name} cannot be found.")
        assert exc.value.response["Error"]["Type"] == "Sender"


def test_list_roles_pages_with_max_items_and_marker_under_a_path_prefix(iam: Any, name: str) -> None:
    path = f"/{name}/"
    names = sorted(f"{name[:40]}-{i}" for i in range(3))
    for role in names:
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST_LAMBDA, Path=path)

    first = iam.list_roles(PathPrefix=path, MaxItems=2)
    assert [r["RoleName"] for r in first["Roles"]] == names[:2]
    assert first["IsTruncated"] is True and first["Marker"]
    assert first["Roles"][0]["AssumeRolePolicyDocument"] == json.loads(TRUST_LAMBDA)
    second = iam.list_roles(PathPrefix=path, MaxItems=2, Marker=first["Marker"])
    assert [r["RoleName"] for r in second["Roles"]] == names[2:]
    assert second["IsTruncated"] is False and "Marker" not in second

    pages = iam.get_paginator("list_roles").paginate(PathPrefix=path, PaginationConfig={"PageSize": 1})
    assert [r["RoleName"] for page in pages for r in page["Roles"]] == names
    everything = [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert "lambda-role" in everything and set(names) <= set(everything)
    assert iam.list_roles(PathPrefix=f"/{name}-none/")["Roles"] == []
    for role in names:
        iam.delete_role(RoleName=role)


def test_role_inline_policies_and_delete_conflict(iam: Any, name: str) -> None:
    document = {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "lambda:ListFunctions", "Resource": "*"}]}
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_LAMBDA)
    iam.put_role_policy(RoleName=name, PolicyName="b-list", PolicyDocument=json.dumps(document))
    iam.put_role_policy(RoleName=name, PolicyName="a-logs", PolicyDocument=allow_policy("logs:*"))

    got = iam.get_role_policy(RoleName=name, PolicyName="b-list")
    assert (got["RoleName"], got["PolicyName"], got["PolicyDocument"]) == (name, "b-list", document)
    listed = iam.list_role_policies(RoleName=name)
    assert listed["PolicyNames"] == ["a-logs", "b-list"] and listed["IsTruncated"] is False

    with pytest.raises(ClientError) as exc:
        iam.delete_role(RoleName=name)
    assert error_of(exc) == ("DeleteConflict", 409, "Cannot delete entity, must delete policies first.")

    iam.delete_role_policy(RoleName=name, PolicyName="a-logs")
    iam.delete_role_policy(RoleName=name, PolicyName="b-list")
    with pytest.raises(ClientError) as exc:
        iam.get_role_policy(RoleName=name, PolicyName="b-list")
    assert error_of(exc) == ("NoSuchEntity", 404, "The role policy with name b-list cannot be found.")
    with pytest.raises(ClientError) as exc:
        iam.delete_role_policy(RoleName=name, PolicyName="b-list")
    assert error_of(exc)[:2] == ("NoSuchEntity", 404)
    assert iam.list_role_policies(RoleName=name)["PolicyNames"] == []

    iam.delete_role(RoleName=name)
    with pytest.raises(ClientError) as exc:
        iam.get_role(RoleName=name)
    assert error_of(exc)[:2] == ("NoSuchEntity", 404)


@pytest.mark.parametrize(("document", "message"), [
    ("{not json", "Syntax errors in policy."),
    (json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}]}),
     "Policy document should not specify a principal."),
    (json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]}),
     "Policy statement must contain actions."),
], ids=["syntax", "principal", "no-action"])
def test_malformed_inline_policy(iam: Any, document: str, message: str) -> None:
    with pytest.raises(ClientError) as exc:
        iam.put_role_policy(RoleName="lambda-role", PolicyName="bad", PolicyDocument=document)
    assert error_of(exc) == ("MalformedPolicyDocument", 400, message)


def test_malformed_trust_policy(iam: Any, name: str) -> None:
    with_resource = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
         "Action": "sts:AssumeRole", "Resource": "*"}]}
    with pytest.raises(ClientError) as exc:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(with_resource))
    assert error_of(exc) == ("MalformedPolicyDocument", 400, "Has prohibited field Resource")
    with pytest.raises(ClientError) as exc:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument="[]")
    assert error_of(exc)[:2] == ("MalformedPolicyDocument", 400)
    with pytest.raises(ClientError) as exc:
        iam.get_role(RoleName=name)
    assert error_of(exc)[0] == "NoSuchEntity"  # nothing was created


def test_bad_names_are_validation_errors(iam_raw: Any) -> None:
    with pytest.raises(ClientError) as exc:
        iam_raw.create_role(RoleName="bad name!", AssumeRolePolicyDocument=TRUST_LAMBDA)
    assert error_of(exc) == (
        "ValidationError", 400,
        "1 validation error detected: Value 'bad name!' at 'roleName' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [\w+=,.@-]+")
    long = "r" * 65
    with pytest.raises(ClientError) as exc:
        iam_raw.create_role(RoleName=long, AssumeRolePolicyDocument=TRUST_LAMBDA)
    assert error_of(exc) == (
        "ValidationError", 400,
        f"1 validation error detected: Value '{long}' at 'roleName' failed to satisfy constraint: "
        "Member must have length less than or equal to 64")
    with pytest.raises(ClientError) as exc:
        iam_raw.create_role(RoleName="ok", AssumeRolePolicyDocument=TRUST_LAMBDA, Path="no-slashes")
    assert error_of(exc) == (
        "ValidationError", 400,
        "1 validation error detected: Value 'no-slashes' at 'path' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: (\u002F)|(\u002F[\u0021-\u007E]+\u002F)")
    with pytest.raises(ClientError) as exc:
        iam_raw.create_user(UserName="no/slashes")
    assert error_of(exc)[:2] == ("ValidationError", 400)
    assert "at 'userName' failed to satisfy constraint" in error_of(exc)[2]


# users and access keys


@pytest.fixture
def user(iam: Any, name: str) -> Iterator[str]:
    """A fresh user; whatever keys and policies a test left are removed with it."""
    iam.create_user(UserName=name)
    yield name
    for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    for policy in iam.list_user_policies(UserName=name)["PolicyNames"]:
        iam.delete_user_policy(UserName=name, PolicyName=policy)
    iam.delete_user(UserName=name)


def test_create_get_list_and_delete_user(iam: Any, name: str) -> None:
    created = iam.create_user(UserName=name, Path="/people/")["User"]
    assert created["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/people/{name}"
    assert created["UserId"].startswith("AIDA") and len(created["UserId"]) == 20
    assert created["Path"] == "/people/" and _recent(created["CreateDate"])
    assert iam.get_user(UserName=name)["User"]["UserId"] == created["UserId"]
    listed = iam.list_users(PathPrefix="/people/")
    assert name in [u["UserName"] for u in listed["Users"]] and listed["IsTruncated"] is False

    with pytest.raises(ClientError) as exc:
        iam.create_user(UserName=name)
    assert error_of(exc) == ("EntityAlreadyExists", 409, f"User with name {name} already exists.")

    iam.delete_user(UserName=name)
    for call in (iam.get_user, iam.delete_user):
        with pytest.raises(ClientError) as exc:
            call(UserName=name)
        assert error_of(exc) == ("NoSuchEntity", 404, f"The user with name {name} cannot be found.")


def test_get_user_without_a_name_is_the_callers(iam: Any) -> None:
    root = iam.get_user()["User"]
    assert root["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert root["UserId"] == ACCOUNT


def test_access_keys_create_list_update_delete_and_limit(iam: Any, user: str) -> None:
    first = iam.create_access_key(UserName=user)["AccessKey"]
    assert first["UserName"] == user and first["Status"] == "Active"
    assert first["AccessKeyId"].startswith("AKIA") and len(first["AccessKeyId"]) == 20
    assert len(first["SecretAccessKey"]) == 40 and _recent(first["CreateDate"])
    second = iam.create_access_key(UserName=user)["AccessKey"]
    with pytest.raises(ClientError) as exc:
        iam.create_access_key(UserName=user)
    assert error_of(exc) == ("LimitExceeded", 409, "Cannot exceed quota for AccessKeysPerUser: 2")

    listed = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert {k["AccessKeyId"] for k in listed} == {first["AccessKeyId"], second["AccessKeyId"]}
    assert all("SecretAccessKey" not in k and k["UserName"] == user for k in listed)

    iam.update_access_key(UserName=user, AccessKeyId=first["AccessKeyId"], Status="Inactive")
    status = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}
    assert status == {first["AccessKeyId"]: "Inactive", second["AccessKeyId"]: "Active"}

    iam.delete_access_key(UserName=user, AccessKeyId=first["AccessKeyId"])
    with pytest.raises(ClientError) as exc:
        iam.delete_access_key(UserName=user, AccessKeyId=first["AccessKeyId"])
    assert error_of(exc) == (
        "NoSuchEntity", 404, f"The Access Key with id {first['AccessKeyId']} cannot be found.")
    remaining = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in remaining] == [second["AccessKeyId"]]


def test_user_with_access_keys_cannot_be_deleted(iam: Any, user: str) -> None:
    key = iam.create_access_key(UserName=user)["AccessKey"]
    with pytest.raises(ClientError) as exc:
        iam.delete_user(UserName=user)
    assert error_of(exc) == ("DeleteConflict", 409, "Cannot delete entity, must delete access keys first.")
    iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=allow_policy("lambda:ListFunctions"))
    with pytest.raises(ClientError) as exc:
        iam.delete_user(UserName=user)
    assert error_of(exc) == ("DeleteConflict", 409, "Cannot delete entity, must delete policies first.")


def test_a_users_key_does_what_its_policy_allows_and_nothing_else(
        server: Server, iam: Any, user: str) -> None:
    user_arn = f"arn:aws:iam::{ACCOUNT}:user/{user}"
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "lambda:ListFunctions", "Resource": "*"},
            {"Effect": "Allow", "Action": ["iam:GetUser", "iam:ListAccessKeys"], "Resource": user_arn},
        ]}))
    assert iam.get_user_policy(UserName=user, PolicyName="p")["PolicyDocument"]["Statement"][0] == {
        "Effect": "Allow", "Action": "lambda:ListFunctions", "Resource": "*"}
    assert iam.list_user_policies(UserName=user)["PolicyNames"] == ["p"]
    key = iam.create_access_key(UserName=user)["AccessKey"]
    lam = client_for(server, access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"])
    user_iam = aws_client(server, "iam", key["AccessKeyId"], key["SecretAccessKey"])

    assert "Functions" in lam.list_functions()
    assert user_iam.get_user()["User"]["Arn"] == user_arn  # no UserName: the caller's own user
    assert user_iam.get_user(UserName=user)["User"]["UserName"] == user
    assert [k["AccessKeyId"] for k in user_iam.list_access_keys()["AccessKeyMetadata"]] == [
        key["AccessKeyId"]]

    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName="anything")
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:anything"
    assert error_of(exc) == (
        "AccessDeniedException", 403,
        f"User: {user_arn} is not authorized to perform: lambda:GetFunction on resource: {fn} "
        "because no identity-based policy allows the lambda:GetFunction action")

    with pytest.raises(ClientError) as exc:
        user_iam.list_roles()
    assert error_of(exc) == (
        "AccessDenied", 403,
        f"User: {user_arn} is not authorized to perform: iam:ListRoles on resource: "
        f"arn:aws:iam::{ACCOUNT}:role/ because no identity-based policy allows the iam:ListRoles action")
    assert exc.value.response["Error"]["Type"] == "Sender"
    with pytest.raises(ClientError) as exc:
        user_iam.create_user(UserName=f"{user}-2")
    assert error_of(exc)[:2] == ("AccessDenied", 403)


def test_policies_name_roles_by_their_full_arn_with_the_path(
        server: Server, iam: Any, user: str, name: str) -> None:
    iam.create_role(RoleName=name, Path="/team/", AssumeRolePolicyDocument=TRUST_LAMBDA)
    other = f"{name}-x"
    iam.create_role(RoleName=other, AssumeRolePolicyDocument=TRUST_LAMBDA)
    try:
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=allow_policy(
            "iam:GetRole", resource=f"arn:aws:iam::{ACCOUNT}:role/team/*"))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        user_iam = aws_client(server, "iam", key["AccessKeyId"], key["SecretAccessKey"])
        assert user_iam.get_role(RoleName=name)["Role"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/team/{name}"
        with pytest.raises(ClientError) as exc:
            user_iam.get_role(RoleName=other)  # no path: not under role/team/
        assert error_of(exc)[2].endswith(
            f"on resource: arn:aws:iam::{ACCOUNT}:role/{other} because no identity-based policy "
            "allows the iam:GetRole action")
    finally:
        iam.delete_role(RoleName=name)
        iam.delete_role(RoleName=other)


def test_the_administrators_own_key_cannot_be_deleted(server: Server, iam: Any) -> None:
    admin_key, _ = server.credentials()
    for call in (lambda: iam.delete_access_key(AccessKeyId=admin_key),
                 lambda: iam.update_access_key(AccessKeyId=admin_key, Status="Inactive")):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc)[:2] == ("UnmodifiableEntity", 400)
    assert iam.get_user()["User"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"  # still works


def test_inactive_and_deleted_keys_stop_working(server: Server, iam: Any, user: str) -> None:
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=allow_policy(
        "lambda:ListFunctions", "iam:GetUser"))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
    lam = client_for(server, access_key=key_id, secret_key=secret)
    user_iam = aws_client(server, "iam", key_id, secret)
    lam.list_functions()
    user_iam.get_user()

    def refused() -> None:
        with pytest.raises(ClientError) as exc:
            user_iam.get_user()
        assert error_of(exc) == ("InvalidClientTokenId", 403, INVALID_TOKEN)
        with pytest.raises(ClientError) as exc:
            lam.list_functions()
        assert error_of(exc) == ("UnrecognizedClientException", 403, INVALID_TOKEN)

    iam.update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")
    refused()
    iam.update_access_key(UserName=user, AccessKeyId=key_id, Status="Active")
    lam.list_functions()
    iam.delete_access_key(UserName=user, AccessKeyId=key_id)
    refused()


# the AWS CLI


def _aws(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_SHARED_CREDENTIALS_FILE": str(server.credentials_path),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    })
    cmd = [str(AWS), *args, "--endpoint-url", server.endpoint, "--output", "json",
           "--cli-read-timeout", "30", "--cli-connect-timeout", "5"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


def _ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_aws_cli_manages_roles_and_reports_the_caller(server: Server, iam: Any, name: str) -> None:
    created = _ok(_aws(server, "iam", "create-role", "--role-name", name,
                       "--assume-role-policy-document", TRUST_LAMBDA))
    try:
        assert created["Role"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/{name}"
        got = _ok(_aws(server, "iam", "get-role", "--role-name", name))
        assert got["Role"]["AssumeRolePolicyDocument"] == json.loads(TRUST_LAMBDA)
        listed = _ok(_aws(server, "iam", "list-roles"))
        assert name in [r["RoleName"] for r in listed["Roles"]]
        missing = _aws(server, "iam", "get-role", "--role-name", f"{name}-x")
        assert missing.returncode != 0
        assert "(NoSuchEntity)" in missing.stderr
        assert f"The role with name {name}-x cannot be found." in missing.stderr
        who = _ok(_aws(server, "sts", "get-caller-identity"))
        assert who == {"UserId": ACCOUNT, "Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:root"}
    finally:
        iam.delete_role(RoleName=name)
