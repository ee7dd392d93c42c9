"""Configuration history: the store, redaction, the principal, the control-plane hooks, the route."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from lamina.api import sigv4
from lamina.api.app import App, LambdaService, Observability
from lamina.control.aliases import Aliases
from lamina.control.changes import ConfigChange
from lamina.control.event_config import EventInvokeConfigs
from lamina.control.functions import Functions
from lamina.control.layers import Layers
from lamina.control.model import Alias, FunctionVersion
from lamina.errors import InvalidParameterValue
from lamina.settings import Settings
from lamina.store.artifacts import MemoryArtifactStore
from lamina.store.sqlite import SqliteMetadataStore
from lamina.telemetry.history import INTERNAL, REDACTED, HistoryStore, document, principal

ADMIN = "arn:aws:iam::000000000000:root"
SECRET = "hunter2-do-not-store"


class PlainCipher:
    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return plaintext

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        return blob


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def history(tmp_path: Path) -> Iterator[HistoryStore]:
    store = HistoryStore(tmp_path / "history.db", clock=iter(range(1, 1000)).__next__)
    yield store
    store.close()


def test_document_redacts_environment_values_and_keeps_names() -> None:
    alias = Alias("live", "fn", "arn:live", "1", "rev", routing={"2": 0.5})
    assert document(alias)["routing"] == {"2": 0.5}
    assert document({"environment": {"K": SECRET}, "tags": {"environment": "prod"}}) == {
        "environment": {"K": REDACTED}, "tags": {"environment": "prod"},
    }
    version = FunctionVersion(
        name="fn", version="$LATEST", arn="arn", runtime="python3.11", role="r", handler="h",
        code_sha256="s", code_size=1, code_key="k", revision_id="rev", last_modified="t",
        environment={"TOKEN": SECRET}, architectures=("x86_64",),
    )  # fmt: skip
    doc = document(version)
    assert doc["environment"] == {"TOKEN": REDACTED}
    assert doc["architectures"] == ["x86_64"]
    assert SECRET not in json.dumps(document([version, None]))


def test_entries_carry_the_principal_of_the_context(history: HistoryStore) -> None:
    history.record("CreateFunction", "fn", None, {"a": 1})
    token = principal.set(ADMIN)
    try:
        history.record("UpdateFunctionConfiguration", "fn", {"a": 1}, {"a": 2})
        history.record("PublishLayerVersion", "lib", None, {"v": 1}, kind="layer")
    finally:
        principal.reset(token)
    entries = history.entries("fn")
    assert [(e.id, e.time, e.principal, e.operation) for e in entries] == [
        (1, 1, INTERNAL, "CreateFunction"), (2, 2, ADMIN, "UpdateFunctionConfiguration"),
    ]
    assert (entries[1].before, entries[1].after) == ({"a": 1}, {"a": 2})
    assert [e.resource for e in history.entries(kind="layer")] == ["lib"]
    assert history.entries("other") == []


def test_page_limits_and_markers(history: HistoryStore) -> None:
    for i in range(5):
        history.record("TagResource", "fn", None, {"i": i})
    first = history.page("fn", {"MaxItems": "2"})
    assert [e["After"]["i"] for e in first["Entries"]] == [0, 1]
    second = history.page("fn", {"MaxItems": "3", "Marker": first["NextMarker"]})
    assert [e["After"]["i"] for e in second["Entries"]] == [2, 3, 4]
    assert "NextMarker" not in second
    for bad in ({"MaxItems": "0"}, {"MaxItems": "1001"}, {"Marker": "x"}, {"Marker": "-1"}):
        with pytest.raises(InvalidParameterValue):
            history.page("fn", bad)


def test_history_survives_reopening(tmp_path: Path) -> None:
    first = HistoryStore(tmp_path / "h.db")
    first.record("CreateFunction", "fn", None, {"x": 1})
    first.close()
    again = HistoryStore(tmp_path / "h.db")
    try:
        assert [e.operation for e in again.entries("fn")] == ["CreateFunction"]
    finally:
        again.close()


def test_control_plane_records_every_change_once(tmp_path: Path, history: HistoryStore) -> None:
    settings = Settings(data_dir=tmp_path)
    store = SqliteMetadataStore(tmp_path / "metadata.db", PlainCipher())
    artifacts = MemoryArtifactStore()
    functions = Functions(settings, store, artifacts, ("python3.11",))
    layers = Layers(settings, store, artifacts)
    functions.layers = layers
    functions.history = layers.history = history
    aliases, configs = Aliases(functions), EventInvokeConfigs(functions)
    code = make_zip({"index.py": b"def handler(e, c):\n    return 1\n"})
    change = ConfigChange(
        runtime="python3.11", role="arn:aws:iam::000000000000:role/r", handler="index.handler",
        environment={"TOKEN": SECRET},
    )  # fmt: skip

    async def body() -> None:
        token = principal.set(ADMIN)
        try:
            await functions.create("fn", code, change)
            await functions.settle()
            await functions.update_configuration("fn", ConfigChange(timeout=9))
            await functions.settle()
            await functions.update_code("fn", make_zip({"index.py": b"def handler(e, c):\n    return 2\n"}))
            await functions.settle()
            version = await functions.publish("fn")
            aliases.create("fn", "live", version.version)
            aliases.update("fn", "live", description="d")
            aliases.delete("fn", "live")
            aliases.delete("fn", "live")  # nothing left to delete: no entry
            configs.put("fn", None, 1, None, None)
            configs.update("fn", None, 0, None, None)
            configs.delete("fn", None)
            functions.tag(functions.arn("fn"), {"team": "a"})
            functions.untag(functions.arn("fn"), ["team"])
            functions.set_reserved_concurrency("fn", 5)
            functions.set_reserved_concurrency("fn", None)
            functions.delete("fn", version.version)
            functions.delete("fn")
            layers.publish("lib", make_zip({"python/x.py": b"X = 1\n"}))
            layers.delete("lib", 1)
            layers.delete("lib", 1)  # already deleted: no entry
        finally:
            principal.reset(token)

    try:
        asyncio.run(body())
    finally:
        store.close()
    entries = history.entries("fn")
    assert [e.operation for e in entries] == [
        "CreateFunction", "UpdateFunctionConfiguration", "UpdateFunctionCode", "PublishVersion",
        "CreateAlias", "UpdateAlias", "DeleteAlias",
        "PutFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig", "DeleteFunctionEventInvokeConfig",
        "TagResource", "UntagResource", "PutFunctionConcurrency", "DeleteFunctionConcurrency",
        "DeleteFunction", "DeleteFunction",
    ]
    assert {e.principal for e in entries} == {ADMIN}
    update = entries[1]
    assert (update.before["timeout"], update.after["timeout"]) == (3, 9)
    assert update.before["environment"] == update.after["environment"] == {"TOKEN": REDACTED}
    assert entries[8].before["maximum_retry_attempts"] == 1 and entries[8].after["maximum_retry_attempts"] == 0
    assert [v["version"] for v in entries[-2].before] == ["1"]
    assert [v["version"] for v in entries[-1].before] == ["$LATEST"]
    assert [e.operation for e in history.entries("lib", kind="layer")] == ["PublishLayerVersion", "DeleteLayerVersion"]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("history.db*"))
    assert SECRET.encode() not in raw and b"TOKEN" in raw


class StubVerifier:
    def __init__(self, principal_arn: str) -> None:
        self.principal_arn = principal_arn

    def verify(self, request: sigv4.HttpRequest) -> sigv4.Identity:
        return sigv4.Identity("AKID", self.principal_arn, "lambda", "us-east-1", False)


def call(app: App, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": headers}
    asyncio.run(app(scope, receive, send))
    start, body = sent
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body["body"]


def app_for(principal_arn: str, history: HistoryStore) -> App:
    async def metrics() -> bytes:
        return b"# metrics\n"

    async def download(request: sigv4.HttpRequest) -> bytes:
        return b""

    return App(
        cast(sigv4.Verifier, StubVerifier(principal_arn)), cast(LambdaService, None), download,
        ready=lambda: True, region="us-east-1",
        observability=Observability(metrics, history.page, frozenset({ADMIN})),
    )  # fmt: skip


def test_history_route_answers_admins_only(history: HistoryStore) -> None:
    history.record("CreateFunction", "fn", None, {"a": 1})
    signed = [(b"authorization", b"AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/lambda/aws4_request")]
    status, _, body = call(app_for(ADMIN, history), "/_lamina/history/fn", signed)
    assert status == 200 and [e["Operation"] for e in json.loads(body)["Entries"]] == ["CreateFunction"]
    role = "arn:aws:iam::000000000000:role/some-function-role"
    status, headers, _ = call(app_for(role, history), "/_lamina/history/fn", signed)
    assert (status, headers["x-amzn-errortype"]) == (403, "AccessDeniedException")
    status, headers, _ = call(app_for(ADMIN, history), "/_lamina/history/fn", [])
    assert (status, headers["x-amzn-errortype"]) == (403, "MissingAuthenticationTokenException")


def test_metrics_route_is_plain_text_without_auth(history: HistoryStore) -> None:
    status, headers, body = call(app_for(ADMIN, history), "/_lamina/metrics", [])
    assert (status, headers["content-type"], body) == (200, "text/plain; version=0.0.4; charset=utf-8", b"# metrics\n")


def test_records_from_worker_threads_keep_the_callers_principal(history: HistoryStore) -> None:
    async def body() -> None:
        principal.set(ADMIN)
        await asyncio.to_thread(history.record, "PublishLayerVersion", "lib", None, {"v": 1}, kind="layer")

    asyncio.run(body())
    [entry] = history.entries("lib", kind="layer")
    assert entry.principal == ADMIN
