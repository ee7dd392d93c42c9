"""Stopping and starting the server on the same data dir keeps functions, versions and keys."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

from test_compat_support import Functions, Server, client_for, function_arn, make_zip, stop_server


def test_functions_versions_aliases_and_credentials_survive_a_restart(
        server_factory: Callable[..., Server], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = server_factory(data_dir)
    credentials_before = first.credentials_path.read_bytes()
    lam = client_for(first)
    code = make_zip({"index.py": "def handler(e, c):\n    return 'persist'\n"})
    created = Functions(lam).create("persisted", code=code, Publish=True,
                                    Environment={"Variables": {"A1": "1"}})
    lam.create_alias(FunctionName="persisted", Name="live", FunctionVersion="1")
    before = lam.get_function_configuration(FunctionName="persisted")
    stop_server(first)

    second = server_factory(data_dir)
    assert second.credentials_path.read_bytes() == credentials_before
    lam = client_for(second)

    got = lam.get_function(FunctionName="persisted")
    config = got["Configuration"]
    assert config["FunctionArn"] == function_arn("persisted")
    assert config["CodeSha256"] == created["CodeSha256"]
    assert config["RevisionId"] == before["RevisionId"]
    assert config["Environment"] == {"Variables": {"A1": "1"}}
    assert config["State"] == "Active"
    with urllib.request.urlopen(got["Code"]["Location"], timeout=10) as resp:
        assert resp.read() == code
    versions = lam.list_versions_by_function(FunctionName="persisted")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]
    assert lam.get_alias(FunctionName="persisted", Name="live")["FunctionVersion"] == "1"
    assert lam.publish_version(FunctionName="persisted")["Version"] == "1"


def test_credentials_file_is_written_once(server_factory: Callable[..., Server],
                                          tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = server_factory(data_dir)
    key, secret = first.credentials()
    stop_server(first)
    second = server_factory(data_dir)
    assert second.credentials() == (key, secret)
    assert client_for(second).list_functions()["ResponseMetadata"]["HTTPStatusCode"] == 200
