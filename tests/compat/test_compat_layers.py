"""Layers through the real boto3: publish, read, list, delete, share, and use from functions.

Asserts AWS Lambda's shapes (botocore's model), status codes and messages. The invoke tests at
the end run functions whose layers the worker merges into /opt.
"""

from __future__ import annotations

import io
import json
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_compat_support import (
    ACCOUNT,
    REGION,
    Functions,
    error_of,
    make_zip,
    sha256_b64,
    wait_updated,
)

RUNTIME = "python3.11"
LIMIT = 262_144_000


def layer_prefix() -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer"


@pytest.fixture
def layer_name(lam: Any) -> Iterator[str]:
    name = f"layer-{uuid.uuid4().hex[:12]}"
    yield name
    for version in lam.list_layer_versions(LayerName=name).get("LayerVersions", []):
        lam.delete_layer_version(LayerName=name, VersionNumber=version["Version"])


def publish(lam: Any, name: str, files: dict[str, str | bytes] | None = None, **params: Any) -> Any:
    return lam.publish_layer_version(
        LayerName=name, Content={"ZipFile": make_zip(files or {"python/lib_a.py": "A = 1\n"})}, **params)


def test_publish_two_versions_and_read_them(lam: Any, layer_name: str) -> None:
    data = make_zip({"python/lib_a.py": "A = 1\n"})
    first = lam.publish_layer_version(
        LayerName=layer_name, Content={"ZipFile": data}, Description="first",
        CompatibleRuntimes=[RUNTIME], CompatibleArchitectures=["x86_64"], LicenseInfo="MIT")
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert first["LayerArn"] == f"{layer_prefix()}:{layer_name}"
    assert first["LayerVersionArn"] == f"{layer_prefix()}:{layer_name}:1"
    assert first["Version"] == 1 and first["Description"] == "first" and first["LicenseInfo"] == "MIT"
    assert first["CompatibleRuntimes"] == [RUNTIME] and first["CompatibleArchitectures"] == ["x86_64"]
    assert first["Content"]["CodeSha256"] == sha256_b64(data) and first["Content"]["CodeSize"] == len(data)
    assert first["CreatedDate"].endswith("+0000")
    second = publish(lam, layer_name, CompatibleRuntimes=["provided.al2023"])
    assert second["Version"] == 2

    got = lam.get_layer_version(LayerName=layer_name, VersionNumber=1)
    assert {k: got[k] for k in ("LayerVersionArn", "Description", "Version")} == {
        "LayerVersionArn": first["LayerVersionArn"], "Description": "first", "Version": 1}
    by_arn = lam.get_layer_version_by_arn(Arn=second["LayerVersionArn"])
    assert by_arn["Version"] == 2 and by_arn["CompatibleRuntimes"] == ["provided.al2023"]
    with urllib.request.urlopen(got["Content"]["Location"], timeout=10) as response:
        assert response.read() == data


def test_list_layers_and_versions_with_filters(lam: Any, layer_name: str) -> None:
    publish(lam, layer_name, CompatibleRuntimes=[RUNTIME], CompatibleArchitectures=["x86_64"])
    publish(lam, layer_name, CompatibleRuntimes=["provided.al2023"], CompatibleArchitectures=["arm64"])
    versions = lam.list_layer_versions(LayerName=layer_name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    filtered = lam.list_layer_versions(LayerName=layer_name, CompatibleRuntime=RUNTIME)["LayerVersions"]
    assert [v["Version"] for v in filtered] == [1]
    mine = [x for x in lam.list_layers()["Layers"] if x["LayerName"] == layer_name]
    assert [x["LatestMatchingVersion"]["Version"] for x in mine] == [2]
    mine = [x for x in lam.list_layers(CompatibleRuntime=RUNTIME, CompatibleArchitecture="x86_64")["Layers"]
            if x["LayerName"] == layer_name]
    assert [x["LatestMatchingVersion"]["Version"] for x in mine] == [1]
    assert mine[0]["LayerArn"] == f"{layer_prefix()}:{layer_name}"
    page = lam.list_layer_versions(LayerName=layer_name, MaxItems=1)
    assert [v["Version"] for v in page["LayerVersions"]] == [2] and page["NextMarker"]
    rest = lam.list_layer_versions(LayerName=layer_name, MaxItems=1, Marker=page["NextMarker"])
    assert [v["Version"] for v in rest["LayerVersions"]] == [1] and "NextMarker" not in rest
    assert lam.list_layer_versions(LayerName=f"nothing-{uuid.uuid4().hex[:8]}")["LayerVersions"] == []


def test_delete_is_idempotent_and_hides_the_version(lam: Any, layer_name: str) -> None:
    publish(lam, layer_name)
    response = lam.delete_layer_version(LayerName=layer_name, VersionNumber=1)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    lam.delete_layer_version(LayerName=layer_name, VersionNumber=1)
    with pytest.raises(ClientError) as exc:
        lam.get_layer_version(LayerName=layer_name, VersionNumber=1)
    assert error_of(exc) == ("ResourceNotFoundException", 404, "The resource you requested does not exist.")
    assert publish(lam, layer_name)["Version"] == 2  # numbers are never reused


def test_publish_errors(lam: Any, lam_raw: Any, layer_name: str) -> None:
    with pytest.raises(ClientError) as exc:
        lam.publish_layer_version(LayerName=layer_name, Content={"ZipFile": b"not a zip"})
    assert error_of(exc)[:2] == ("InvalidParameterValueException", 400)
    assert "Could not unzip uploaded file" in error_of(exc)[2]
    with pytest.raises(ClientError) as exc:
        lam.publish_layer_version(LayerName=layer_name, Content={"S3Bucket": "bucket", "S3Key": "k.zip"})
    assert error_of(exc)[:2] == ("InvalidParameterValueException", 400)
    with pytest.raises(ClientError) as exc:
        lam.publish_layer_version(LayerName=layer_name, Content={})
    assert error_of(exc) == ("InvalidParameterValueException", 400, "Missing Content")
    with pytest.raises(ClientError) as exc:
        lam_raw.publish_layer_version(LayerName=layer_name, Content={"ZipFile": make_zip()},
                                      CompatibleRuntimes=["cobol"])
    assert error_of(exc)[:2] == ("ValidationException", 400)


def test_layer_permissions(lam: Any, layer_name: str) -> None:
    version_arn = publish(lam, layer_name)["LayerVersionArn"]
    with pytest.raises(ClientError) as exc:
        lam.get_layer_version_policy(LayerName=layer_name, VersionNumber=1)
    assert error_of(exc) == ("ResourceNotFoundException", 404, "No policy is associated with the given resource.")
    added = lam.add_layer_version_permission(
        LayerName=layer_name, VersionNumber=1, StatementId="xaccount",
        Action="lambda:GetLayerVersion", Principal="210987654321")
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(added["Statement"]) == {
        "Sid": "xaccount", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
        "Action": "lambda:GetLayerVersion", "Resource": version_arn}
    with pytest.raises(ClientError) as exc:
        lam.add_layer_version_permission(LayerName=layer_name, VersionNumber=1, StatementId="xaccount",
                                         Action="lambda:GetLayerVersion", Principal="*")
    assert error_of(exc)[:2] == ("ResourceConflictException", 409)
    with pytest.raises(ClientError) as exc:
        lam.add_layer_version_permission(LayerName=layer_name, VersionNumber=1, StatementId="other",
                                         Action="lambda:GetLayerVersion", Principal="*", RevisionId="stale")
    assert error_of(exc)[:2] == ("PreconditionFailedException", 412)
    lam.add_layer_version_permission(LayerName=layer_name, VersionNumber=1, StatementId="org",
                                     Action="lambda:GetLayerVersion", Principal="*",
                                     OrganizationId="o-abcdefghij", RevisionId=added["RevisionId"])
    policy = lam.get_layer_version_policy(LayerName=layer_name, VersionNumber=1)
    document = json.loads(policy["Policy"])
    assert [s["Sid"] for s in document["Statement"]] == ["xaccount", "org"]
    assert policy["RevisionId"] != added["RevisionId"]
    removed = lam.remove_layer_version_permission(LayerName=layer_name, VersionNumber=1, StatementId="org")
    assert removed["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        lam.remove_layer_version_permission(LayerName=layer_name, VersionNumber=1, StatementId="org")
    assert error_of(exc) == ("ResourceNotFoundException", 404, "Statement org is not found in resource policy.")
    with pytest.raises(ClientError) as exc:
        lam.add_layer_version_permission(LayerName=layer_name, VersionNumber=9, StatementId="s",
                                         Action="lambda:GetLayerVersion", Principal="*")
    assert error_of(exc) == ("ResourceNotFoundException", 404,
                             f"Layer version {layer_prefix()}:{layer_name}:9 does not exist.")


def test_functions_take_layers(lam: Any, functions: Functions, fn_name: str, layer_name: str) -> None:
    one = publish(lam, layer_name)
    created = functions.create(fn_name, Layers=[one["LayerVersionArn"]])
    assert created["Layers"] == [{"Arn": one["LayerVersionArn"], "CodeSize": one["Content"]["CodeSize"]}]
    two = publish(lam, layer_name, {"python/lib_b.py": "B = 2\n" * 10})
    lam.update_function_configuration(FunctionName=fn_name, Layers=[two["LayerVersionArn"]])
    wait_updated(lam, fn_name)
    config = lam.get_function_configuration(FunctionName=fn_name)
    assert config["Layers"] == [{"Arn": two["LayerVersionArn"], "CodeSize": two["Content"]["CodeSize"]}]
    # A deleted layer version keeps working for functions that already reference it.
    lam.delete_layer_version(LayerName=layer_name, VersionNumber=2)
    config = lam.get_function_configuration(FunctionName=fn_name)
    assert [layer["Arn"] for layer in config["Layers"]] == [two["LayerVersionArn"]]
    lam.update_function_configuration(FunctionName=fn_name, Description="still fine")
    wait_updated(lam, fn_name)
    # ...but cannot be newly referenced.
    with pytest.raises(ClientError) as exc:
        functions.create(f"{fn_name}-b", Layers=[two["LayerVersionArn"]])
    assert error_of(exc) == ("InvalidParameterValueException", 400,
                             f"Layer version {two['LayerVersionArn']} does not exist.")


def test_function_layer_errors(lam: Any, lam_raw: Any, functions: Functions, fn_name: str,
                               layer_name: str) -> None:
    arns = [publish(lam, layer_name)["LayerVersionArn"] for _ in range(2)]
    unknown = f"{layer_prefix()}:{layer_name}:99"
    cases: list[tuple[list[str], str]] = [
        ([unknown], f"Layer version {unknown} does not exist."),
        ([arns[0]] * 6, "Cannot reference more than 5 layers."),
        (arns, "Two different versions of the same layer are not allowed to be referenced in the same "
               f"function. {arns[0]} and {arns[1]} are versions of the same layer."),
    ]
    for layers, message in cases:
        with pytest.raises(ClientError) as exc:
            functions.create(fn_name, Layers=layers)
        assert error_of(exc) == ("InvalidParameterValueException", 400, message)
    with pytest.raises(ClientError) as exc:
        lam_raw.create_function(FunctionName=fn_name, Runtime=RUNTIME, Handler="index.handler",
                                Role=f"arn:aws:iam::{ACCOUNT}:role/lambda-role", Code={"ZipFile": make_zip()},
                                Layers=["not-an-arn"])
    assert error_of(exc)[:2] == ("ValidationException", 400)
    functions.create(fn_name)
    with pytest.raises(ClientError) as exc:
        lam.update_function_configuration(FunctionName=fn_name, Layers=[unknown])
    assert error_of(exc) == ("InvalidParameterValueException", 400, f"Layer version {unknown} does not exist.")


def _zeros_zip(name: str, size: int) -> bytes:
    """A small zip that unpacks to ``size`` zero bytes (deflate packs them ~1000:1)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as f:
            chunk = b"\0" * (1 << 20)
            left = size
            while left:
                f.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
    return buf.getvalue()


def test_code_and_layers_together_stay_within_250_mb(lam: Any, functions: Functions, fn_name: str,
                                                    layer_name: str) -> None:
    half = LIMIT // 2
    first = lam.publish_layer_version(LayerName=layer_name, Content={"ZipFile": _zeros_zip("a", half)})
    second_name = f"{layer_name}-2"
    second = lam.publish_layer_version(LayerName=second_name, Content={"ZipFile": _zeros_zip("b", half)})
    try:
        code = make_zip()
        with zipfile.ZipFile(io.BytesIO(code)) as archive:
            code_size = sum(info.file_size for info in archive.infolist())
        with pytest.raises(ClientError) as exc:
            functions.create(fn_name, code=code,
                             Layers=[first["LayerVersionArn"], second["LayerVersionArn"]])
        assert error_of(exc) == (
            "InvalidParameterValueException", 400,
            f"Function code combined with layers exceeds the maximum allowed size of {LIMIT} bytes. "
            f"The actual size is {LIMIT + code_size} bytes.")
    finally:
        lam.delete_layer_version(LayerName=second_name, VersionNumber=1)


# -- inside the sandbox ----------------------------------------------------------------------

PROBE = '''
import os, subprocess

def handler(event, context):
    import shared, only_first
    return {
        "shared": shared.WHO,
        "only_first": only_first.WHO,
        "data": open("/opt/data.txt").read(),
        "path": os.environ.get("PATH", ""),
        "ld": os.environ.get("LD_LIBRARY_PATH", ""),
        "lib": os.listdir("/opt/lib"),
        "tool": subprocess.run(["tool"], capture_output=True, text=True).stdout,
        "writable": os.access("/opt", os.W_OK),
    }
'''


def test_layers_are_merged_read_only_at_opt(lam: Any, functions: Functions, fn_name: str,
                                            layer_name: str) -> None:
    first = publish(lam, layer_name, {
        "python/shared.py": "WHO = 'first'\n", "python/only_first.py": "WHO = 'first'\n",
        "data.txt": "from first", "lib/libfirst.so.txt": "x"})
    second_name = f"{layer_name}-2"
    tool = zipfile.ZipInfo("bin/tool", date_time=(2024, 1, 1, 0, 0, 0))
    tool.external_attr = 0o755 << 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("python/shared.py", "WHO = 'second'\n")
        archive.writestr("data.txt", "from second")
        archive.writestr(tool, "#!/bin/sh\necho tool-ran\n")
    second = lam.publish_layer_version(LayerName=second_name, Content={"ZipFile": buf.getvalue()})
    try:
        functions.create(fn_name, code=make_zip({"index.py": PROBE}), Timeout=10,
                         Layers=[first["LayerVersionArn"], second["LayerVersionArn"]])
        response = lam.invoke(FunctionName=fn_name, Payload=b"{}")
        result = json.loads(response["Payload"].read())
        assert "FunctionError" not in response, result
        assert result["shared"] == "second" and result["only_first"] == "first"
        assert result["data"] == "from second"
        assert "/opt/bin" in result["path"].split(":") and "/opt/lib" in result["ld"].split(":")
        assert result["lib"] == ["libfirst.so.txt"] and result["tool"] == "tool-ran\n"
        assert result["writable"] is False
    finally:
        lam.delete_layer_version(LayerName=second_name, VersionNumber=1)


def test_deleted_layer_still_runs_for_its_function(lam: Any, functions: Functions, fn_name: str,
                                                   layer_name: str) -> None:
    layer = publish(lam, layer_name, {"python/shared.py": "WHO = 'kept'\n"})
    code = make_zip({"index.py": "import shared\ndef handler(e, c):\n    return shared.WHO\n"})
    functions.create(fn_name, code=code, Layers=[layer["LayerVersionArn"]])
    lam.delete_layer_version(LayerName=layer_name, VersionNumber=1)
    lam.update_function_configuration(FunctionName=fn_name, MemorySize=256)  # a fresh environment
    wait_updated(lam, fn_name)
    response = lam.invoke(FunctionName=fn_name, Payload=b"{}")
    assert json.loads(response["Payload"].read()) == "kept"
