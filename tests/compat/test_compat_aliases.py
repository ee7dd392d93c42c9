"""CreateAlias, GetAlias, UpdateAlias, DeleteAlias, ListAliases; resolving through an alias."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from test_compat_support import Functions, error_of, function_arn, make_zip, wait_updated


def _two_versions(lam: Any, functions: Functions, name: str) -> None:
    functions.create(name, Publish=True)
    lam.update_function_code(FunctionName=name,
                             ZipFile=make_zip({"index.py": "def handler(e, c):\n    return 2\n"}))
    wait_updated(lam, name)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"


def test_alias_lifecycle(lam: Any, functions: Functions, fn_name: str) -> None:
    _two_versions(lam, functions, fn_name)

    created = lam.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1",
                               Description="production")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == function_arn(fn_name, "live")
    assert (created["Name"], created["FunctionVersion"], created["Description"]) == (
        "live", "1", "production")
    assert created["RevisionId"]

    got = lam.get_alias(FunctionName=fn_name, Name="live")
    assert {k: got[k] for k in ("AliasArn", "Name", "FunctionVersion", "Description")} == {
        k: created[k] for k in ("AliasArn", "Name", "FunctionVersion", "Description")}

    updated = lam.update_alias(
        FunctionName=fn_name, Name="live", FunctionVersion="2",
        RoutingConfig={"AdditionalVersionWeights": {"1": 0.25}})
    assert updated["FunctionVersion"] == "2"
    assert updated["RoutingConfig"] == {"AdditionalVersionWeights": {"1": 0.25}}
    assert updated["RevisionId"] != created["RevisionId"]
    got = lam.get_alias(FunctionName=fn_name, Name="live")
    assert got["RoutingConfig"] == {"AdditionalVersionWeights": {"1": 0.25}}
    assert got["Description"] == "production"

    deleted = lam.delete_alias(FunctionName=fn_name, Name="live")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        lam.get_alias(FunctionName=fn_name, Name="live")
    assert error_of(exc) == ("ResourceNotFoundException", 404,
                             f"Cannot find alias arn: {function_arn(fn_name, 'live')}")


def test_list_aliases_with_function_version_filter(lam: Any, functions: Functions,
                                                   fn_name: str) -> None:
    _two_versions(lam, functions, fn_name)
    lam.create_alias(FunctionName=fn_name, Name="blue", FunctionVersion="1")
    lam.create_alias(FunctionName=fn_name, Name="green", FunctionVersion="2")
    lam.create_alias(FunctionName=fn_name, Name="dev", FunctionVersion="$LATEST")

    everything = lam.list_aliases(FunctionName=fn_name)["Aliases"]
    assert sorted(a["Name"] for a in everything) == ["blue", "dev", "green"]
    only_two = lam.list_aliases(FunctionName=fn_name, FunctionVersion="2")["Aliases"]
    assert [(a["Name"], a["AliasArn"]) for a in only_two] == [
        ("green", function_arn(fn_name, "green"))]


def test_alias_resolves_to_its_version(lam: Any, functions: Functions, fn_name: str) -> None:
    _two_versions(lam, functions, fn_name)
    lam.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")

    config = lam.get_function_configuration(FunctionName=fn_name, Qualifier="live")
    assert config["Version"] == "1"
    assert config["FunctionArn"] == function_arn(fn_name, "live")
    assert lam.get_function(FunctionName=f"{fn_name}:live")["Configuration"]["Version"] == "1"


def test_alias_to_a_missing_version_is_404(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="9")
    assert error_of(exc) == ("ResourceNotFoundException", 404,
                             f"Function not found: {function_arn(fn_name, '9')}")


def test_alias_on_a_missing_function_is_404(lam: Any, fn_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        lam.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)


def test_duplicate_alias_is_a_conflict(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Publish=True)
    lam.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")
    with pytest.raises(ClientError) as exc:
        lam.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")
    assert error_of(exc) == ("ResourceConflictException", 409,
                             f"Alias already exists: {function_arn(fn_name, 'live')}")


def test_update_alias_with_stale_revision_is_412(lam: Any, functions: Functions,
                                                 fn_name: str) -> None:
    _two_versions(lam, functions, fn_name)
    created = lam.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")
    lam.update_alias(FunctionName=fn_name, Name="live", Description="changed")
    with pytest.raises(ClientError) as exc:
        lam.update_alias(FunctionName=fn_name, Name="live", FunctionVersion="2",
                         RevisionId=created["RevisionId"])
    assert error_of(exc)[:2] == ("PreconditionFailedException", 412)
    assert lam.get_alias(FunctionName=fn_name, Name="live")["FunctionVersion"] == "1"


def test_missing_alias_operations_are_404(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    missing = f"Cannot find alias arn: {function_arn(fn_name, 'ghost')}"
    with pytest.raises(ClientError) as exc:
        lam.update_alias(FunctionName=fn_name, Name="ghost", Description="x")
    assert error_of(exc) == ("ResourceNotFoundException", 404, missing)
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=fn_name, Qualifier="ghost")
    assert error_of(exc) == ("ResourceNotFoundException", 404,
                             f"Function not found: {function_arn(fn_name, 'ghost')}")
