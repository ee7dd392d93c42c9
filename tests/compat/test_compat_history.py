"""Configuration history through the real server: the signed API route and `lamina history`.

Every change made with boto3 is recorded with the admin's ARN, the operation and the
configuration before and after; environment variable values never reach history.db.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from contextlib import redirect_stdout
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from test_compat_support import ACCOUNT, REGION, Functions, Server, make_zip, wait_updated

from lamina import cli

ADMIN = f"arn:aws:iam::{ACCOUNT}:root"
SECRET = "s3cr3t-value-that-must-not-leak-7f2c"


def get_history(server: Server, name: str, query: str = "", *, secret: str | None = None) -> Any:
    key, real_secret = server.credentials()
    url = f"{server.endpoint}/_lamina/history/{name}" + (f"?{query}" if query else "")
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials(key, secret or real_secret), "lambda", REGION).add_auth(request)
    prepared = request.prepare()
    with urllib.request.urlopen(
        urllib.request.Request(url, headers=dict(prepared.headers), method="GET"), timeout=10
    ) as resp:
        return json.loads(resp.read())


def status_of(call: Any) -> tuple[int, str]:
    with pytest.raises(urllib.error.HTTPError) as info:
        call()
    error = info.value
    error.close()
    return error.code, str(error.headers.get("x-amzn-errortype", ""))


def make_changes(lam: Any, functions: Functions, name: str) -> str:
    functions.create(name, Environment={"Variables": {"API_TOKEN": SECRET}})
    lam.update_function_configuration(FunctionName=name, Timeout=7, Environment={"Variables": {"API_TOKEN": SECRET + "2"}})
    wait_updated(lam, name)
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"index.py": "def handler(e, c):\n    return 2\n"}))
    wait_updated(lam, name)
    version: str = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    lam.delete_alias(FunctionName=name, Name="live")
    lam.delete_function(FunctionName=name)
    return version


def test_history_after_create_update_publish_delete(
    server: Server, lam: Any, functions: Functions, fn_name: str
) -> None:
    version = make_changes(lam, functions, fn_name)
    entries = get_history(server, fn_name)["Entries"]
    assert [e["Operation"] for e in entries] == [
        "CreateFunction", "UpdateFunctionConfiguration", "UpdateFunctionCode", "PublishVersion",
        "CreateAlias", "DeleteAlias", "DeleteFunction",
    ]
    assert {e["Principal"] for e in entries} == {ADMIN}
    assert all(e["Resource"] == fn_name for e in entries)
    created, config = entries[0], entries[1]
    assert created["Before"] is None and created["After"]["runtime"] == "python3.11"
    assert created["After"]["environment"] == {"API_TOKEN": "****"}
    assert config["Before"]["timeout"] == 3 and config["After"]["timeout"] == 7
    assert config["After"]["environment"] == {"API_TOKEN": "****"}
    assert entries[2]["Before"]["code_sha256"] != entries[2]["After"]["code_sha256"]
    assert entries[3]["After"]["version"] == version
    assert entries[4]["After"]["function_version"] == version
    deleted = entries[6]
    assert deleted["After"] is None
    assert sorted(v["version"] for v in deleted["Before"]) == sorted(["$LATEST", version])
    assert entries == sorted(entries, key=lambda e: e["Time"])

    data = (server.data_dir / "history.db").read_bytes()
    for suffix in ("-wal", "-shm"):
        extra = server.data_dir / f"history.db{suffix}"
        if extra.exists():
            data += extra.read_bytes()
    assert SECRET.encode() not in data
    assert b"API_TOKEN" in data  # the name is kept: only values are secrets


def test_history_pages_with_marker(server: Server, lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name)
    for timeout in (4, 5, 6):
        lam.update_function_configuration(FunctionName=fn_name, Timeout=timeout)
        wait_updated(lam, fn_name)
    first = get_history(server, fn_name, "MaxItems=3")
    assert len(first["Entries"]) == 3
    rest = get_history(server, fn_name, f"Marker={first['NextMarker']}&MaxItems=3")
    assert [e["After"]["timeout"] for e in rest["Entries"]] == [6]
    assert "NextMarker" not in rest
    assert get_history(server, "no-such-function-here")["Entries"] == []


def test_history_route_requires_a_valid_signature(server: Server) -> None:
    url = f"{server.endpoint}/_lamina/history/anything"
    code, kind = status_of(lambda: urllib.request.urlopen(url, timeout=10))
    assert (code, kind) == (403, "MissingAuthenticationTokenException")
    code, kind = status_of(lambda: get_history(server, "anything", secret="wrong" * 8))
    assert code == 403 and kind in ("InvalidSignatureException", "UnrecognizedClientException")


def test_lamina_history_cli_prints_entries(server: Server, lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Environment={"Variables": {"API_TOKEN": SECRET}})
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["history", fn_name, "--data-dir", str(server.data_dir)]) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["Operation"] for e in lines] == ["CreateFunction"]
    assert lines[0]["Principal"] == ADMIN
    assert SECRET not in out.getvalue()
