"""STS through the real boto3: GetCallerIdentity for every kind of caller, and AssumeRole.

AssumeRole follows AWS's rules: the role's trust policy decides, and when it names the account
(``arn:aws:iam::<account>:root``) it delegates to the caller's own identity policies, which
must then allow sts:AssumeRole; a trust policy naming the user's ARN is enough on its own. The
session credentials ("ASIA" key, secret, token) act with the role's policies and only with
their token. Lamina's administrator (the account root) may assume any role that trusts the
account — AWS itself refuses the root user this; Lamina's admin key is its only key at first.
"""

from __future__ import annotations

import json

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
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
    error_of,
    trust_policy,
    unique_name,
)

ROOT = f"arn:aws:iam::{ACCOUNT}:root"
INVALID_TOKEN = "The security token included in the request is invalid."


def _with(server: Server, service: str, creds: dict[str, str], *, token: bool = True) -> Any:
    return aws_client(server, service, creds["AccessKeyId"], creds["SecretAccessKey"],
                      creds.get("SessionToken") if token else None)


class Iam:
    """Admin IAM calls that clean up after themselves: roles, users, keys, inline policies."""

    def __init__(self, server: Server) -> None:
        self.client = aws_client(server, "iam")
        self.roles: list[str] = []
        self.users: list[str] = []

    def role(self, name: str, trust: str, *, policy: str | None = None, **kw: Any) -> dict[str, Any]:
        role: dict[str, Any] = self.client.create_role(
            RoleName=name, AssumeRolePolicyDocument=trust, **kw)["Role"]
        self.roles.append(name)
        if policy is not None:
            self.client.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=policy)
        return role

    def user(self, name: str, *, policy: str | None = None) -> tuple[str, dict[str, str]]:
        """(user ARN, an access key of the user)."""
        arn: str = self.client.create_user(UserName=name)["User"]["Arn"]
        self.users.append(name)
        if policy is not None:
            self.client.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=policy)
        key: dict[str, str] = self.client.create_access_key(UserName=name)["AccessKey"]
        return arn, key

    def cleanup(self) -> None:
        c = self.client
        for name in self.roles:
            for policy in c.list_role_policies(RoleName=name)["PolicyNames"]:
                c.delete_role_policy(RoleName=name, PolicyName=policy)
            c.delete_role(RoleName=name)
        for name in self.users:
            for key in c.list_access_keys(UserName=name)["AccessKeyMetadata"]:
                c.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
            for policy in c.list_user_policies(UserName=name)["PolicyNames"]:
                c.delete_user_policy(UserName=name, PolicyName=policy)
            c.delete_user(UserName=name)


@pytest.fixture
def iam(server: Server) -> Iterator[Iam]:
    helper = Iam(server)
    yield helper
    helper.cleanup()


@pytest.fixture(scope="module")
def sts(server: Server) -> Any:
    return aws_client(server, "sts")


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return unique_name(request.node.name)


def _denied(caller: str, role_arn: str) -> str:
    return f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"


# GetCallerIdentity


def test_get_caller_identity_of_the_root(sts: Any) -> None:
    who = sts.get_caller_identity()
    assert (who["UserId"], who["Account"], who["Arn"]) == (ACCOUNT, ACCOUNT, ROOT)


def test_get_caller_identity_of_a_user_needs_no_permission(
        server: Server, iam: Iam, name: str) -> None:
    arn, key = iam.user(name)
    user_id = iam.client.get_user(UserName=name)["User"]["UserId"]
    who = _with(server, "sts", key).get_caller_identity()
    assert (who["UserId"], who["Account"], who["Arn"]) == (user_id, ACCOUNT, arn)


# AssumeRole


def test_root_assumes_a_role_trusting_the_account(
        server: Server, sts: Any, iam: Iam, name: str) -> None:
    role = iam.role(name, trust_policy({"AWS": ROOT}))
    before = datetime.now(timezone.utc)
    response = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="compat-session")
    creds, assumed = response["Credentials"], response["AssumedRoleUser"]
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["AccessKeyId"]) == 20
    assert len(creds["SecretAccessKey"]) == 40 and creds["SessionToken"]
    expected = before + timedelta(seconds=3600)
    assert abs(creds["Expiration"] - expected) < timedelta(minutes=2)
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/compat-session"
    assert assumed == {"AssumedRoleId": f"{role['RoleId']}:compat-session", "Arn": session_arn}

    who = _with(server, "sts", creds).get_caller_identity()
    assert (who["UserId"], who["Account"], who["Arn"]) == (
        f"{role['RoleId']}:compat-session", ACCOUNT, session_arn)


def test_session_credentials_act_with_the_roles_policy(
        server: Server, sts: Any, iam: Iam, name: str) -> None:
    role = iam.role(name, trust_policy({"AWS": ROOT}),
                    policy=allow_policy("lambda:ListFunctions", "iam:GetRole"))
    creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1")["Credentials"]
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/s1"
    lam = _with(server, "lambda", creds)
    role_iam = _with(server, "iam", creds)

    assert "Functions" in lam.list_functions()
    assert role_iam.get_role(RoleName=name)["Role"]["Arn"] == role["Arn"]

    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName="anything")
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:anything"
    assert error_of(exc) == (
        "AccessDeniedException", 403,
        f"User: {session_arn} is not authorized to perform: lambda:GetFunction on resource: {fn} "
        "because no identity-based policy allows the lambda:GetFunction action")
    with pytest.raises(ClientError) as exc:
        role_iam.list_users()
    assert error_of(exc) == (
        "AccessDenied", 403,
        f"User: {session_arn} is not authorized to perform: iam:ListUsers on resource: "
        f"arn:aws:iam::{ACCOUNT}:user/ because no identity-based policy allows the iam:ListUsers action")


def test_session_credentials_need_their_token(server: Server, sts: Any, iam: Iam, name: str) -> None:
    role = iam.role(name, trust_policy({"AWS": ROOT}), policy=allow_policy("lambda:ListFunctions"))
    creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1")["Credentials"]
    _with(server, "lambda", creds).list_functions()
    for service, call, code in (("lambda", "list_functions", "UnrecognizedClientException"),
                                ("iam", "list_roles", "InvalidClientTokenId"),
                                ("sts", "get_caller_identity", "InvalidClientTokenId")):
        with pytest.raises(ClientError) as exc:
            getattr(_with(server, service, creds, token=False), call)()
        assert error_of(exc) == (code, 403, INVALID_TOKEN)
    wrong = {**creds, "SessionToken": creds["SessionToken"][:-4] + "AAAA"}
    with pytest.raises(ClientError) as exc:
        _with(server, "lambda", wrong).list_functions()
    assert error_of(exc) == ("UnrecognizedClientException", 403, INVALID_TOKEN)


def test_a_role_trusting_only_lambda_cannot_be_assumed(
        server: Server, sts: Any, iam: Iam, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        sts.assume_role(RoleArn=ROLE, RoleSessionName="s1")
    assert error_of(exc) == ("AccessDenied", 403, _denied(ROOT, ROLE))
    assert exc.value.response["Error"]["Type"] == "Sender"

    user_arn, key = iam.user(name, policy=allow_policy("sts:AssumeRole"))  # its own policy is not enough
    with pytest.raises(ClientError) as exc:
        _with(server, "sts", key).assume_role(RoleArn=ROLE, RoleSessionName="s1")
    assert error_of(exc)[:2] == ("AccessDenied", 403)
    assert error_of(exc)[2].startswith(_denied(user_arn, ROLE))


def test_a_missing_role_reads_as_access_denied(sts: Any, name: str) -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:role/{name}"
    with pytest.raises(ClientError) as exc:
        sts.assume_role(RoleArn=arn, RoleSessionName="s1")
    assert error_of(exc) == ("AccessDenied", 403, _denied(ROOT, arn))


def test_a_user_needs_sts_assume_role_when_the_trust_policy_names_the_account(
        server: Server, iam: Iam, name: str) -> None:
    role = iam.role(name, trust_policy({"AWS": ROOT}), policy=allow_policy("lambda:ListFunctions"))
    user_arn, key = iam.user(name, policy=allow_policy("lambda:ListFunctions"))
    user_sts = _with(server, "sts", key)
    with pytest.raises(ClientError) as exc:
        user_sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1")
    code, status, message = error_of(exc)
    assert (code, status) == ("AccessDenied", 403)
    assert message.startswith(_denied(user_arn, role["Arn"]))

    iam.client.put_user_policy(UserName=name, PolicyName="assume",
                               PolicyDocument=allow_policy("sts:AssumeRole", resource=role["Arn"]))
    creds = user_sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1")["Credentials"]
    assert _with(server, "sts", creds).get_caller_identity()["Arn"] == (
        f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/s1")


def test_a_user_denied_assume_role_gets_sts_own_text(server: Server, iam: Iam, name: str) -> None:
    role = iam.role(name, trust_policy({"AWS": ROOT}))
    user_arn, key = iam.user(name)
    with pytest.raises(ClientError) as exc:
        _with(server, "sts", key).assume_role(RoleArn=role["Arn"], RoleSessionName="s1")
    assert error_of(exc) == ("AccessDenied", 403, _denied(user_arn, role["Arn"]))


def test_a_trust_policy_naming_the_user_needs_no_identity_policy(
        server: Server, iam: Iam, name: str) -> None:
    user_arn, key = iam.user(name)
    role = iam.role(name, trust_policy({"AWS": user_arn}), policy=allow_policy("lambda:ListFunctions"))
    response = _with(server, "sts", key).assume_role(RoleArn=role["Arn"], RoleSessionName="direct")
    assert response["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/direct"
    assert "Functions" in _with(server, "lambda", response["Credentials"]).list_functions()

    other_arn, other_key = iam.user(f"{name}-o", policy=allow_policy("lambda:ListFunctions"))
    with pytest.raises(ClientError) as exc:
        _with(server, "sts", other_key).assume_role(RoleArn=role["Arn"], RoleSessionName="s1")
    assert error_of(exc)[:2] == ("AccessDenied", 403)
    assert error_of(exc)[2].startswith(_denied(other_arn, role["Arn"]))


def test_duration_seconds_is_bounded_by_the_roles_max_session_duration(
        server: Server, sts: Any, iam: Iam, name: str) -> None:
    role = iam.role(name, trust_policy({"AWS": ROOT}), MaxSessionDuration=7200)
    before = datetime.now(timezone.utc)
    creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", DurationSeconds=7200)["Credentials"]
    assert abs(creds["Expiration"] - (before + timedelta(seconds=7200))) < timedelta(minutes=2)

    with pytest.raises(ClientError) as exc:
        sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", DurationSeconds=7201)
    assert error_of(exc) == (
        "ValidationError", 400,
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")

    raw = aws_client(server, "sts", validate=False)
    with pytest.raises(ClientError) as exc:
        raw.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", DurationSeconds=899)
    assert error_of(exc) == (
        "ValidationError", 400,
        "1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy "
        "constraint: Member must have value greater than or equal to 900")


def test_a_trust_policy_can_require_an_external_id(sts: Any, iam: Iam, name: str) -> None:
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "s3cr3t"}}}]})
    role = iam.role(name, trust)
    assert sts.assume_role(RoleArn=role["Arn"], RoleSessionName="okay", ExternalId="s3cr3t")["Credentials"]
    for other in ({}, {"ExternalId": "wrong-one"}):
        with pytest.raises(ClientError) as exc:
            sts.assume_role(RoleArn=role["Arn"], RoleSessionName="nope", **other)
        assert error_of(exc)[:2] == ("AccessDenied", 403)


def test_session_policies_are_refused_rather_than_ignored(sts: Any, iam: Iam, name: str) -> None:
    role = iam.role(name, trust_policy({"AWS": ROOT}))
    narrower = allow_policy("lambda:GetFunction")
    for extra in ({"Policy": narrower}, {"PolicyArns": [{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}]}):
        with pytest.raises(ClientError) as exc:
            sts.assume_role(RoleArn=role["Arn"], RoleSessionName="narrow", **extra)
        assert error_of(exc) == (
            "ValidationError", 400, "Session policies (Policy, PolicyArns) are not supported by Lamina.")
