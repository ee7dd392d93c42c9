"""The model-driven REST-JSON layer: routing, parsing, constraint messages, serialization."""

from __future__ import annotations

import base64
import json

import pytest

from lamina.api.wire import ServiceModel, parse_query
from lamina.errors import InvalidRequestContent, UnknownOperation, ValidationError


@pytest.fixture(scope="module")
def model() -> ServiceModel:
    return ServiceModel("lambda", "2015-03-31")


@pytest.mark.parametrize(
    ("method", "path", "query", "operation"),
    [
        ("POST", "/2015-03-31/functions", "", "CreateFunction"),
        ("GET", "/2015-03-31/functions/", "", "ListFunctions"),
        ("GET", "/2015-03-31/nothing", "", None),
        ("GET", "/2015-03-31/functions/my-fn", "", "GetFunction"),
        ("GET", "/2015-03-31/functions/my-fn/configuration", "", "GetFunctionConfiguration"),
        ("POST", "/2015-03-31/functions/my-fn/invocations", "", "Invoke"),
        ("GET", "/2018-10-31/layers", "find=LayerVersion&Arn=x", "GetLayerVersionByArn"),
        ("GET", "/2018-10-31/layers", "", "ListLayers"),
        ("PUT", "/2017-10-31/functions/f/concurrency", "", "PutFunctionConcurrency"),
        ("GET", "/2019-09-30/functions/f/concurrency", "", "GetFunctionConcurrency"),
        ("DELETE", "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af", "tagKeys=a", "UntagResource"),
    ],
)
def test_routing(model: ServiceModel, method: str, path: str, query: str, operation: str | None) -> None:
    q = parse_query(query)
    if operation is None:
        with pytest.raises(UnknownOperation):
            model.route(method, path, q)
        return
    op, _ = model.route(method, path, q)
    assert op.name == operation


def test_parse_locations(model: ServiceModel) -> None:
    op, params = model.route("GET", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af/versions", {})
    assert params == {"FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:f"}
    parsed = model.parse_input(op, params, parse_query("MaxItems=5&Marker=abc"), {}, b"")
    assert parsed == {"FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:f", "MaxItems": 5, "Marker": "abc"}

    op, params = model.route("POST", "/2015-03-31/functions/f/invocations", {})
    parsed = model.parse_input(op, params, {}, {"x-amz-invocation-type": "DryRun"}, b'{"a":1}')
    assert parsed["InvocationType"] == "DryRun" and parsed["Payload"] == b'{"a":1}'

    op, params = model.route("POST", "/2015-03-31/functions", {})
    body = json.dumps({"FunctionName": "f", "Code": {"ZipFile": base64.b64encode(b"PK").decode()}, "MemorySize": 256})
    parsed = model.parse_input(op, params, {}, {}, body.encode())
    assert parsed["Code"]["ZipFile"] == b"PK" and parsed["MemorySize"] == 256


def test_bad_json_and_base64(model: ServiceModel) -> None:
    op, params = model.route("POST", "/2015-03-31/functions", {})
    with pytest.raises(InvalidRequestContent):
        model.parse_input(op, params, {}, {}, b"{not json")
    with pytest.raises(InvalidRequestContent):
        model.parse_input(op, params, {}, {}, b'{"Code": {"ZipFile": "***"}}')


def test_constraint_messages_are_counted(model: ServiceModel) -> None:
    op = model.operations["CreateFunction"]
    with pytest.raises(ValidationError) as one:
        model.validate(op, {"FunctionName": "f", "Role": "arn:aws:iam::000000000000:role/r", "Code": {}, "Timeout": 0})
    assert one.value.message == (
        "1 validation error detected: Value '0' at 'timeout' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )
    with pytest.raises(ValidationError) as two:
        model.validate(op, {"FunctionName": "bad name", "Role": "r", "Code": {}, "Description": "x" * 257})
    assert two.value.message.startswith("3 validation errors detected: ")
    assert "at 'description' failed to satisfy constraint: Member must have length less than or equal to 256" in two.value.message
    assert "at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern" in two.value.message


def test_nested_paths(model: ServiceModel) -> None:
    op = model.operations["CreateFunction"]
    with pytest.raises(ValidationError) as err:
        model.validate(op, {"FunctionName": "f", "Role": "arn:aws:iam::000000000000:role/r", "Code": {},
                            "EphemeralStorage": {"Size": 511}})
    assert "at 'ephemeralStorage.size'" in err.value.message


def test_serialize_locations(model: ServiceModel) -> None:
    op = model.operations["Invoke"]
    status, headers, body, ctype = model.serialize_output(
        op, {"StatusCode": 200, "FunctionError": "Unhandled", "ExecutedVersion": "$LATEST", "Payload": b"{}"}
    )
    assert status == 200 and body == b"{}"
    assert (b"X-Amz-Function-Error", b"Unhandled") in headers
    assert (b"X-Amz-Executed-Version", b"$LATEST") in headers
    status, headers, body, _ = model.serialize_output(model.operations["DeleteAlias"], None)
    assert status == 204 and body == b""
    status, _, body, _ = model.serialize_output(model.operations["ListTags"], {"Tags": {"a": "b"}})
    assert status == 200 and json.loads(body) == {"Tags": {"a": "b"}}


def test_204_has_no_body(model: ServiceModel) -> None:
    status, _, body, _ = model.serialize_output(model.operations["DeleteFunction"], {"StatusCode": 204})
    assert (status, body) == (204, b"")
