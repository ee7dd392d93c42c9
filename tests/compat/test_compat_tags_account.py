"""TagResource, UntagResource, ListTags; GetAccountSettings; account and region settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from test_compat_support import Functions, Server, client_for, error_of, function_arn, make_zip


def test_tags_given_at_create_are_listed(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Tags={"team": "core", "env": "test"})
    listed = lam.list_tags(Resource=function_arn(fn_name))
    assert listed["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert listed["Tags"] == {"team": "core", "env": "test"}
    assert lam.get_function(FunctionName=fn_name)["Tags"] == {"team": "core", "env": "test"}


def test_tag_and_untag_resource(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Tags={"keep": "1"})
    arn = function_arn(fn_name)

    tagged = lam.tag_resource(Resource=arn, Tags={"a": "x", "b": "y", "keep": "2"})
    assert tagged["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_tags(Resource=arn)["Tags"] == {"a": "x", "b": "y", "keep": "2"}

    untagged = lam.untag_resource(Resource=arn, TagKeys=["a", "b"])
    assert untagged["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_tags(Resource=arn)["Tags"] == {"keep": "2"}


def test_tags_of_a_missing_function_are_404(lam: Any, fn_name: str) -> None:
    arn = function_arn(fn_name)
    calls: list[Callable[[], Any]] = [
        lambda: lam.list_tags(Resource=arn),
        lambda: lam.tag_resource(Resource=arn, Tags={"a": "b"}),
        lambda: lam.untag_resource(Resource=arn, TagKeys=["a"]),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)


def test_get_account_settings_reports_awss_default_limits(lam: Any) -> None:
    settings = lam.get_account_settings()
    assert settings["ResponseMetadata"]["HTTPStatusCode"] == 200
    limit = settings["AccountLimit"]
    assert limit["TotalCodeSize"] == 80530636800
    assert limit["CodeSizeUnzipped"] == 262144000
    assert limit["CodeSizeZipped"] == 52428800
    assert limit["ConcurrentExecutions"] == 1000
    assert limit["UnreservedConcurrentExecutions"] == 1000
    assert set(settings["AccountUsage"]) == {"TotalCodeSize", "FunctionCount"}


def test_account_usage_counts_functions_and_code(
        server_factory: Callable[..., Server]) -> None:
    lam = client_for(server_factory())
    before = lam.get_account_settings()["AccountUsage"]
    assert before == {"TotalCodeSize": 0, "FunctionCount": 0}

    code = make_zip({"index.py": "def handler(e, c):\n    return 1\n"})
    Functions(lam).create("usage-one", code=code)
    after = lam.get_account_settings()["AccountUsage"]
    assert after["FunctionCount"] == 1
    assert after["TotalCodeSize"] == len(code)


def test_account_id_and_region_come_from_the_environment(
        server_factory: Callable[..., Server]) -> None:
    srv = server_factory(env={"LAMINA_ACCOUNT_ID": "123456789012", "LAMINA_REGION": "eu-west-1"})
    lam = client_for(srv, region_name="eu-west-1")
    created = Functions(lam).create("regional", Role="arn:aws:iam::123456789012:role/lambda-role")
    assert created["FunctionArn"] == function_arn("regional", account="123456789012",
                                                  region="eu-west-1")
