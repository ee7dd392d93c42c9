"""PublishVersion, ListVersionsByFunction, qualified reads and deletes of versions."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from test_compat_support import Functions, error_of, function_arn, make_zip, sha256_b64, wait_updated


def _update_code(lam: Any, name: str, body: str) -> bytes:
    code = make_zip({"index.py": body})
    lam.update_function_code(FunctionName=name, ZipFile=code)
    wait_updated(lam, name)
    return code


def test_publish_version_freezes_latest(lam: Any, functions: Functions, fn_name: str) -> None:
    created = functions.create(fn_name)

    published = lam.publish_version(FunctionName=fn_name, Description="first")

    assert published["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert published["Version"] == "1"
    assert published["FunctionArn"] == function_arn(fn_name, "1")
    assert published["CodeSha256"] == created["CodeSha256"]
    assert published["Description"] == "first"

    new_code = _update_code(lam, fn_name, "def handler(e, c):\n    return 'v2'\n")
    v1 = lam.get_function_configuration(FunctionName=fn_name, Qualifier="1")
    latest = lam.get_function_configuration(FunctionName=fn_name, Qualifier="$LATEST")
    assert (v1["Version"], v1["CodeSha256"]) == ("1", created["CodeSha256"])
    assert v1["FunctionArn"] == function_arn(fn_name, "1")
    assert (latest["Version"], latest["CodeSha256"]) == ("$LATEST", sha256_b64(new_code))


def test_get_function_for_a_version_downloads_that_versions_code(
        lam: Any, functions: Functions, fn_name: str) -> None:
    first = make_zip({"index.py": "def handler(e, c):\n    return 'one'\n"})
    functions.create(fn_name, code=first, Publish=True)
    _update_code(lam, fn_name, "def handler(e, c):\n    return 'two'\n")

    got = lam.get_function(FunctionName=fn_name, Qualifier="1")
    with urllib.request.urlopen(got["Code"]["Location"], timeout=10) as resp:
        assert resp.read() == first


def test_publishing_unchanged_code_twice_returns_the_same_version(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    first = lam.publish_version(FunctionName=fn_name)
    again = lam.publish_version(FunctionName=fn_name)
    assert first["Version"] == again["Version"] == "1"

    _update_code(lam, fn_name, "def handler(e, c):\n    return 'changed'\n")
    assert lam.publish_version(FunctionName=fn_name)["Version"] == "2"


def test_publish_version_with_wrong_code_sha_is_refused(
        lam: Any, functions: Functions, fn_name: str) -> None:
    created = functions.create(fn_name)
    wrong = sha256_b64(b"something else")
    with pytest.raises(ClientError) as exc:
        lam.publish_version(FunctionName=fn_name, CodeSha256=wrong)
    assert error_of(exc) == (
        "InvalidParameterValueException", 400,
        f"CodeSHA256 ({wrong}) is different from current CodeSHA256 in $LATEST "
        f"({created['CodeSha256']}). Please try again with the CodeSHA256 in $LATEST.")
    ok = lam.publish_version(FunctionName=fn_name, CodeSha256=created["CodeSha256"])
    assert ok["Version"] == "1"


def test_publish_version_with_stale_revision_is_412(
        lam: Any, functions: Functions, fn_name: str) -> None:
    created = functions.create(fn_name)
    lam.update_function_configuration(FunctionName=fn_name, Description="changed")
    wait_updated(lam, fn_name)
    with pytest.raises(ClientError) as exc:
        lam.publish_version(FunctionName=fn_name, RevisionId=created["RevisionId"])
    assert error_of(exc)[:2] == ("PreconditionFailedException", 412)
    assert error_of(exc)[2].startswith(
        "The Revision Id provided does not match the latest Revision Id.")


def test_publish_version_of_missing_function_is_404(lam: Any, fn_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        lam.publish_version(FunctionName=fn_name)
    assert error_of(exc) == ("ResourceNotFoundException", 404,
                             f"Function not found: {function_arn(fn_name)}")


def test_list_versions_by_function_lists_latest_then_versions(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Publish=True)
    _update_code(lam, fn_name, "def handler(e, c):\n    return 'two'\n")
    lam.publish_version(FunctionName=fn_name)

    listed = lam.list_versions_by_function(FunctionName=fn_name)

    assert listed["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [v["Version"] for v in listed["Versions"]] == ["$LATEST", "1", "2"]
    assert [v["FunctionArn"] for v in listed["Versions"]] == [
        function_arn(fn_name, "$LATEST"), function_arn(fn_name, "1"), function_arn(fn_name, "2")]
    assert "NextMarker" not in listed


def test_list_versions_of_missing_function_is_404(lam: Any, fn_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        lam.list_versions_by_function(FunctionName=fn_name)
    assert error_of(exc) == ("ResourceNotFoundException", 404,
                             f"Function not found: {function_arn(fn_name)}")


def test_list_functions_shows_versions_only_with_function_version_all(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Publish=True)

    default = [f for f in lam.list_functions(MaxItems=10000)["Functions"]
               if f["FunctionName"] == fn_name]
    everything = [f for f in lam.list_functions(FunctionVersion="ALL", MaxItems=10000)["Functions"]
                  if f["FunctionName"] == fn_name]

    assert [f["Version"] for f in default] == ["$LATEST"]
    assert sorted(f["Version"] for f in everything) == ["$LATEST", "1"]


def test_delete_one_version_keeps_the_function(lam: Any, functions: Functions,
                                                fn_name: str) -> None:
    functions.create(fn_name, Publish=True)
    deleted = lam.delete_function(FunctionName=fn_name, Qualifier="1")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=fn_name)["Versions"]] \
        == ["$LATEST"]
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=fn_name, Qualifier="1")
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)
    assert lam.get_function(FunctionName=fn_name)["Configuration"]["Version"] == "$LATEST"


def test_deleting_latest_through_the_qualifier_is_refused(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam.delete_function(FunctionName=fn_name, Qualifier="$LATEST")
    assert error_of(exc) == ("InvalidParameterValueException", 400,
                             "$LATEST version cannot be deleted without deleting the function.")
    assert lam.get_function(FunctionName=fn_name)["Configuration"]["FunctionName"] == fn_name


def test_deleting_a_version_an_alias_uses_is_a_conflict(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Publish=True)
    lam.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")
    with pytest.raises(ClientError) as exc:
        lam.delete_function(FunctionName=fn_name, Qualifier="1")
    assert error_of(exc) == (
        "ResourceConflictException", 409,
        "Unable to delete version because the following aliases reference it: [live]")
    assert lam.get_function(FunctionName=fn_name, Qualifier="1")["Configuration"]["Version"] == "1"
