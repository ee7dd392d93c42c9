"""Parameter validation: AWS's codes and messages for out-of-range and malformed input.

Two layers answer on AWS. Constraints in botocore's model (min/max/pattern of a shape) give
``ValidationException`` with the "1 validation error detected: Value 'v' at 'member' failed to
satisfy constraint: ..." text. Limits tighter than the model (the model now allows MemorySize up
to 32768 and Timeout up to 5400 for Lambda Managed Instances; ordinary functions stop at 10240
MB and 900 s) are the service's own checks and give ``InvalidParameterValueException``. The
client here skips botocore's own checks so the server's are what is tested.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from test_compat_support import HANDLER, ROLE, RUNTIME, Functions, error_of, make_zip


def _create(lam_raw: Any, name: str, **params: Any) -> None:
    request: dict[str, Any] = {"FunctionName": name, "Runtime": RUNTIME, "Role": ROLE,
                               "Handler": HANDLER, "Code": {"ZipFile": make_zip()}}
    request.update(params)
    lam_raw.create_function(**request)


def _model_error(value: object, member: str, constraint: str) -> str:
    return (f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
            f"constraint: {constraint}")


MODEL_VIOLATIONS = [
    ({"MemorySize": 127}, _model_error(127, "memorySize",
                                       "Member must have value greater than or equal to 128")),
    ({"MemorySize": 32769}, _model_error(32769, "memorySize",
                                         "Member must have value less than or equal to 32768")),
    ({"Timeout": 0}, _model_error(0, "timeout",
                                  "Member must have value greater than or equal to 1")),
    ({"EphemeralStorage": {"Size": 511}},
     _model_error(511, "ephemeralStorage.size",
                  "Member must have value greater than or equal to 512")),
    ({"Description": "d" * 257},
     _model_error("d" * 257, "description", "Member must have length less than or equal to 256")),
    ({"Handler": "index handler"},
     _model_error("index handler", "handler",
                  "Member must satisfy regular expression pattern: [^\\s]+")),
]


@pytest.mark.parametrize(("params", "message"), MODEL_VIOLATIONS,
                         ids=["memory-127", "memory-32769", "timeout-0", "ephemeral-511",
                              "description-257", "handler-space"])
def test_model_constraint_violations_are_validation_exceptions(
        lam_raw: Any, fn_name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientError) as exc:
        _create(lam_raw, fn_name, **params)
    assert error_of(exc) == ("ValidationException", 400, message)
    with pytest.raises(ClientError) as missing:
        lam_raw.get_function(FunctionName=fn_name)
    assert error_of(missing)[:2] == ("ResourceNotFoundException", 404)


@pytest.mark.parametrize(("params", "member", "limit"), [
    ({"MemorySize": 10241}, "memorySize", 10240),
    ({"Timeout": 901}, "timeout", 900),
], ids=["memory-10241", "timeout-901"])
def test_service_limits_are_invalid_parameter_values(
        lam_raw: Any, fn_name: str, params: dict[str, Any], member: str, limit: int) -> None:
    with pytest.raises(ClientError) as exc:
        _create(lam_raw, fn_name, **params)
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert f"'{member}' failed to satisfy constraint" in message
    assert f"less than or equal to {limit}" in message


def test_ephemeral_storage_above_10240_is_refused(lam_raw: Any, fn_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        _create(lam_raw, fn_name, EphemeralStorage={"Size": 10241})
    assert error_of(exc)[:2] == ("InvalidParameterValueException", 400)


def test_two_violations_are_reported_together(lam_raw: Any, fn_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        _create(lam_raw, fn_name, MemorySize=127, Timeout=0)
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("2 validation errors detected: ")
    assert "at 'memorySize'" in message and "at 'timeout'" in message


def test_environment_over_4kb_is_refused(lam_raw: Any, fn_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        _create(lam_raw, fn_name, Environment={"Variables": {"BIG": "x" * 4097}})
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message.startswith(
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided exceeded the 4KB limit.")


def test_environment_limit_applies_to_updates(lam: Any, lam_raw: Any, functions: Functions,
                                              fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam_raw.update_function_configuration(
            FunctionName=fn_name, Environment={"Variables": {f"K{i}": "v" * 500 for i in range(9)}})
    assert error_of(exc)[:2] == ("InvalidParameterValueException", 400)
    assert "Environment" not in lam.get_function_configuration(FunctionName=fn_name)


@pytest.mark.parametrize("bad_name", ["bad name", "bad!name", "a/b"])
def test_malformed_function_names_are_refused(lam_raw: Any, bad_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        _create(lam_raw, bad_name)
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert f"Value '{bad_name}' at 'functionName' failed to satisfy constraint: " \
           "Member must satisfy regular expression pattern" in message


def test_unknown_runtime_is_an_invalid_parameter_value(lam_raw: Any, fn_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        _create(lam_raw, fn_name, Runtime="python2.9x")
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message.startswith("Value python2.9x at 'runtime' failed to satisfy constraint: "
                              "Member must satisfy enum value set: [")


def test_malformed_role_is_refused(lam_raw: Any, fn_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        _create(lam_raw, fn_name, Role="not-a-role")
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert "Value 'not-a-role' at 'role' failed to satisfy constraint" in message


def test_update_configuration_validates_too(lam: Any, lam_raw: Any, functions: Functions,
                                            fn_name: str) -> None:
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam_raw.update_function_configuration(FunctionName=fn_name, MemorySize=127)
    assert error_of(exc)[:2] == ("ValidationException", 400)
    assert lam.get_function_configuration(FunctionName=fn_name)["MemorySize"] == 128


def test_corrupt_zip_is_refused(lam_raw: Any, fn_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        _create(lam_raw, fn_name, Code={"ZipFile": b"this is not a zip file"})
    assert error_of(exc) == ("InvalidParameterValueException", 400,
                             "Could not unzip uploaded file. Please check your file, "
                             "then try to upload again.")
