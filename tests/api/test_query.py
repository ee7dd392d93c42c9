"""The query protocol (IAM, STS) against botocore's own query serializer and parser.

Requests are built by botocore's serializer from the real operation models and must parse back
to the caller's params; responses and errors written by Lamina must parse, with botocore's
parser (and a real client for the policy-document decoding), into the dicts a boto3 caller sees.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

import boto3
import botocore.awsrequest
import botocore.exceptions
import botocore.model
import botocore.parsers
import botocore.serialize
import botocore.session
import pytest

from lamina.api import query_xml
from lamina.api.query import QueryModel, parse_form
from lamina.errors import IamError, InternalError, ServiceError, UnrecognizedClient, ValidationError

IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
REQUEST_ID = "4f2bd3a1-0000-4000-8000-000000000001"


@pytest.fixture(scope="module")
def iam() -> QueryModel:
    return QueryModel.load("iam", "2010-05-08")


@pytest.fixture(scope="module")
def sts() -> QueryModel:
    return QueryModel.load("sts", "2011-06-15")


def _botocore_model(service: str) -> botocore.model.ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def _wire(service: str, operation: str, params: dict[str, Any]) -> bytes:
    """The form body boto3 would send."""
    op = _botocore_model(service).operation_model(operation)
    request = botocore.serialize.create_serializer("query").serialize_to_request(params, op)
    return urlencode(request["body"], doseq=True).encode()


def _parsed(service: str, operation: str, body: bytes, status: int = 200) -> dict[str, Any]:
    op = _botocore_model(service).operation_model(operation)
    response = {"body": body, "headers": {}, "status_code": status}
    parsed: dict[str, Any] = botocore.parsers.create_parser("query").parse(response, op.output_shape)
    return parsed


def test_load_metadata(iam: QueryModel, sts: QueryModel) -> None:
    assert (iam.name, iam.xmlns, iam.api_version) == ("iam", IAM_NS, "2010-05-08")
    assert (sts.name, sts.xmlns, sts.api_version) == ("sts", STS_NS, "2011-06-15")
    assert "CreateRole" in iam.operations and "AssumeRole" in sts.operations
    assert iam.operations["ListRoles"].result_wrapper == "ListRolesResult"


ROUND_TRIPS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "iam",
        "CreateRole",
        {
            "RoleName": "app-role",
            "Path": "/service/",
            "AssumeRolePolicyDocument": '{"Version": "2012-10-17", "Statement": []}',
            "Description": "a role & <its> description",
            "MaxSessionDuration": 7200,
            "Tags": [{"Key": "team", "Value": "a b+c"}, {"Key": "env", "Value": ""}],
        },
    ),
    ("iam", "PutRolePolicy", {"RoleName": "r", "PolicyName": "p", "PolicyDocument": '{"a": "é=&"}'}),
    ("iam", "CreateUser", {"UserName": "alice", "Path": "/", "Tags": [{"Key": "k", "Value": "v"}]}),
    ("iam", "ListRoles", {"PathPrefix": "/a/", "Marker": "m+/=", "MaxItems": 5}),
    ("iam", "TagRole", {"RoleName": "r", "Tags": [{"Key": f"k{i}", "Value": str(i)} for i in range(12)]}),
    ("iam", "UntagRole", {"RoleName": "r", "TagKeys": ["a", "b"]}),
    ("iam", "CreateRole", {"RoleName": "r", "AssumeRolePolicyDocument": "{}", "Tags": []}),
    (
        "sts",
        "AssumeRole",
        {
            "RoleArn": "arn:aws:iam::000000000000:role/app-role",
            "RoleSessionName": "session-1",
            "DurationSeconds": 900,
            "PolicyArns": [{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}],
            "Tags": [{"Key": "k", "Value": "v"}],
            "TransitiveTagKeys": ["k"],
            "ExternalId": "ext",
        },
    ),
    ("sts", "GetCallerIdentity", {}),
]


@pytest.mark.parametrize(("service", "operation", "params"), ROUND_TRIPS)
def test_parse_round_trips_botocore_serializer(
    iam: QueryModel, sts: QueryModel, service: str, operation: str, params: dict[str, Any]
) -> None:
    model = iam if service == "iam" else sts
    name, parsed = model.parse(parse_form(_wire(service, operation, params)))
    assert (name, parsed) == (operation, params)
    model.validate(name, parsed)  # boto3's own valid input passes the constraints


def test_tag_list_keeps_index_order_past_nine(iam: QueryModel) -> None:
    tags = [{"Key": f"k{i}", "Value": ""} for i in range(1, 13)]
    form = parse_form(_wire("iam", "TagRole", {"RoleName": "r", "Tags": tags}))
    assert iam.parse(form)[1]["Tags"] == tags


# A model with the traits IAM and STS do not use (maps, flattened lists, locationName,
# booleans, blobs, nested structures), run through botocore's serializer as well.
SYNTHETIC: dict[str, Any] = {
    "metadata": {
        "apiVersion": "2020-01-01",
        "endpointPrefix": "synth",
        "protocol": "query",
        "xmlNamespace": "https://synth.example/doc/2020-01-01/",
        "serviceId": "Synth",
        "signatureVersion": "v4",
    },
    "operations": {
        "Do": {
            "name": "Do",
            "http": {"method": "POST", "requestUri": "/"},
            "input": {"shape": "DoInput"},
            "output": {"shape": "DoOutput", "resultWrapper": "DoResult"},
        }
    },
    "shapes": {
        "DoInput": {
            "type": "structure",
            "required": ["Name"],
            "members": {
                "Name": {"shape": "Str"},
                "Attrs": {"shape": "StrMap"},
                "Flat": {"shape": "FlatList"},
                "Named": {"shape": "NamedList", "locationName": "Alias"},
                "On": {"shape": "Bool"},
                "Data": {"shape": "Blob"},
                "Inner": {"shape": "Inner"},
                "Ratio": {"shape": "Double"},
            },
        },
        "DoOutput": {
            "type": "structure",
            "members": {
                "Attrs": {"shape": "StrMap"},
                "Flat": {"shape": "FlatList"},
                "Named": {"shape": "NamedList"},
                "On": {"shape": "Bool"},
                "Data": {"shape": "Blob"},
                "Inner": {"shape": "Inner"},
            },
        },
        "Inner": {"type": "structure", "members": {"Deep": {"shape": "StrList"}, "N": {"shape": "Int"}}},
        "StrMap": {
            "type": "map",
            "key": {"shape": "Str", "locationName": "Name"},
            "value": {"shape": "Str", "locationName": "Val"},
        },
        "FlatList": {"type": "list", "member": {"shape": "Str"}, "flattened": True},
        "NamedList": {"type": "list", "member": {"shape": "Str", "locationName": "item"}},
        "StrList": {"type": "list", "member": {"shape": "Str"}},
        "Str": {"type": "string"},
        "Bool": {"type": "boolean"},
        "Blob": {"type": "blob"},
        "Int": {"type": "integer"},
        "Double": {"type": "double"},
    },
}


def test_synthetic_traits_round_trip() -> None:
    model = QueryModel(copy.deepcopy(SYNTHETIC))
    boto_model = botocore.model.ServiceModel(copy.deepcopy(SYNTHETIC), "synth")
    op = boto_model.operation_model("Do")
    params = {
        "Name": "n",
        "Attrs": {"a": "1", "b": ""},
        "Flat": ["x", "y"],
        "Named": ["p"],
        "On": False,
        "Data": b"\x00\xffbin",
        "Inner": {"Deep": ["d1", "d2"], "N": -3},
        "Ratio": 0.5,
    }
    body = botocore.serialize.create_serializer("query").serialize_to_request(params, op)["body"]
    assert model.parse(parse_form(urlencode(body).encode())) == ("Do", params)

    result = {k: v for k, v in params.items() if k not in ("Name", "Ratio")}
    xml = model.serialize("Do", result, REQUEST_ID)
    parsed = botocore.parsers.create_parser("query").parse(
        {"body": xml, "headers": {}, "status_code": 200}, op.output_shape
    )
    assert parsed.pop("ResponseMetadata")["RequestId"] == REQUEST_ID
    assert parsed == result


def test_parse_rejects_missing_unknown_and_wrong_version(iam: QueryModel) -> None:
    with pytest.raises(IamError) as missing:
        iam.parse({"Version": "2010-05-08"})
    assert (missing.value.code, missing.value.status) == ("MissingAction", 400)
    with pytest.raises(IamError) as unknown:
        iam.parse({"Action": "LaunchRockets", "Version": "2010-05-08"})
    assert unknown.value.code == "InvalidAction"
    assert unknown.value.message == "Could not find operation LaunchRockets for version 2010-05-08"
    with pytest.raises(IamError) as version:
        iam.parse({"Action": "ListRoles", "Version": "2011-06-15"})
    assert version.value.message == "Could not find operation ListRoles for version 2011-06-15"
    assert iam.parse({"Action": "ListRoles"}) == ("ListRoles", {})


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"MaxItems": "ten"},
            "Value 'ten' at 'maxItems' failed to satisfy constraint: Member must be a number",
        ),
        (
            {"MaxItems": "1_0"},
            "Value '1_0' at 'maxItems' failed to satisfy constraint: Member must be a number",
        ),
    ],
)
def test_parse_rejects_bad_numbers(iam: QueryModel, form: dict[str, str], message: str) -> None:
    with pytest.raises(IamError) as info:
        iam.parse({"Action": "ListRoles", **form})
    assert info.value.code == "ValidationError"
    assert info.value.message == "1 validation error detected: " + message


def test_parse_booleans_and_ignores_unknown_names(iam: QueryModel) -> None:
    form = {
        "Action": "UpdateAccountPasswordPolicy",
        "RequireSymbols": "TRUE",
        "HardExpiry": "false",
        "X": "1",
    }
    assert iam.parse(form)[1] == {"RequireSymbols": True, "HardExpiry": False}
    stray = {"Action": "CreateRole", ".RoleName": "x", "Path.x": "y", "Description": "d"}
    assert iam.parse(stray)[1] == {"Description": "d"}
    with pytest.raises(IamError, match="Member must be a boolean"):
        iam.parse({"Action": "UpdateAccountPasswordPolicy", "RequireSymbols": "yes"})


def _validation_message(model: QueryModel, operation: str, params: dict[str, Any]) -> str:
    with pytest.raises(IamError) as info:
        model.validate(operation, params)
    assert (info.value.code, info.value.status, info.value.error_type) == ("ValidationError", 400, "Sender")
    return info.value.message


def test_validation_messages(iam: QueryModel, sts: QueryModel) -> None:
    doc = '{"Version":"2012-10-17"}'
    assert _validation_message(
        iam, "CreateRole", {"RoleName": "bad name!", "AssumeRolePolicyDocument": doc}
    ) == (
        "1 validation error detected: Value 'bad name!' at 'roleName' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [\w+=,.@-]+"
    )
    assert _validation_message(iam, "CreateRole", {"AssumeRolePolicyDocument": doc}) == (
        "1 validation error detected: Value null at 'roleName' failed to satisfy constraint: "
        "Member must not be null"
    )
    message = _validation_message(
        iam, "CreateRole", {"RoleName": "r" * 65, "AssumeRolePolicyDocument": doc, "MaxSessionDuration": 60}
    )
    assert message.startswith("2 validation errors detected: ")
    assert (
        f"Value '{'r' * 65}' at 'roleName' failed to satisfy constraint: "
        "Member must have length less than or equal to 64; "
    ) in message
    assert message.endswith(
        "Value '60' at 'maxSessionDuration' failed to satisfy constraint: "
        "Member must have value greater than or equal to 3600"
    )
    tags = [{"Key": "", "Value": "v"}]
    assert (
        "Value '' at 'tags.1.member.key' failed to satisfy constraint: Member must have length greater than or equal to 1"
        in (_validation_message(iam, "TagRole", {"RoleName": "r", "Tags": tags}))
    )
    assert "Member must satisfy enum value set: [All, AWS, Local]" in _validation_message(
        iam, "ListPolicies", {"Scope": "Everything"}
    )
    assert "Value '60' at 'durationSeconds'" in _validation_message(
        sts,
        "AssumeRole",
        {"RoleArn": "arn:aws:iam::000000000000:role/r", "RoleSessionName": "s", "DurationSeconds": 60},
    )
    assert "Value 'true' at 'maxItems' failed to satisfy constraint: Member must be a number" in (
        _validation_message(iam, "ListRoles", {"MaxItems": True})
    )


def test_validation_masks_sensitive_values(iam: QueryModel) -> None:
    message = _validation_message(
        iam, "CreateLoginProfile", {"UserName": "u", "Password": "hunter2\x00" * 20}
    )
    assert "hunter2" not in message and "Value '***' at 'password'" in message


def test_serialize_create_role(iam: QueryModel) -> None:
    created = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    role = {
        "Path": "/",
        "RoleName": "app-role",
        "RoleId": "AROA0000000000EXAMPLE",
        "Arn": "arn:aws:iam::000000000000:role/app-role",
        "CreateDate": created,
        "AssumeRolePolicyDocument": quote('{"Version":"2012-10-17"}', safe=""),
        "Description": "line1\r\nline2 <&> \"quoted\" 'single' é",
        "MaxSessionDuration": 3600,
        "Tags": [{"Key": "team", "Value": "a"}],
    }
    xml = iam.serialize("CreateRole", {"Role": role}, REQUEST_ID)
    assert xml.startswith(f'<CreateRoleResponse xmlns="{IAM_NS}"><CreateRoleResult><Role>'.encode())
    parsed = _parsed("iam", "CreateRole", xml)
    assert parsed["ResponseMetadata"]["RequestId"] == REQUEST_ID
    assert parsed["Role"] == {**role, "CreateDate": created.replace(microsecond=0)}


def test_serialize_list_roles_and_timestamp_inputs(iam: QueryModel) -> None:
    roles = [
        {
            "Path": "/",
            "RoleName": f"r{i}",
            "RoleId": f"AROA{i}",
            "Arn": f"arn:aws:iam::0:role/r{i}",
            "CreateDate": d,
        }
        for i, d in enumerate(
            [
                "2024-01-02T03:04:05Z",
                datetime(2024, 1, 2, 3, 4, 5),  # naive: UTC by convention
                datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            ]
        )
    ]
    parsed = _parsed(
        "iam",
        "ListRoles",
        iam.serialize("ListRoles", {"Roles": roles, "IsTruncated": True, "Marker": "m"}, REQUEST_ID),
    )
    expected = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert [r["CreateDate"] for r in parsed["Roles"]] == [expected] * 3
    assert [r["RoleName"] for r in parsed["Roles"]] == ["r0", "r1", "r2"]
    assert parsed["IsTruncated"] is True and parsed["Marker"] == "m"

    empty = _parsed(
        "iam", "ListRoles", iam.serialize("ListRoles", {"Roles": [], "IsTruncated": False}, REQUEST_ID)
    )
    assert empty["Roles"] == [] and empty["IsTruncated"] is False and "Marker" not in empty


def test_serialize_sts(sts: QueryModel) -> None:
    expiration = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    result: dict[str, Any] = {
        "Credentials": {
            "AccessKeyId": "ASIAAAAAAAAAAAAAAAAA",
            "SecretAccessKey": "s" * 40,
            "SessionToken": "token/+=",
            "Expiration": expiration,
        },
        "AssumedRoleUser": {
            "AssumedRoleId": "AROA0000:session-1",
            "Arn": "arn:aws:sts::000000000000:assumed-role/app-role/session-1",
        },
        "PackedPolicySize": 6,
    }
    xml = sts.serialize("AssumeRole", result, REQUEST_ID)
    assert b"<AssumeRoleResult>" in xml and f'xmlns="{STS_NS}"'.encode() in xml
    parsed = _parsed("sts", "AssumeRole", xml)
    assert parsed["Credentials"] == {**result["Credentials"], "Expiration": expiration}
    assert parsed["AssumedRoleUser"] == result["AssumedRoleUser"] and parsed["PackedPolicySize"] == 6

    identity = {"UserId": "AIDA0", "Account": "000000000000", "Arn": "arn:aws:iam::000000000000:root"}
    parsed = _parsed("sts", "GetCallerIdentity", sts.serialize("GetCallerIdentity", identity, REQUEST_ID))
    assert {k: parsed[k] for k in identity} == identity


def test_serialize_access_keys_map_and_empty_output(iam: QueryModel) -> None:
    keys = [
        {
            "UserName": "alice",
            "AccessKeyId": "AKIA0",
            "Status": "Active",
            "CreateDate": datetime(2024, 1, 1, tzinfo=timezone.utc),
        }
    ]
    parsed = _parsed(
        "iam",
        "ListAccessKeys",
        iam.serialize("ListAccessKeys", {"AccessKeyMetadata": keys, "IsTruncated": False}, REQUEST_ID),
    )
    assert parsed["AccessKeyMetadata"] == [
        {**keys[0], "CreateDate": datetime(2024, 1, 1, tzinfo=timezone.utc)}
    ]

    summary = {"Roles": 3, "Users": 1}
    parsed = _parsed(
        "iam", "GetAccountSummary", iam.serialize("GetAccountSummary", {"SummaryMap": summary}, REQUEST_ID)
    )
    assert parsed["SummaryMap"] == summary

    xml = iam.serialize("PutRolePolicy", None, REQUEST_ID)
    assert (
        xml
        == (
            f'<PutRolePolicyResponse xmlns="{IAM_NS}"><ResponseMetadata><RequestId>{REQUEST_ID}'
            "</RequestId></ResponseMetadata></PutRolePolicyResponse>"
        ).encode()
    )
    assert set(_parsed("iam", "PutRolePolicy", xml)) == {"ResponseMetadata"}


def _client_call(service: str, responder: Any, call: Any) -> Any:
    """A real boto3 client whose HTTP layer is replaced by Lamina's serializer."""
    client = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x", region_name="us-west-2"
    ).client(service, endpoint_url="http://127.0.0.1:1")

    def send(request: botocore.awsrequest.AWSPreparedRequest, **_: Any) -> botocore.awsrequest.AWSResponse:
        body_bytes = request.body.encode() if isinstance(request.body, str) else request.body
        status, body = responder(parse_form(body_bytes))
        raw = botocore.awsrequest.AWSResponse(request.url, status, {}, None)
        raw._content = body  # the response body botocore would have read from the socket
        return raw

    client.meta.events.register("before-send", send)
    return call(client)


def test_real_client_decodes_policy_document_and_raises_errors(iam: QueryModel) -> None:
    document = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'

    def respond(form: dict[str, str]) -> tuple[int, bytes]:
        op, params = iam.parse(form)
        if params["PolicyName"] == "missing":
            exc = IamError("NoSuchEntity", "The role policy with name missing cannot be found.", 404)
            return exc.status, iam.error(exc, REQUEST_ID)
        result = {**params, "PolicyDocument": quote(document, safe="")}
        return 200, iam.serialize(op, result, REQUEST_ID)

    got = _client_call("iam", respond, lambda c: c.get_role_policy(RoleName="r", PolicyName="p"))
    assert got["PolicyDocument"] == {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    with pytest.raises(botocore.exceptions.ClientError) as info:
        _client_call("iam", respond, lambda c: c.get_role_policy(RoleName="r", PolicyName="missing"))
    error = info.value.response["Error"]
    assert error == {
        "Type": "Sender",
        "Code": "NoSuchEntity",
        "Message": "The role policy with name missing cannot be found.",
    }
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert info.value.response["ResponseMetadata"]["RequestId"] == REQUEST_ID


@pytest.mark.parametrize(
    ("exc", "code", "kind"),
    [
        (
            IamError("EntityAlreadyExists", "Role with name r already exists.", 409),
            "EntityAlreadyExists",
            "Sender",
        ),
        (IamError("ServiceFailure", "oops <&>", 500, sender=False), "ServiceFailure", "Receiver"),
        (
            UnrecognizedClient("The security token included in the request is invalid."),
            "InvalidClientTokenId",
            "Sender",
        ),
        (ValidationError("1 validation error detected: x"), "ValidationError", "Sender"),
        (ServiceError("internal"), "InternalFailure", "Receiver"),
    ],
)
def test_error_documents_parse(sts: QueryModel, exc: IamError, code: str, kind: str) -> None:
    xml = sts.error(exc, REQUEST_ID)
    assert xml.startswith(f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>'.encode())
    parsed = _parsed("sts", "GetCallerIdentity", xml, status=exc.status)
    assert parsed["Error"] == {"Type": kind, "Code": code, "Message": exc.message}
    assert parsed["ResponseMetadata"]["RequestId"] == REQUEST_ID
    assert query_xml.query_code(exc) == code


def test_text_escaping_drops_characters_xml_cannot_carry() -> None:
    assert query_xml.text("a<b>&c\rd\x00e\x1f") == "a&lt;b&gt;&amp;c&#13;d\ufffde\ufffd"


def test_timestamp_rejects_garbage() -> None:
    assert query_xml.timestamp(0) == "1970-01-01T00:00:00Z"
    with pytest.raises(InternalError):
        query_xml.timestamp("yesterday")
    with pytest.raises(InternalError):
        query_xml.timestamp(object())


def test_parse_form() -> None:
    assert parse_form(b"Action=ListRoles&A=1&A=2&B=&C&D=a+b%2Bc%C3%A9") == {
        "Action": "ListRoles",
        "A": "2",
        "B": "",
        "C": "",
        "D": "a b+cé",
    }
    assert parse_form("K=é".encode()) == {"K": "é"}
    assert parse_form(b"") == {}
    for bad in (b"K=%FF%FE", b"K=\xff"):
        with pytest.raises(IamError) as info:
            parse_form(bad)
        assert (info.value.code, info.value.status) == ("MalformedQueryString", 404)
