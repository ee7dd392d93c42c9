"""ARN building and the resolution of FunctionName (+ Qualifier) into a FunctionRef."""

from __future__ import annotations

import pytest

from lamina.control import arns
from lamina.control.arns import FunctionRef, LayerVersionRef
from lamina.errors import AccessDenied, InvalidParameterValue, ResourceNotFound, ValidationError

REGION = "us-east-1"
ACCOUNT = "123456789012"
FULL = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"


def parse(
    ref: str, qualifier: str | None = None, *, namespaced: bool = False,
    caller: str | None = None, action: str | None = None,
) -> FunctionRef:
    return arns.parse_function_ref(
        ref, qualifier, region=REGION, account=ACCOUNT, namespaced=namespaced,
        caller=caller, action=action,
    )


def test_builders() -> None:
    assert arns.function_arn(REGION, ACCOUNT, "fn") == f"{FULL}:fn"
    assert arns.function_arn(REGION, ACCOUNT, "fn", "$LATEST") == f"{FULL}:fn:$LATEST"
    assert arns.function_arn(REGION, ACCOUNT, "fn", "prod") == f"{FULL}:fn:prod"
    assert arns.layer_arn(REGION, ACCOUNT, "deps") == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:deps"
    )
    assert arns.layer_version_arn(REGION, ACCOUNT, "deps", 3) == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:deps:3"
    )


@pytest.mark.parametrize(
    ("ref", "qualifier", "expected"),
    [
        ("fn", None, FunctionRef("fn", None)),
        ("fn", "", FunctionRef("fn", None)),
        ("fn", "prod", FunctionRef("fn", "prod")),
        ("fn:prod", None, FunctionRef("fn", "prod")),
        ("fn:prod", "prod", FunctionRef("fn", "prod")),
        ("fn:$LATEST", None, FunctionRef("fn", "$LATEST")),
        (f"{ACCOUNT}:function:fn", None, FunctionRef("fn", None)),
        (f"{ACCOUNT}:function:fn:3", None, FunctionRef("fn", "3")),
        (f"{ACCOUNT}:function:fn", "3", FunctionRef("fn", "3")),
        (f"{FULL}:fn", None, FunctionRef("fn", None)),
        (f"{FULL}:fn:7", None, FunctionRef("fn", "7")),
        (f"{FULL}:fn:7", "7", FunctionRef("fn", "7")),
        (f"{FULL}:my-Fn_2:live", None, FunctionRef("my-Fn_2", "live")),
        (f"{FULL}:fn", "$LATEST", FunctionRef("fn", "$LATEST")),
    ],
)
def test_accepted_forms(ref: str, qualifier: str | None, expected: FunctionRef) -> None:
    assert parse(ref, qualifier) == expected


def test_namespaced_forms() -> None:
    assert parse("my.fn:$LATEST.PUBLISHED", namespaced=True) == (
        FunctionRef("my.fn", "$LATEST.PUBLISHED")
    )
    with pytest.raises(ValidationError):
        parse("my.fn")


def test_qualifier_mismatch() -> None:
    with pytest.raises(InvalidParameterValue) as info:
        parse(f"{FULL}:fn:1", "2")
    assert info.value.message == (
        "The derived qualifier from the function name does not match the specified qualifier."
    )
    with pytest.raises(InvalidParameterValue):
        parse("fn:prod", "$LATEST")


def test_other_region() -> None:
    with pytest.raises(ResourceNotFound) as info:
        parse(f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:fn")
    assert info.value.message == (
        "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')"
    )
    assert info.value.status == 404


def test_other_account() -> None:
    other = f"arn:aws:lambda:{REGION}:210987654321:function:fn"
    with pytest.raises(AccessDenied) as info:
        parse(other, caller="arn:aws:iam::123456789012:user/dev", action="lambda:GetFunction")
    assert info.value.message == (
        "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: "
        f"lambda:GetFunction on resource: {other}"
    )
    with pytest.raises(AccessDenied, match="another account"):
        parse("210987654321:function:fn")


def test_invalid_ref_and_qualifier_are_counted_together() -> None:
    with pytest.raises(ValidationError) as info:
        parse("x y", "a b")
    assert info.value.message.startswith(
        "2 validation errors detected: Value 'x y' at 'functionName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: "
    )
    assert "; Value 'a b' at 'qualifier' failed to satisfy constraint" in info.value.message


@pytest.mark.parametrize("ref", ["", "arn:aws:lambda:us-east-1:123:function:fn", "fn:a:b",
                                 f"{FULL}:fn:pro d", "a" * 141])
def test_invalid_refs(ref: str) -> None:
    with pytest.raises(ValidationError):
        parse(ref)


@pytest.mark.parametrize(
    ("qualifier", "version", "latest"),
    [("$LATEST", True, True), ("1", True, False), ("42", True, False), ("prod", False, False),
     ("v1", False, False), (None, False, False), ("١", False, False)],
)
def test_qualifier_helpers(qualifier: str | None, version: bool, latest: bool) -> None:
    assert arns.is_version(qualifier) is version
    assert arns.is_latest(qualifier) is latest


def test_parse_layer_version_arn() -> None:
    arn = arns.layer_version_arn(REGION, ACCOUNT, "deps", 12)
    assert arns.parse_layer_version_arn(arn) == LayerVersionRef(REGION, ACCOUNT, "deps", 12)
    assert arns.parse_layer_version_arn(arns.layer_arn(REGION, ACCOUNT, "deps")) is None
    assert arns.parse_layer_version_arn("deps:12") is None
