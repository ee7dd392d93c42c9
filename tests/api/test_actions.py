"""Which IAM action and resource each request needs."""

from __future__ import annotations

import pytest

from lamina.api.actions import Access, iam_access, lambda_access, logs_access, sts_access
from lamina.control.arns import FunctionRef, parse_function_ref

REGION, ACCOUNT = "us-east-1", "000000000000"
FN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"


def resolve(name: str, qualifier: str | None) -> FunctionRef:
    return parse_function_ref(name, qualifier, region=REGION, account=ACCOUNT)


def test_invoke_is_invoke_function_on_the_qualified_arn() -> None:
    assert lambda_access("Invoke", {"FunctionName": "f", "Qualifier": "live"}, REGION, ACCOUNT, resolve) == [
        Access("lambda:InvokeFunction", f"{FN}:f:live", FunctionRef("f", "live"))
    ]
    assert lambda_access("Invoke", {"FunctionName": f"{FN}:f:3"}, REGION, ACCOUNT, resolve)[0].resource == f"{FN}:f:3"
    assert lambda_access("InvokeAsync", {"FunctionName": "f"}, REGION, ACCOUNT, resolve)[0].action == "lambda:InvokeAsync"


def test_alias_calls_are_authorized_on_the_function() -> None:
    (access,) = lambda_access("GetAlias", {"FunctionName": "f", "Name": "live"}, REGION, ACCOUNT, resolve)
    assert (access.action, access.resource, access.function) == ("lambda:GetAlias", f"{FN}:f", FunctionRef("f"))


def test_create_function_also_needs_pass_role() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/lambda-role"
    accesses = lambda_access("CreateFunction", {"FunctionName": "f", "Role": role}, REGION, ACCOUNT, resolve)
    assert [(a.action, a.resource) for a in accesses] == [
        ("lambda:CreateFunction", f"{FN}:f"), ("iam:PassRole", role)
    ]
    layer = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:l:3"
    accesses = lambda_access("UpdateFunctionConfiguration", {"FunctionName": "f", "Layers": [layer]},
                             REGION, ACCOUNT, resolve)
    assert [(a.action, a.resource) for a in accesses] == [
        ("lambda:UpdateFunctionConfiguration", f"{FN}:f"), ("lambda:GetLayerVersion", layer)
    ]


@pytest.mark.parametrize(
    ("op", "params", "action", "resource"),
    [
        ("ListFunctions", {}, "lambda:ListFunctions", "*"),
        ("GetAccountSettings", {}, "lambda:GetAccountSettings", "*"),
        ("TagResource", {"Resource": f"{FN}:f", "Tags": {}}, "lambda:TagResource", f"{FN}:f"),
        ("PublishLayerVersion", {"LayerName": "l"}, "lambda:PublishLayerVersion",
         f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:l"),
        ("GetLayerVersion", {"LayerName": "l", "VersionNumber": 2}, "lambda:GetLayerVersion",
         f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:l:2"),
        ("GetLayerVersionByArn", {"Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:l:2"}, "lambda:GetLayerVersion",
         f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:l:2"),
    ],
)  # fmt: skip
def test_lambda_resources(op: str, params: dict[str, object], action: str, resource: str) -> None:
    (access,) = lambda_access(op, params, REGION, ACCOUNT, resolve)
    assert (access.action, access.resource) == (action, resource)


def test_logs_resources() -> None:
    base = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
    assert logs_access("PutLogEvents", {"logGroupName": "g", "logStreamName": "s"}, REGION, ACCOUNT) == [
        Access("logs:PutLogEvents", f"{base}g:log-stream:s")
    ]
    assert logs_access("CreateLogGroup", {"logGroupName": "g"}, REGION, ACCOUNT)[0].resource == f"{base}g:*"
    assert logs_access("DescribeLogGroups", {}, REGION, ACCOUNT)[0].resource == f"{base}*"


def test_iam_and_sts_resources() -> None:
    caller = f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert iam_access("GetRole", {"RoleName": "r"}, ACCOUNT, caller) == [
        Access("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/r")
    ]
    assert iam_access("ListAccessKeys", {}, ACCOUNT, caller) == [Access("iam:ListAccessKeys", caller)]
    assert iam_access("ListRoles", {}, ACCOUNT, caller)[0].resource == f"arn:aws:iam::{ACCOUNT}:role/"
    role = f"arn:aws:iam::{ACCOUNT}:role/r"
    assert sts_access("AssumeRole", {"RoleArn": role, "RoleSessionName": "s"}) == [
        Access("sts:AssumeRole", role, role=role)
    ]
    assert sts_access("GetCallerIdentity", {}) == []
    policy = f"arn:aws:iam::{ACCOUNT}:policy/team/p"
    assert iam_access("GetPolicy", {"PolicyArn": policy}, ACCOUNT, caller) == [Access("iam:GetPolicy", policy)]
    assert iam_access("CreatePolicy", {"PolicyName": "p", "Path": "/team/"}, ACCOUNT, caller)[0].resource == policy


def test_attaching_a_policy_is_authorized_on_the_user_or_role() -> None:
    caller = f"arn:aws:iam::{ACCOUNT}:user/alice"
    admin_policy = "arn:aws:iam::aws:policy/AdministratorAccess"
    assert iam_access("AttachUserPolicy", {"UserName": "alice", "PolicyArn": admin_policy}, ACCOUNT, caller) == [
        Access("iam:AttachUserPolicy", caller)
    ]
    assert iam_access("DetachRolePolicy", {"RoleName": "r", "PolicyArn": admin_policy}, ACCOUNT, caller) == [
        Access("iam:DetachRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/r")
    ]


def test_creating_a_role_or_user_is_authorized_on_its_arn_with_the_path() -> None:
    caller = f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert iam_access("CreateRole", {"RoleName": "x", "Path": "/admin/"}, ACCOUNT, caller)[0].resource == (
        f"arn:aws:iam::{ACCOUNT}:role/admin/x")
    assert iam_access("CreateUser", {"UserName": "bob"}, ACCOUNT, caller)[0].resource == (
        f"arn:aws:iam::{ACCOUNT}:user/bob")


def test_paging_moves_forward_whatever_the_order() -> None:
    from lamina.api.iam_shapes import paginate

    items = ["c", "A", "b"]
    first, marker = paginate(items, str, {"MaxItems": 2})
    assert (first, marker) == (["A", "b"], "c")
    second, end = paginate(items, str, {"MaxItems": 2, "Marker": marker})
    assert (second, end) == (["c"], None)

