"""Managed policies through the real boto3: customer-managed and Lamina's AWS-managed ones,
attached to roles and users, and what the attached rights let a key do.

The assertions are AWS's: botocore's model for the shapes (policy documents come back
URL-encoded and botocore hands them over as dicts), IAM's error codes, statuses and messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_compat_support import (
    ACCOUNT,
    Server,
    allow_policy,
    aws_client,
    client_for,
    error_of,
    trust_policy,
    unique_name,
)

BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
TRUST_ACCOUNT = trust_policy({"AWS": f"arn:aws:iam::{ACCOUNT}:root"})


@pytest.fixture(scope="module")
def iam(server: Server) -> Any:
    return aws_client(server, "iam")


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return unique_name(request.node.name)


@pytest.fixture
def policy(iam: Any, name: str) -> Iterator[str]:
    """A customer-managed policy allowing lambda:ListFunctions; deleted (detached first) after."""
    arn = iam.create_policy(PolicyName=f"{name}-p", PolicyDocument=allow_policy("lambda:ListFunctions"),
                            Description="compat")["Policy"]["Arn"]
    yield arn
    for role in iam.list_roles()["Roles"]:
        if any(p["PolicyArn"] == arn for p in iam.list_attached_role_policies(
                RoleName=role["RoleName"])["AttachedPolicies"]):
            iam.detach_role_policy(RoleName=role["RoleName"], PolicyArn=arn)
    iam.delete_policy(PolicyArn=arn)


def _denied(exc: pytest.ExceptionInfo[ClientError]) -> bool:
    """Lambda and IAM answer 403; CloudWatch Logs' JSON protocol sends its refusals with 400."""
    return error_of(exc)[0] in ("AccessDeniedException", "AccessDenied")


def test_create_get_and_version_a_customer_policy(iam: Any, name: str) -> None:
    created = iam.create_policy(PolicyName=name, Path="/team/",
                                PolicyDocument=allow_policy("lambda:GetFunction"),
                                Description="d", Tags=[{"Key": "k", "Value": "v"}])["Policy"]
    arn = f"arn:aws:iam::{ACCOUNT}:policy/team/{name}"
    assert created["Arn"] == arn and created["DefaultVersionId"] == "v1"
    assert created["PolicyId"].startswith("ANPA") and len(created["PolicyId"]) == 20
    got = iam.get_policy(PolicyArn=arn)["Policy"]
    assert (got["AttachmentCount"], got["Description"], got["Tags"]) == (0, "d", [{"Key": "k", "Value": "v"}])
    version = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
    assert version["Document"] == json.loads(allow_policy("lambda:GetFunction"))  # decoded by botocore
    assert version["IsDefaultVersion"] is True
    with pytest.raises(ClientError) as exc:
        iam.create_policy(PolicyName=name.upper(), PolicyDocument=allow_policy("lambda:GetFunction"))
    assert error_of(exc) == ("EntityAlreadyExists", 409,
                             f"A policy called {name.upper()} already exists. Duplicate names are not allowed.")
    for n in range(2, 6):
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=allow_policy(f"lambda:Get{n}"),
                                  SetAsDefault=n == 2)
    with pytest.raises(ClientError) as exc:
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=allow_policy("lambda:X"))
    assert error_of(exc)[:2] == ("LimitExceeded", 409)
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    assert [(v["VersionId"], v["IsDefaultVersion"]) for v in versions][-2:] == [("v2", True), ("v1", False)]
    with pytest.raises(ClientError) as exc:
        iam.delete_policy_version(PolicyArn=arn, VersionId="v2")
    assert error_of(exc) == ("DeleteConflict", 409, "Cannot delete the default version of a policy.")
    for v in ("v1", "v3", "v4", "v5"):
        iam.delete_policy_version(PolicyArn=arn, VersionId=v)
    iam.delete_policy(PolicyArn=arn)
    with pytest.raises(ClientError) as exc:
        iam.get_policy(PolicyArn=arn)
    assert error_of(exc) == ("NoSuchEntity", 404, f"Policy {arn} was not found.")


def test_list_policies_scopes(iam: Any, policy: str, name: str) -> None:
    local = [p["Arn"] for p in iam.get_paginator("list_policies").paginate(Scope="Local").build_full_result()[
        "Policies"]]
    assert policy in local and BASIC not in local
    aws = iam.list_policies(Scope="AWS", PathPrefix="/service-role/")["Policies"]
    assert BASIC in [p["Arn"] for p in aws] and all(p["Path"] == "/service-role/" for p in aws)
    assert policy not in [p["Arn"] for p in iam.list_policies(OnlyAttached=True)["Policies"]]
    paged = iam.get_paginator("list_policies").paginate(PaginationConfig={"PageSize": 2}).build_full_result()
    arns = [p["Arn"] for p in paged["Policies"]]
    assert ADMIN in arns and policy in arns and len(arns) == len(set(arns))


def test_attached_rights_of_a_user_come_and_go(server: Server, iam: Any, policy: str, name: str) -> None:
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    lam = client_for(server, access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"])
    logs = aws_client(server, "logs", key["AccessKeyId"], key["SecretAccessKey"])
    group = f"/compat/{name}"
    try:
        with pytest.raises(ClientError) as exc:
            lam.list_functions()
        assert _denied(exc)
        iam.attach_user_policy(UserName=name, PolicyArn=policy)
        iam.attach_user_policy(UserName=name, PolicyArn=BASIC)
        attached = iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]
        assert attached == [{"PolicyName": f"{name}-p", "PolicyArn": policy},
                            {"PolicyName": "AWSLambdaBasicExecutionRole", "PolicyArn": BASIC}]
        assert iam.get_policy(PolicyArn=policy)["Policy"]["AttachmentCount"] == 1
        assert "Functions" in lam.list_functions()  # the customer policy
        logs.create_log_group(logGroupName=group)  # AWSLambdaBasicExecutionRole
        with pytest.raises(ClientError) as exc:  # nothing more
            lam.get_function(FunctionName="anything")
        assert _denied(exc)
        with pytest.raises(ClientError) as exc:
            logs.describe_log_groups()
        assert _denied(exc)

        with pytest.raises(ClientError) as exc:
            iam.delete_policy(PolicyArn=policy)
        assert error_of(exc) == ("DeleteConflict", 409, "Cannot delete a policy attached to entities.")

        iam.detach_user_policy(UserName=name, PolicyArn=policy)
        with pytest.raises(ClientError) as exc:
            iam.detach_user_policy(UserName=name, PolicyArn=policy)
        assert error_of(exc) == ("NoSuchEntity", 404, f"Policy {policy} was not found.")
        with pytest.raises(ClientError) as exc:
            lam.list_functions()
        assert _denied(exc)
        iam.detach_user_policy(UserName=name, PolicyArn=BASIC)
        with pytest.raises(ClientError) as exc:
            logs.create_log_group(logGroupName=f"{group}-2")
        assert _denied(exc)

        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
        iam.attach_user_policy(UserName=name, PolicyArn=ADMIN)
        with pytest.raises(ClientError) as exc:
            iam.delete_user(UserName=name)
        assert error_of(exc) == ("DeleteConflict", 409, "Cannot delete entity, must detach all policies first.")
    finally:
        for attached_policy in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]:
            iam.detach_user_policy(UserName=name, PolicyArn=attached_policy["PolicyArn"])
        for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
        aws_client(server, "logs").delete_log_group(logGroupName=group)
        iam.delete_user(UserName=name)


def test_attached_rights_of_a_role_session(server: Server, iam: Any, policy: str, name: str) -> None:
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_ACCOUNT)["Role"]
    try:
        ghost = f"arn:aws:iam::{ACCOUNT}:policy/{name}-ghost"
        with pytest.raises(ClientError) as exc:
            iam.attach_role_policy(RoleName=name, PolicyArn=ghost)
        assert error_of(exc) == ("NoSuchEntity", 404, f"Policy {ghost} does not exist or is not attachable.")
        iam.attach_role_policy(RoleName=name, PolicyArn=policy)
        creds = aws_client(server, "sts").assume_role(RoleArn=role["Arn"], RoleSessionName="s1")["Credentials"]
        lam = aws_client(server, "lambda", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
        assert "Functions" in lam.list_functions()
        with pytest.raises(ClientError) as exc:
            iam.delete_role(RoleName=name)
        assert error_of(exc) == ("DeleteConflict", 409, "Cannot delete entity, must detach all policies first.")
        assert iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"] == []
        iam.detach_role_policy(RoleName=name, PolicyArn=policy)
        with pytest.raises(ClientError) as exc:
            lam.list_functions()
        assert _denied(exc)
    finally:
        for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
        iam.delete_role(RoleName=name)


def test_role_and_user_tags(iam: Any, name: str) -> None:
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_ACCOUNT)
    iam.create_user(UserName=name)
    try:
        iam.tag_role(RoleName=name, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
        iam.untag_role(RoleName=name, TagKeys=["a"])
        assert iam.list_role_tags(RoleName=name)["Tags"] == [{"Key": "b", "Value": "2"}]
        assert iam.get_role(RoleName=name)["Role"]["Tags"] == [{"Key": "b", "Value": "2"}]
        iam.tag_user(UserName=name, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
        with pytest.raises(ClientError) as exc:
            iam.tag_user(UserName=name, Tags=[{"Key": "more", "Value": "v"}])
        assert error_of(exc) == ("LimitExceeded", 409, "Cannot exceed quota for TagsPerUser: 50")
        iam.untag_user(UserName=name, TagKeys=[f"k{i}" for i in range(49)])
        assert iam.list_user_tags(UserName=name)["Tags"] == [{"Key": "k49", "Value": "v"}]
        with pytest.raises(ClientError) as exc:
            iam.list_role_tags(RoleName=f"{name}-x")
        assert error_of(exc) == ("NoSuchEntity", 404, f"The role with name {name}-x cannot be found.")
    finally:
        iam.delete_role(RoleName=name)
        iam.delete_user(UserName=name)
