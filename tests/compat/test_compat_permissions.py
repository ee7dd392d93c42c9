"""AddPermission, RemovePermission and GetPolicy through the real boto3: AWS's shapes, statements,
error codes and messages, on functions, versions and aliases."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from test_compat_support import ACCOUNT, Functions, error_of, function_arn

INVOKE = "lambda:InvokeFunction"


def _policy(lam: Any, name: str, **kw: Any) -> tuple[dict[str, Any], str]:
    response = lam.get_policy(FunctionName=name, **kw)
    return json.loads(response["Policy"]), response["RevisionId"]


def test_add_permission_returns_the_statement_and_get_policy_the_document(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    response = lam.add_permission(
        FunctionName=fn_name, StatementId="s3-invoke", Action=INVOKE, Principal="s3.amazonaws.com",
        SourceArn="arn:aws:s3:::my-bucket", SourceAccount=ACCOUNT,
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 201
    statement = json.loads(response["Statement"])
    assert statement == {
        "Sid": "s3-invoke",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": INVOKE,
        "Resource": function_arn(fn_name),
        "Condition": {
            "StringEquals": {"AWS:SourceAccount": ACCOUNT},
            "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::my-bucket"},
        },
    }
    policy, revision = _policy(lam, fn_name)
    assert policy == {"Version": "2012-10-17", "Id": "default", "Statement": [statement]}
    assert revision == lam.get_function(FunctionName=fn_name)["Configuration"]["RevisionId"]


def test_principal_forms(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    expected = {
        "account": ("123456789012", {"AWS": "arn:aws:iam::123456789012:root"}),
        "role": ("arn:aws:iam::123456789012:role/caller", {"AWS": "arn:aws:iam::123456789012:role/caller"}),
        "anyone": ("*", "*"),
    }
    for sid, (principal, _) in expected.items():
        lam.add_permission(FunctionName=fn_name, StatementId=sid, Action="lambda:*", Principal=principal)
    statements = {s["Sid"]: s["Principal"] for s in _policy(lam, fn_name)[0]["Statement"]}
    assert statements == {sid: element for sid, (_, element) in expected.items()}
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn_name, StatementId="bad", Action=INVOKE, Principal="bob")
    assert error_of(exc) == (
        "InvalidParameterValueException", 400,
        "The provided principal was invalid. Please check the principal and try again.",
    )
    with pytest.raises(ClientError) as exc:  # an IAM principal of this account must exist
        lam.add_permission(FunctionName=fn_name, StatementId="ghost", Action=INVOKE,
                           Principal=f"arn:aws:iam::{ACCOUNT}:role/no-such-role")
    assert error_of(exc)[:2] == ("InvalidParameterValueException", 400)


def test_duplicate_statement_id(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    lam.add_permission(FunctionName=fn_name, StatementId="dup", Action=INVOKE, Principal="*")
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn_name, StatementId="dup", Action=INVOKE, Principal="*")
    assert error_of(exc) == (
        "ResourceConflictException", 409,
        "The statement id (dup) provided already exists. Please provide a new statement id, "
        "or remove the existing statement.",
    )


def test_remove_permission(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam.get_policy(FunctionName=fn_name)
    assert error_of(exc) == ("ResourceNotFoundException", 404, "The resource you requested does not exist.")
    lam.add_permission(FunctionName=fn_name, StatementId="a", Action=INVOKE, Principal="*")
    with pytest.raises(ClientError) as exc:
        lam.remove_permission(FunctionName=fn_name, StatementId="b")
    assert error_of(exc) == ("ResourceNotFoundException", 404, "Statement b is not found in resource policy.")
    response = lam.remove_permission(FunctionName=fn_name, StatementId="a")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        lam.get_policy(FunctionName=fn_name)
    assert error_of(exc)[0] == "ResourceNotFoundException"


def test_latest_is_not_a_policy_resource(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn_name, StatementId="s", Action=INVOKE, Principal="*",
                           Qualifier="$LATEST")
    assert error_of(exc) == (
        "InvalidParameterValueException", 400, "We currently do not support adding policies for $LATEST."
    )


def test_versions_and_aliases_have_their_own_policies(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Publish=True)
    alias = lam.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")
    on_version = json.loads(lam.add_permission(
        FunctionName=fn_name, StatementId="s", Action=INVOKE, Principal="*", Qualifier="1")["Statement"])
    on_alias = json.loads(lam.add_permission(
        FunctionName=f"{fn_name}:live", StatementId="s", Action=INVOKE, Principal="*")["Statement"])
    assert on_version["Resource"] == function_arn(fn_name, "1")
    assert on_alias["Resource"] == function_arn(fn_name, "live")
    _, revision = _policy(lam, fn_name, Qualifier="live")
    assert revision == lam.get_alias(FunctionName=fn_name, Name="live")["RevisionId"] != alias["RevisionId"]
    with pytest.raises(ClientError) as exc:
        lam.get_policy(FunctionName=fn_name)
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn_name, StatementId="s", Action=INVOKE, Principal="*", Qualifier="9")
    assert error_of(exc) == ("ResourceNotFoundException", 404, f"Function not found: {function_arn(fn_name, '9')}")


def test_deleted_alias_takes_its_policy_along(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Publish=True)
    lam.create_alias(FunctionName=fn_name, Name="gone", FunctionVersion="1")
    lam.add_permission(FunctionName=fn_name, StatementId="s", Action=INVOKE, Principal="*", Qualifier="gone")
    lam.delete_alias(FunctionName=fn_name, Name="gone")
    lam.create_alias(FunctionName=fn_name, Name="gone", FunctionVersion="1")
    with pytest.raises(ClientError) as exc:
        lam.get_policy(FunctionName=fn_name, Qualifier="gone")
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)


def test_stale_revision_id(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    revision = lam.get_function(FunctionName=fn_name)["Configuration"]["RevisionId"]
    lam.add_permission(FunctionName=fn_name, StatementId="a", Action=INVOKE, Principal="*", RevisionId=revision)
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn_name, StatementId="b", Action=INVOKE, Principal="*",
                           RevisionId=revision)
    code, status, message = error_of(exc)
    assert (code, status) == ("PreconditionFailedException", 412)
    assert message.startswith("The Revision Id provided does not match the latest Revision Id.")
    with pytest.raises(ClientError) as exc:
        lam.remove_permission(FunctionName=fn_name, StatementId="a", RevisionId=revision)
    assert error_of(exc)[0] == "PreconditionFailedException"
    lam.remove_permission(FunctionName=fn_name, StatementId="a", RevisionId=_policy(lam, fn_name)[1])


def test_policy_size_limit(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    source = "arn:aws:s3:::" + "b" * 2000
    with pytest.raises(lam.exceptions.PolicyLengthExceededException) as exc:
        for i in range(20):
            lam.add_permission(FunctionName=fn_name, StatementId=f"s{i}", Action=INVOKE,
                               Principal="s3.amazonaws.com", SourceArn=source)
    code, status, message = error_of(exc)
    assert (code, status) == ("PolicyLengthExceededException", 400)
    assert message.endswith("is bigger than the limit (20480).")


def test_missing_function(lam: Any, fn_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn_name, StatementId="s", Action=INVOKE, Principal="*")
    assert error_of(exc) == ("ResourceNotFoundException", 404, f"Function not found: {function_arn(fn_name)}")


def test_action_must_match_the_model(lam_raw: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam_raw.add_permission(FunctionName=fn_name, StatementId="s", Action="InvokeFunction", Principal="*")
    assert error_of(exc)[:2] == ("ValidationException", 400)
