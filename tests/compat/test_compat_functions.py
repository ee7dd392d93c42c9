"""CreateFunction, GetFunction(Configuration), UpdateFunctionCode/Configuration, DeleteFunction."""

from __future__ import annotations

import re
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from test_compat_support import (
    ACCOUNT,
    HANDLER,
    REGION,
    ROLE,
    RUNTIME,
    Functions,
    error_of,
    function_arn,
    make_zip,
    sha256_b64,
    wait_updated,
)

LAST_MODIFIED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")
REVISION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_create_function_answers_201_pending_with_the_full_configuration(
        lam: Any, functions: Functions, fn_name: str) -> None:
    code = make_zip()
    created = functions.create(fn_name, code=code, wait=False, Description="compat",
                               Timeout=7, MemorySize=256)

    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionName"] == fn_name
    assert created["FunctionArn"] == function_arn(fn_name)
    assert created["Runtime"] == RUNTIME
    assert created["Role"] == ROLE
    assert created["Handler"] == HANDLER
    assert created["CodeSize"] == len(code)
    assert created["CodeSha256"] == sha256_b64(code)
    assert created["Description"] == "compat"
    assert created["Timeout"] == 7
    assert created["MemorySize"] == 256
    assert created["Version"] == "$LATEST"
    assert created["PackageType"] == "Zip"
    assert created["Architectures"] == ["x86_64"]
    assert created["EphemeralStorage"] == {"Size": 512}
    assert created["TracingConfig"] == {"Mode": "PassThrough"}
    assert LAST_MODIFIED.match(created["LastModified"]), created["LastModified"]
    assert REVISION_ID.match(created["RevisionId"]), created["RevisionId"]
    assert created["State"] == "Pending"
    assert created["StateReasonCode"] == "Creating"
    assert created["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{fn_name}"}

    lam.get_waiter("function_active_v2").wait(FunctionName=fn_name,
                                              WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    config = lam.get_function_configuration(FunctionName=fn_name)
    assert config["State"] == "Active"
    assert config["LastUpdateStatus"] == "Successful"
    assert "StateReasonCode" not in config or config["StateReasonCode"] == "Idle"


def test_defaults_are_awss(functions: Functions, fn_name: str) -> None:
    created = functions.create(fn_name)
    assert created["Timeout"] == 3
    assert created["MemorySize"] == 128
    assert created["Description"] == ""


def test_function_exists_and_active_waiters(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, wait=False)
    lam.get_waiter("function_exists").wait(FunctionName=fn_name,
                                           WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    lam.get_waiter("function_active").wait(FunctionName=fn_name,
                                           WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def test_get_function_code_location_downloads_the_exact_zip(
        lam: Any, functions: Functions, fn_name: str) -> None:
    code = make_zip({"index.py": "def handler(e, c):\n    return 'exact'\n", "data.txt": "x" * 999})
    functions.create(fn_name, code=code)

    got = lam.get_function(FunctionName=fn_name)

    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Code"]["RepositoryType"] == "S3"
    assert got["Configuration"]["CodeSha256"] == sha256_b64(code)
    assert got["Configuration"]["CodeSize"] == len(code)
    with urllib.request.urlopen(got["Code"]["Location"], timeout=10) as resp:
        downloaded = resp.read()
    assert downloaded == code


def test_create_function_with_existing_name_is_a_conflict(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        functions.create(fn_name)
    assert error_of(exc) == ("ResourceConflictException", 409, f"Function already exist: {fn_name}")


def test_get_missing_function_names_the_full_arn(lam: Any, fn_name: str) -> None:
    for call in (lam.get_function, lam.get_function_configuration, lam.delete_function):
        with pytest.raises(ClientError) as exc:
            call(FunctionName=fn_name)
        assert error_of(exc) == ("ResourceNotFoundException", 404,
                                 f"Function not found: {function_arn(fn_name)}")


def test_get_missing_version_names_the_qualified_arn(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=fn_name, Qualifier="7")
    assert error_of(exc) == ("ResourceNotFoundException", 404,
                             f"Function not found: {function_arn(fn_name, '7')}")


def test_name_full_arn_and_partial_arn_resolve_to_the_same_function(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    for ref in (fn_name, function_arn(fn_name), f"{ACCOUNT}:function:{fn_name}"):
        config = lam.get_function_configuration(FunctionName=ref)
        assert config["FunctionArn"] == function_arn(fn_name), ref
        assert config["FunctionName"] == fn_name


def test_qualifier_in_name_must_match_the_qualifier_parameter(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Publish=True)
    assert lam.get_function_configuration(FunctionName=f"{fn_name}:1")["Version"] == "1"
    assert lam.get_function_configuration(
        FunctionName=function_arn(fn_name, "1"))["Version"] == "1"
    with pytest.raises(ClientError) as exc:
        lam.get_function_configuration(FunctionName=f"{fn_name}:1", Qualifier="2")
    assert error_of(exc) == (
        "InvalidParameterValueException", 400,
        "The derived qualifier from the function name does not match the specified qualifier.")


def test_arn_from_another_region_is_not_reachable(lam: Any, functions: Functions,
                                                  fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=function_arn(fn_name, region="eu-west-1"))
    code, status, message = error_of(exc)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert message == f"Functions from 'eu-west-1' are not reachable in this region ('{REGION}')"


def test_update_function_code_changes_sha_and_revision(
        lam: Any, functions: Functions, fn_name: str) -> None:
    created = functions.create(fn_name)
    new_code = make_zip({"index.py": "def handler(e, c):\n    return 2\n"})

    updated = lam.update_function_code(FunctionName=fn_name, ZipFile=new_code)

    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert updated["CodeSha256"] == sha256_b64(new_code) != created["CodeSha256"]
    assert updated["CodeSize"] == len(new_code)
    assert updated["RevisionId"] != created["RevisionId"]
    assert updated["LastUpdateStatus"] == "InProgress"
    assert updated["State"] == "Active"
    wait_updated(lam, fn_name)
    got = lam.get_function(FunctionName=fn_name)
    assert got["Configuration"]["LastUpdateStatus"] == "Successful"
    with urllib.request.urlopen(got["Code"]["Location"], timeout=10) as resp:
        assert resp.read() == new_code


def test_update_function_code_with_publish_returns_the_new_version(
        lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    new_code = make_zip({"index.py": "def handler(e, c):\n    return 3\n"})
    updated = lam.update_function_code(FunctionName=fn_name, ZipFile=new_code, Publish=True)
    assert updated["Version"] == "1"
    assert updated["FunctionArn"] == function_arn(fn_name, "1")
    assert updated["CodeSha256"] == sha256_b64(new_code)


def test_update_function_code_from_s3_is_refused(lam: Any, functions: Functions,
                                                 fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam.update_function_code(FunctionName=fn_name, S3Bucket="bucket", S3Key="code.zip")
    assert error_of(exc)[:2] == ("InvalidParameterValueException", 400)


def test_create_function_from_s3_is_refused(lam: Any, fn_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        lam.create_function(FunctionName=fn_name, Runtime=RUNTIME, Role=ROLE, Handler=HANDLER,
                            Code={"S3Bucket": "bucket", "S3Key": "code.zip"})
    assert error_of(exc)[:2] == ("InvalidParameterValueException", 400)


def test_update_function_configuration_sets_environment_and_settings(
        lam: Any, functions: Functions, fn_name: str) -> None:
    created = functions.create(fn_name)
    updated = lam.update_function_configuration(
        FunctionName=fn_name, Environment={"Variables": {"GREETING": "hello", "NUM": "1"}},
        Description="new", MemorySize=512, Timeout=30, Handler="index.other")

    assert updated["Environment"] == {"Variables": {"GREETING": "hello", "NUM": "1"}}
    assert updated["RevisionId"] != created["RevisionId"]
    assert updated["LastUpdateStatus"] == "InProgress"
    wait_updated(lam, fn_name)
    config = lam.get_function_configuration(FunctionName=fn_name)
    assert config["Environment"] == {"Variables": {"GREETING": "hello", "NUM": "1"}}
    assert (config["Description"], config["MemorySize"], config["Timeout"], config["Handler"]) == (
        "new", 512, 30, "index.other")
    assert config["CodeSha256"] == created["CodeSha256"]


def test_update_function_configuration_with_stale_revision_is_412(
        lam: Any, functions: Functions, fn_name: str) -> None:
    created = functions.create(fn_name)
    lam.update_function_configuration(FunctionName=fn_name, Description="one")
    wait_updated(lam, fn_name)

    with pytest.raises(ClientError) as exc:
        lam.update_function_configuration(FunctionName=fn_name, Description="two",
                                          RevisionId=created["RevisionId"])
    assert error_of(exc) == (
        "PreconditionFailedException", 412,
        "The Revision Id provided does not match the latest Revision Id. "
        "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")

    current = lam.get_function_configuration(FunctionName=fn_name)
    assert current["Description"] == "one"
    ok = lam.update_function_configuration(FunctionName=fn_name, Description="two",
                                           RevisionId=current["RevisionId"])
    assert ok["Description"] == "two"


def test_delete_function_removes_it(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Publish=True)
    deleted = lam.delete_function(FunctionName=fn_name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=fn_name)
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=fn_name, Qualifier="1")
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)


def test_delete_function_by_arn(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    lam.delete_function(FunctionName=function_arn(fn_name))
    names = [f["FunctionName"] for f in lam.list_functions(MaxItems=10000)["Functions"]]
    assert fn_name not in names
