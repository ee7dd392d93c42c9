"""Validation: boundaries, AWS's exact texts, and agreement with botocore's Lambda model."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from lamina.control import validation as v
from lamina.errors import InvalidParameterValue, ValidationError

_BOTOCORE = find_spec("botocore")
assert _BOTOCORE is not None and _BOTOCORE.origin is not None
MODEL = Path(_BOTOCORE.origin).parent / "data/lambda/2015-03-31/service-2.json.gz"


def failures(check: Callable[..., None], *args: Any, **kwargs: Any) -> tuple[str, ...]:
    c = v.ConstraintCollector()
    check(c, *args, **kwargs)
    return c.failures


@pytest.mark.parametrize(
    ("constant", "shape"),
    [
        (v.FUNCTION_NAME, "FunctionName"),
        (v.NAMESPACED_FUNCTION_NAME, "NamespacedFunctionName"),
        (v.QUALIFIER, "NumericLatestPublishedOrAliasQualifier"),
        (v.ALIAS, "Alias"),
        (v.VERSION, "VersionWithLatestPublished"),
        (v.ADDITIONAL_VERSION, "AdditionalVersion"),
        (v.HANDLER, "Handler"),
        (v.DESCRIPTION, "Description"),
        (v.ROLE, "RoleArn"),
        (v.ENV_KEY, "EnvironmentVariableName"),
        (v.TAG_KEY, "TagKey"),
        (v.TAG_VALUE, "TagValue"),
    ],
)
def test_shapes_agree_with_botocore_model(constant: v.StringShape, shape: str) -> None:
    model = json.loads(gzip.decompress(MODEL.read_bytes()))["shapes"][shape]
    assert constant.pattern == model.get("pattern")
    assert constant.min == model.get("min", 0)
    assert constant.max == model.get("max")


def test_enums_agree_with_botocore_model() -> None:
    shapes = json.loads(gzip.decompress(MODEL.read_bytes()))["shapes"]
    assert list(v.ARCHITECTURES) == shapes["Architecture"]["enum"]
    assert list(v.PACKAGE_TYPES) == shapes["PackageType"]["enum"]


def test_counted_message_joins_failures() -> None:
    c = v.ConstraintCollector()
    v.check_function_name(c, "x y")
    v.check_timeout(c, 0)
    with pytest.raises(ValidationError) as info:
        c.raise_if_any()
    assert info.value.message == (
        "2 validation errors detected: Value 'x y' at 'functionName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: "
        f"{v.FUNCTION_NAME.pattern}; Value '0' at 'timeout' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )
    assert info.value.code == "ValidationException" and info.value.status == 400


def test_single_failure_message_and_context_manager() -> None:
    with pytest.raises(ValidationError) as info:
        with v.ConstraintCollector() as c:
            v.check_memory_size(c, 32769)
    assert info.value.message == (
        "1 validation error detected: Value '32769' at 'memorySize' failed to satisfy "
        "constraint: Member must have value less than or equal to 32768"
    )


def test_empty_collector_raises_nothing() -> None:
    with v.ConstraintCollector() as c:
        v.check_memory_size(c, 128)
        v.check_timeout(c, None)
    assert c.failures == ()


def test_required_reports_null() -> None:
    assert failures(lambda c: c.required("role", None)) == (
        "Value null at 'role' failed to satisfy constraint: Member must not be null",
    )


LE = "Member must have value less than or equal to {}"
GE = "Member must have value greater than or equal to {}"


@pytest.mark.parametrize(
    ("check", "path", "value", "expected"),
    [
        (v.check_memory_size, "memorySize", 127, GE.format(128)),
        (v.check_memory_size, "memorySize", 128, None),
        (v.check_memory_size, "memorySize", 10240, None),
        (v.check_memory_size, "memorySize", 10241, None),
        (v.check_memory_size, "memorySize", 32769, LE.format(32768)),
        (v.check_timeout, "timeout", 0, GE.format(1)),
        (v.check_timeout, "timeout", 1, None),
        (v.check_timeout, "timeout", 900, None),
        (v.check_timeout, "timeout", 901, None),
        (v.check_timeout, "timeout", 5401, LE.format(5400)),
        (v.check_ephemeral_storage, "ephemeralStorage.size", 511, GE.format(512)),
        (v.check_ephemeral_storage, "ephemeralStorage.size", 512, None),
        (v.check_ephemeral_storage, "ephemeralStorage.size", 10240, None),
        (v.check_ephemeral_storage, "ephemeralStorage.size", 10241, None),
        (v.check_ephemeral_storage, "ephemeralStorage.size", 32769, LE.format(32768)),
        (v.check_max_items, "maxItems", 0, GE.format(1)),
        (v.check_max_items, "maxItems", 1, None),
        (v.check_max_items, "maxItems", 10000, None),
        (v.check_max_items, "maxItems", 10001, LE.format(10000)),
    ],
)
def test_number_bounds(
    check: Callable[..., None], path: str, value: int, expected: str | None
) -> None:
    got = failures(check, value)
    if expected is None:
        assert got == ()
    else:
        assert got == (f"Value '{value}' at '{path}' failed to satisfy constraint: {expected}",)


LEN = "Member must have length less than or equal to {}"
PAT = "Member must satisfy regular expression pattern: {}"


@pytest.mark.parametrize(
    ("check", "path", "value", "expected"),
    [
        (v.check_handler, "handler", "a" * 128, []),
        (v.check_handler, "handler", "a" * 129, [LEN.format(128)]),
        (v.check_handler, "handler", "app.handler", []),
        (v.check_handler, "handler", "app handler", [PAT.format(r"[^\s]+")]),
        (v.check_description, "description", "d" * 256, []),
        (v.check_description, "description", "d" * 257, [LEN.format(256)]),
        (v.check_description, "description", "", []),
        (v.check_role, "role", "arn:aws:iam::123456789012:role/lambda-role", []),
        (v.check_role, "role", "arn:aws:iam::123456789012:role/path/r+=,.@-_", []),
        (v.check_role, "role", "lambda-role", [PAT.format(v.ROLE.pattern)]),
        (v.check_role, "role", "arn:aws:iam::12345678901:role/r", [PAT.format(v.ROLE.pattern)]),
        (v.check_alias_name, "name", "prod", []),
        (v.check_alias_name, "name", "v1-2_x", []),
        (v.check_alias_name, "name", "12", [PAT.format(v.ALIAS.pattern)]),
        (v.check_alias_name, "name", "a" * 128, []),
        (v.check_alias_name, "name", "a" * 129, [LEN.format(128)]),
        (v.check_alias_name, "name", "$LATEST", [PAT.format(v.ALIAS.pattern)]),
        (v.check_version, "functionVersion", "$LATEST", []),
        (v.check_version, "functionVersion", "17", []),
        (v.check_version, "functionVersion", "prod", [PAT.format(v.VERSION.pattern)]),
        (v.check_qualifier, "qualifier", "$LATEST", []),
        (v.check_qualifier, "qualifier", "prod", []),
        (v.check_qualifier, "qualifier", "a" * 129, [LEN.format(128)]),
        (v.check_qualifier, "qualifier", "pro d", [PAT.format(v.QUALIFIER.pattern)]),
    ],
)
def test_string_shapes(
    check: Callable[..., None], path: str, value: str, expected: list[str]
) -> None:
    assert failures(check, value) == tuple(
        f"Value '{value}' at '{path}' failed to satisfy constraint: {text}" for text in expected
    )


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        ("my-function_1", {}, []),
        ("my-function:prod", {}, []),
        ("my-function:$LATEST", {}, []),
        ("123456789012:function:my-function", {}, []),
        ("arn:aws:lambda:us-east-1:123456789012:function:my-function:7", {}, []),
        ("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f", {}, []),
        ("x y", {}, [PAT.format(v.FUNCTION_NAME.pattern)]),
        ("my.fn", {}, [PAT.format(v.FUNCTION_NAME.pattern)]),
        ("my.fn", {"namespaced": True}, []),
        ("fn:$LATEST.PUBLISHED", {"namespaced": True}, []),
        ("a" * 140, {}, []),
        ("a" * 141, {}, [LEN.format(140)]),
        ("a" * 256, {"namespaced": True}, []),
        ("a" * 257, {"namespaced": True}, [LEN.format(256)]),
        ("a" * 64, {"creating": True}, []),
        ("a" * 65, {"creating": True}, [LEN.format(64)]),
        ("a b" * 30, {"creating": True}, [LEN.format(64), PAT.format(v.FUNCTION_NAME.pattern)]),
    ],
)
def test_function_name(value: str, kwargs: dict[str, bool], expected: list[str]) -> None:
    assert failures(v.check_function_name, value, **kwargs) == tuple(
        f"Value '{value}' at 'functionName' failed to satisfy constraint: {text}"
        for text in expected
    )


def test_environment_key_pattern_hides_values() -> None:
    assert failures(v.check_environment, {"GOOD": "1", "1BAD": "secret"}) == (
        "Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy "
        "constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]",
    )
    assert failures(v.check_environment, {"AB": "1", "a_1": "2"}) == ()
    assert failures(v.check_environment, {"A": "1"}) != ()  # the pattern needs two characters


def test_tags() -> None:
    assert failures(v.check_tags, {"k" * 128: "v" * 256, "team:x/y=z+@": "é ü 1"}) == ()
    (failure,) = failures(v.check_tags, {"k" * 129: "v"})
    assert failure == (
        f"Value '{{{'k' * 129}=v}}' at 'tags' failed to satisfy constraint: Map keys must "
        "satisfy constraint: [Member must have length less than or equal to 128, Member must "
        "have length greater than or equal to 1, Member must satisfy regular expression "
        r"pattern: ([\p{L}\p{Z}\p{N}_.:/=+\-@]*)]"
    )
    (failure,) = failures(v.check_tags, {"k": "v" * 257})
    assert "Map value must satisfy constraint: [Member must have length less than or equal " \
           "to 256, Member must have length greater than or equal to 0" in failure
    assert len(failures(v.check_tags, {"k": "a,b"})) == 1
    assert len(failures(v.check_tags, {"": "v"})) == 1


def test_architectures() -> None:
    assert failures(v.check_architectures, ["arm64"]) == ()
    assert failures(v.check_architectures, ["x86_64", "arm64"]) == (
        "Value '[x86_64, arm64]' at 'architectures' failed to satisfy constraint: Member must "
        "have length less than or equal to 1",
    )
    assert failures(v.check_architectures, ["sparc"]) == (
        "Value '[sparc]' at 'architectures' failed to satisfy constraint: Member must satisfy "
        "constraint: [Member must satisfy enum value set: [x86_64, arm64]]",
    )
    assert len(failures(v.check_architectures, [])) == 1
    v.validate_architectures(["x86_64"], ["x86_64"])
    with pytest.raises(InvalidParameterValue, match="Architecture arm64 is not supported"):
        v.validate_architectures(["arm64"], ["x86_64"])


def test_package_type() -> None:
    assert failures(v.check_package_type, "Zip") == ()
    assert failures(v.check_package_type, "Jar") == (
        "Value 'Jar' at 'packageType' failed to satisfy constraint: Member must satisfy enum "
        "value set: [Zip, Image]",
    )
    v.validate_package_type("Zip")
    v.validate_package_type(None)
    with pytest.raises(InvalidParameterValue, match="PackageType Image is not supported"):
        v.validate_package_type("Image")


def test_routing_config() -> None:
    assert failures(v.check_routing_config, {"2": 0.0}) == ()
    assert failures(v.check_routing_config, {"2": 1.0}) == ()
    (failure,) = failures(v.check_routing_config, {"2": 1.5})
    assert failure.startswith("Value '{2=1.5}' at 'routingConfig.additionalVersionWeights'")
    assert "Member must have value less than or equal to 1.0" in failure
    assert len(failures(v.check_routing_config, {"2": -0.1})) == 1
    assert len(failures(v.check_routing_config, {"prod": 0.5})) == 1
    v.validate_routing_config({"2": 0.5})
    with pytest.raises(InvalidParameterValue, match="cannot be greater than 1"):
        v.validate_routing_config({"2": 0.5, "3": 0.1})


AVAILABLE = ["python3.11", "python3.12", "provided.al2023", "provided.al2"]


def test_runtime_available() -> None:
    v.validate_runtime("python3.12", AVAILABLE)


def test_runtime_unknown() -> None:
    with pytest.raises(InvalidParameterValue) as info:
        v.validate_runtime("python3.99", AVAILABLE)
    assert info.value.message == (
        "Value python3.99 at 'runtime' failed to satisfy constraint: Member must satisfy enum "
        "value set: [python3.11, python3.12, provided.al2023, provided.al2] or be a valid ARN"
    )


def test_runtime_deprecated() -> None:
    with pytest.raises(InvalidParameterValue) as info:
        v.validate_runtime("python3.7", AVAILABLE)
    assert info.value.message == (
        "The runtime parameter of python3.7 is no longer supported for creating or updating AWS "
        "Lambda functions. We recommend you use the new runtime (python3.12) while creating or "
        "updating functions."
    )


def test_runtime_deprecated_but_present_on_host_is_accepted() -> None:
    v.validate_runtime("python3.8", ["python3.8"])


@pytest.mark.parametrize("key", ["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN",
                                 "AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT"])
def test_reserved_environment_key(key: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        v.validate_environment({"OK": "1", key: "x"})
    assert info.value.message == (
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided contains reserved keys that are currently not supported for "
        f"modification. Reserved keys used in this request: {key}"
    )


def test_reserved_keys_listed_in_request_order() -> None:
    with pytest.raises(InvalidParameterValue, match="request: AWS_ACCESS_KEY_ID, AWS_SECRET"):
        v.validate_environment({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})


@pytest.mark.parametrize("key", ["TZ", "AWS_LAMBDA_EXEC_WRAPPER", "PATH", "LANG"])
def test_unreserved_environment_keys(key: str) -> None:
    v.validate_environment({key: "x"})


def _env_of_size(size: int, char: str = "x") -> dict[str, str]:
    """One variable whose compact JSON ``{"KEY":"..."}`` is exactly ``size`` UTF-8 bytes."""
    overhead = len('{"KEY":""}')
    value_bytes = size - overhead
    assert value_bytes % len(char.encode()) == 0
    return {"KEY": char * (value_bytes // len(char.encode()))}


def test_environment_exactly_4kb_is_accepted() -> None:
    env = _env_of_size(4096)
    assert v.environment_size(env)[0] == 4096
    v.validate_environment(env)


def test_environment_one_byte_over_is_refused_with_measured_string() -> None:
    env = _env_of_size(4097)
    with pytest.raises(InvalidParameterValue) as info:
        v.validate_environment(env)
    assert info.value.message == (
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided exceeded the 4KB limit. String measured: "
        f'{{"KEY":"{env["KEY"]}"}}'
    )


def test_environment_size_counts_utf8_bytes_and_json_escapes() -> None:
    assert v.environment_size({"K": "é"}) == (len('{"K":""}') + 2, '{"K":"é"}')
    assert v.environment_size({"K": 'a"b'})[0] == len('{"K":"a\\"b"}')
    assert v.environment_size({"A": "1", "B": "2"}) == (len('{"A":"1","B":"2"}'),
                                                        '{"A":"1","B":"2"}')
    with pytest.raises(InvalidParameterValue):
        v.validate_environment(_env_of_size(4098, "é"))


def test_tag_aws_prefix_refused() -> None:
    v.validate_tags({"team": "aws:ok-in-value", "my-aws:key": "v"})
    for key in ("aws:x", "AWS:x", "Aws:cloudformation:stack-name"):
        with pytest.raises(InvalidParameterValue, match="aws: prefixed tag key"):
            v.validate_tags({key: "v"})


def test_marker_round_trip_and_garbage() -> None:
    assert v.decode_marker(v.encode_marker("my-fn")) == "my-fn"
    assert v.decode_marker(None) is None
    assert v.decode_marker("") is None
    for garbage in ("!!!", "bm90LWxhbWluYQ=="):
        with pytest.raises(InvalidParameterValue, match="Invalid Marker"):
            v.decode_marker(garbage)


def test_function_config_runs_constraints_before_semantics() -> None:
    config: dict[str, Any] = {
        "available_runtimes": AVAILABLE, "allowed_architectures": ["x86_64"],
    }
    v.validate_function_config(runtime="python3.12", handler="app.h", memory_size=128,
                               timeout=3, environment={"A1": "x"}, architectures=["x86_64"],
                               package_type="Zip", **config)
    with pytest.raises(ValidationError, match="^2 validation errors detected: Value '0' at "
                                              "'timeout'.*; Value '1' at 'memorySize'"):
        v.validate_function_config(runtime="python3.99", timeout=0, memory_size=1, **config)
    with pytest.raises(InvalidParameterValue, match="at 'runtime'"):
        v.validate_function_config(runtime="python3.99", timeout=1, **config)
    with pytest.raises(InvalidParameterValue, match="reserved keys"):
        v.validate_function_config(environment={"AWS_REGION": "x"}, **config)
    with pytest.raises(InvalidParameterValue, match="arm64"):
        v.validate_function_config(architectures=["arm64"], **config)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory_size": 10241}, "Value '10241' at 'memorySize' failed to satisfy constraint: "
         "Member must have value less than or equal to 10240"),
        ({"timeout": 901}, "Value '901' at 'timeout' failed to satisfy constraint: "
         "Member must have value less than or equal to 900"),
        ({"ephemeral_storage": 10241}, "Value '10241' at 'ephemeralStorage.size' failed to satisfy "
         "constraint: Member must have value less than or equal to 10240"),
    ],
)
def test_service_limits_are_invalid_parameter_values(kwargs: dict[str, int], message: str) -> None:
    base = {"memory_size": None, "timeout": None, "ephemeral_storage": None}
    with pytest.raises(InvalidParameterValue) as info:
        v.validate_service_limits(**{**base, **kwargs})
    assert info.value.message == message
    v.validate_service_limits(memory_size=10240, timeout=900, ephemeral_storage=10240)
