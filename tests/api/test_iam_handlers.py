"""IAM and STS handlers: parameters in, IAM's and STS's output shapes out."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from lamina.api.app import RequestContext
from lamina.api.iam_api import IamHandlers
from lamina.api.sigv4 import Identity
from lamina.api.sts_api import StsHandlers
from lamina.control.model import AccessKey
from lamina.errors import IamError
from lamina.iam.credentials import Credentials
from lamina.iam.directory import Directory
from lamina.store.sqlite import SqliteMetadataStore

ACCT = "111122223333"
ROOT = f"arn:aws:iam::{ACCT}:root"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class PlainCipher:
    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return plaintext

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        return blob


def _trust(principal: dict[str, Any], effect: str = "Allow") -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": effect, "Principal": principal, "Action": "sts:AssumeRole"}],
        }
    )


POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}]}
)


class Api:
    def __init__(self, tmp_path: Path) -> None:
        store = SqliteMetadataStore(tmp_path / "db", PlainCipher())
        with store.transaction() as tx:
            tx.put_access_key(AccessKey("AKIAROOT", "s", ROOT, "2024-01-31T12:34:56.789+0000"))
        self.directory = Directory(store, ACCT, lambda: T0)
        self.credentials = Credentials(store, ACCT, lambda: T0)
        self.handlers = {
            **IamHandlers(self.directory).handlers(),
            **StsHandlers(self.directory, self.credentials).handlers(),
        }

    def call(self, op: str, params: dict[str, Any] | None = None, principal: str = ROOT) -> Any:
        identity = Identity("AKIAX", principal, "iam", "us-east-1", False)
        ctx = RequestContext("req-1", identity, "http://127.0.0.1", {})
        async def run() -> Any:
            return await self.handlers[op](ctx, params or {})

        return asyncio.run(run())


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path)


def test_role_operations_in_output_shapes(api: Api) -> None:
    trust = _trust({"Service": "lambda.amazonaws.com"})
    out = api.call(
        "CreateRole",
        {
            "RoleName": "R",
            "AssumeRolePolicyDocument": trust,
            "Tags": [{"Key": "k", "Value": "v"}],
            "Description": "d",
        },
    )
    role = out["Role"]
    assert role["RoleName"] == "R" and role["Path"] == "/" and role["Arn"] == f"arn:aws:iam::{ACCT}:role/R"
    assert role["RoleId"].startswith("AROA") and role["CreateDate"] == T0
    assert role["MaxSessionDuration"] == 3600 and role["Description"] == "d"
    assert role["Tags"] == [{"Key": "k", "Value": "v"}]
    assert "%7B" in role["AssumeRolePolicyDocument"] and unquote(role["AssumeRolePolicyDocument"]) == trust
    assert api.call("GetRole", {"RoleName": "R"}) == out
    assert api.call("PutRolePolicy", {"RoleName": "R", "PolicyName": "p", "PolicyDocument": POLICY}) is None
    got = api.call("GetRolePolicy", {"RoleName": "r", "PolicyName": "p"})
    assert got == {"RoleName": "R", "PolicyName": "p", "PolicyDocument": quote(POLICY, safe="")}
    assert api.call("ListRolePolicies", {"RoleName": "R"}) == {"PolicyNames": ["p"], "IsTruncated": False}
    with pytest.raises(IamError) as exc:
        api.call("DeleteRole", {"RoleName": "R"})
    assert exc.value.code == "DeleteConflict"
    api.call("DeleteRolePolicy", {"RoleName": "R", "PolicyName": "p"})
    api.call("DeleteRole", {"RoleName": "R"})
    assert api.call("ListRoles") == {"Roles": [], "IsTruncated": False}


def test_list_roles_pages_with_marker(api: Api) -> None:
    for name in ["c", "a", "b"]:
        api.call(
            "CreateRole",
            {
                "RoleName": name,
                "AssumeRolePolicyDocument": _trust({"Service": "x.amazonaws.com"}),
                "Tags": [{"Key": "k", "Value": "v"}],
            },
        )
    first = api.call("ListRoles", {"MaxItems": 2})
    assert [r["RoleName"] for r in first["Roles"]] == ["a", "b"] and first["IsTruncated"] is True
    assert "Tags" not in first["Roles"][0]  # ListRoles does not return tags
    rest = api.call("ListRoles", {"MaxItems": 2, "Marker": first["Marker"]})
    assert [r["RoleName"] for r in rest["Roles"]] == ["c"] and rest["IsTruncated"] is False
    assert "Marker" not in rest


def test_users_and_access_keys(api: Api) -> None:
    user = api.call("CreateUser", {"UserName": "alice"})["User"]
    assert user["UserId"].startswith("AIDA") and user["Arn"] == f"arn:aws:iam::{ACCT}:user/alice"
    alice = user["Arn"]
    assert api.call("GetUser", principal=alice) == {"User": user}
    created = api.call("CreateAccessKey", principal=alice)["AccessKey"]
    assert created["UserName"] == "alice" and created["Status"] == "Active"
    assert len(created["SecretAccessKey"]) == 40 and created["CreateDate"] == T0
    listed = api.call("ListAccessKeys", {"UserName": "alice"})
    assert listed == {
        "AccessKeyMetadata": [
            {"AccessKeyId": created["AccessKeyId"], "Status": "Active", "CreateDate": T0, "UserName": "alice"}
        ],
        "IsTruncated": False,
    }
    api.call(
        "UpdateAccessKey", {"AccessKeyId": created["AccessKeyId"], "Status": "Inactive"}, principal=alice
    )
    assert api.call("ListAccessKeys", principal=alice)["AccessKeyMetadata"][0]["Status"] == "Inactive"
    api.call("PutUserPolicy", {"UserName": "alice", "PolicyName": "p", "PolicyDocument": POLICY})
    assert (
        unquote(api.call("GetUserPolicy", {"UserName": "alice", "PolicyName": "p"})["PolicyDocument"])
        == POLICY
    )
    assert api.call("ListUserPolicies", {"UserName": "alice"})["PolicyNames"] == ["p"]
    assert [u["UserName"] for u in api.call("ListUsers")["Users"]] == ["alice"]
    api.call("DeleteAccessKey", {"UserName": "alice", "AccessKeyId": created["AccessKeyId"]})
    api.call("DeleteUserPolicy", {"UserName": "alice", "PolicyName": "p"})
    api.call("DeleteUser", {"UserName": "alice"})
    assert api.call("ListUsers")["Users"] == []


def test_get_user_for_root_and_for_sessions(api: Api) -> None:
    assert api.call("GetUser") == {
        "User": {
            "UserId": ACCT,
            "Arn": ROOT,
            "CreateDate": datetime(2024, 1, 31, 12, 34, 56, 789000, tzinfo=timezone.utc),
        }
    }
    with pytest.raises(IamError) as exc:
        api.call("GetUser", principal=f"arn:aws:sts::{ACCT}:assumed-role/R/s")
    assert (exc.value.code, str(exc.value)) == (
        "ValidationError",
        "Must specify userName when calling with non-User credentials",
    )


def test_assume_role_and_caller_identity(api: Api) -> None:
    alice = api.call("CreateUser", {"UserName": "alice"})["User"]
    role = api.call(
        "CreateRole",
        {
            "RoleName": "R",
            "AssumeRolePolicyDocument": _trust({"AWS": alice["Arn"]}),
            "MaxSessionDuration": 7200,
        },
    )["Role"]
    out = api.call(
        "AssumeRole",
        {"RoleArn": role["Arn"], "RoleSessionName": "s1", "DurationSeconds": 7200},
        principal=alice["Arn"],
    )
    creds = out["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and creds["SessionToken"]
    assert creds["Expiration"] == datetime(2024, 5, 1, 14, 0, tzinfo=timezone.utc)
    session = f"arn:aws:sts::{ACCT}:assumed-role/R/s1"
    assert out["AssumedRoleUser"] == {"AssumedRoleId": f"{role['RoleId']}:s1", "Arn": session}
    with api.credentials.store.transaction() as tx:
        stored = tx.get_access_key(creds["AccessKeyId"])
    assert stored is not None and stored.principal_arn == session

    assert api.call("GetCallerIdentity") == {"UserId": ACCT, "Account": ACCT, "Arn": ROOT}
    assert api.call("GetCallerIdentity", principal=alice["Arn"])["UserId"] == alice["UserId"]
    assert api.call("GetCallerIdentity", principal=session)["UserId"] == f"{role['RoleId']}:s1"


def test_assume_role_refusals(api: Api) -> None:
    alice = api.call("CreateUser", {"UserName": "alice"})["User"]["Arn"]
    bob = api.call("CreateUser", {"UserName": "bob"})["User"]["Arn"]
    arn = api.call("CreateRole", {"RoleName": "R", "AssumeRolePolicyDocument": _trust({"AWS": alice})})[
        "Role"
    ]["Arn"]

    with pytest.raises(IamError) as exc:
        api.call("AssumeRole", {"RoleArn": arn, "RoleSessionName": "s"}, principal=bob)
    assert (exc.value.code, exc.value.status) == ("AccessDenied", 403)
    assert str(exc.value) == f"User: {bob} is not authorized to perform: sts:AssumeRole on resource: {arn}"
    missing = f"arn:aws:iam::{ACCT}:role/none"
    with pytest.raises(IamError) as exc:
        api.call("AssumeRole", {"RoleArn": missing, "RoleSessionName": "s"}, principal=alice)
    assert exc.value.code == "AccessDenied"
    with pytest.raises(IamError) as exc:
        api.call(
            "AssumeRole", {"RoleArn": arn, "RoleSessionName": "s", "DurationSeconds": 3601}, principal=alice
        )
    assert str(exc.value) == "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."


def test_account_principal_delegates_but_deny_wins(api: Api) -> None:
    alice = api.call("CreateUser", {"UserName": "alice"})["User"]["Arn"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": "sts:AssumeRole"},
        {"Effect": "Deny", "Principal": {"AWS": alice}, "Action": "sts:AssumeRole"},
    ]})  # fmt: skip
    arn = api.call("CreateRole", {"RoleName": "R", "AssumeRolePolicyDocument": trust})["Role"]["Arn"]
    bob = api.call("CreateUser", {"UserName": "bob"})["User"]["Arn"]
    assert api.call("AssumeRole", {"RoleArn": arn, "RoleSessionName": "s"}, principal=bob)["Credentials"]
    with pytest.raises(IamError) as exc:
        api.call("AssumeRole", {"RoleArn": arn, "RoleSessionName": "s"}, principal=alice)
    assert exc.value.code == "AccessDenied"


# managed policies and tags (iam_policies_api)

BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


def _serializes(op: str, result: Any) -> bytes:
    """The result fits botocore's output shape: the query serializer writes it."""
    from lamina.api.query import QueryModel

    return QueryModel.load("iam", "2010-05-08").serialize(op, result, "req-1")


def test_managed_policy_shapes_versions_and_attachments(api: Api) -> None:
    api.call("CreateRole", {"RoleName": "R", "AssumeRolePolicyDocument": _trust({"Service": "x.amazonaws.com"})})
    out = api.call("CreatePolicy", {"PolicyName": "P", "Path": "/t/", "PolicyDocument": POLICY,
                                    "Description": "d", "Tags": [{"Key": "k", "Value": "v"}]})
    policy = out["Policy"]
    arn = f"arn:aws:iam::{ACCT}:policy/t/P"
    assert policy["Arn"] == arn and policy["DefaultVersionId"] == "v1" and policy["AttachmentCount"] == 0
    assert policy["PolicyId"].startswith("ANPA") and policy["IsAttachable"] is True
    assert policy["CreateDate"] == T0 and policy["Tags"] == [{"Key": "k", "Value": "v"}]
    assert b"<PolicyName>P</PolicyName>" in _serializes("CreatePolicy", out)
    api.call("AttachRolePolicy", {"RoleName": "r", "PolicyArn": arn})
    api.call("AttachRolePolicy", {"RoleName": "R", "PolicyArn": BASIC})
    got = api.call("GetPolicy", {"PolicyArn": arn})
    assert got["Policy"]["AttachmentCount"] == 1 and got["Policy"]["Description"] == "d"
    attached = api.call("ListAttachedRolePolicies", {"RoleName": "R", "MaxItems": 1})
    assert attached["AttachedPolicies"] == [{"PolicyName": "P", "PolicyArn": arn}]
    rest = api.call("ListAttachedRolePolicies", {"RoleName": "R", "Marker": attached["Marker"]})
    assert rest == {"AttachedPolicies": [{"PolicyName": "AWSLambdaBasicExecutionRole", "PolicyArn": BASIC}],
                    "IsTruncated": False}
    version = api.call("GetPolicyVersion", {"PolicyArn": arn, "VersionId": "v1"})["PolicyVersion"]
    assert version == {"VersionId": "v1", "IsDefaultVersion": True, "CreateDate": T0,
                       "Document": quote(POLICY, safe="")}
    assert b"<IsDefaultVersion>true</IsDefaultVersion>" in _serializes(
        "GetPolicyVersion", {"PolicyVersion": version})
    created = api.call("CreatePolicyVersion", {"PolicyArn": arn, "PolicyDocument": POLICY, "SetAsDefault": True})
    assert created["PolicyVersion"]["VersionId"] == "v2" and created["PolicyVersion"]["IsDefaultVersion"]
    versions = api.call("ListPolicyVersions", {"PolicyArn": arn})["Versions"]
    assert [(v["VersionId"], v["IsDefaultVersion"]) for v in versions] == [("v2", True), ("v1", False)]
    api.call("SetDefaultPolicyVersion", {"PolicyArn": arn, "VersionId": "v1"})
    api.call("DeletePolicyVersion", {"PolicyArn": arn, "VersionId": "v2"})
    with pytest.raises(IamError) as exc:
        api.call("DeletePolicy", {"PolicyArn": arn})
    assert (exc.value.code, str(exc.value)) == ("DeleteConflict", "Cannot delete a policy attached to entities.")
    api.call("DetachRolePolicy", {"RoleName": "R", "PolicyArn": arn})
    with pytest.raises(IamError) as exc:
        api.call("DetachRolePolicy", {"RoleName": "R", "PolicyArn": arn})
    assert str(exc.value) == f"Policy {arn} was not found."
    api.call("DeletePolicy", {"PolicyArn": arn})


def test_list_policies_scopes_and_pages(api: Api) -> None:
    api.call("CreateUser", {"UserName": "u"})
    mine = api.call("CreatePolicy", {"PolicyName": "Mine", "PolicyDocument": POLICY})["Policy"]["Arn"]
    local = api.call("ListPolicies", {"Scope": "Local"})
    assert [p["Arn"] for p in local["Policies"]] == [mine] and local["IsTruncated"] is False
    assert "Description" not in local["Policies"][0] and "Tags" not in local["Policies"][0]
    aws = [p["Arn"] for p in api.call("ListPolicies", {"Scope": "AWS"})["Policies"]]
    assert BASIC in aws and mine not in aws
    first = api.call("ListPolicies", {"MaxItems": 2})
    pages = [p["Arn"] for p in first["Policies"]]
    marker = first["Marker"]
    while marker:
        page = api.call("ListPolicies", {"MaxItems": 2, "Marker": marker})
        pages += [p["Arn"] for p in page["Policies"]]
        marker = page.get("Marker")
    assert pages == aws + [mine]
    api.call("AttachUserPolicy", {"UserName": "u", "PolicyArn": mine})
    attached = api.call("ListPolicies", {"OnlyAttached": True})["Policies"]
    assert [(p["Arn"], p["AttachmentCount"]) for p in attached] == [(mine, 1)]
    assert _serializes("ListPolicies", {"Policies": attached, "IsTruncated": False}).count(b"<member>") == 1
    assert api.call("ListAttachedUserPolicies", {"UserName": "u"})["AttachedPolicies"] == [
        {"PolicyName": "Mine", "PolicyArn": mine}]
    with pytest.raises(IamError) as exc:
        api.call("DeleteUser", {"UserName": "u"})
    assert str(exc.value) == "Cannot delete entity, must detach all policies first."
    api.call("DetachUserPolicy", {"UserName": "u", "PolicyArn": mine})
    api.call("DeleteUser", {"UserName": "u"})


def test_role_and_user_tags_and_instance_profiles(api: Api) -> None:
    api.call("CreateRole", {"RoleName": "R", "AssumeRolePolicyDocument": _trust({"Service": "x.amazonaws.com"})})
    api.call("CreateUser", {"UserName": "u"})
    api.call("TagRole", {"RoleName": "R", "Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]})
    api.call("UntagRole", {"RoleName": "R", "TagKeys": ["a"]})
    assert api.call("ListRoleTags", {"RoleName": "R"}) == {"Tags": [{"Key": "b", "Value": "2"}], "IsTruncated": False}
    assert api.call("GetRole", {"RoleName": "R"})["Role"]["Tags"] == [{"Key": "b", "Value": "2"}]
    api.call("TagUser", {"UserName": "u", "Tags": [{"Key": "x", "Value": ""}]})
    assert api.call("ListUserTags", {"UserName": "u"})["Tags"] == [{"Key": "x", "Value": ""}]
    api.call("UntagUser", {"UserName": "u", "TagKeys": ["x"]})
    assert api.call("ListUserTags", {"UserName": "u"}) == {"Tags": [], "IsTruncated": False}
    out = api.call("ListInstanceProfilesForRole", {"RoleName": "R"})
    assert out == {"InstanceProfiles": [], "IsTruncated": False}
    assert b"<InstanceProfiles" in _serializes("ListInstanceProfilesForRole", out)
    with pytest.raises(IamError) as exc:
        api.call("ListInstanceProfilesForRole", {"RoleName": "nope"})
    assert exc.value.code == "NoSuchEntity"
