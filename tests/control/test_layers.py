"""The layers service on the real SQLite store, an in-memory artifact store and a fake cipher."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lamina.api import shapes
from lamina.control.changes import ConfigChange
from lamina.control.functions import Functions
from lamina.control.layers import Layers, layer_aad
from lamina.control.model import FunctionVersion
from lamina.errors import (
    AccessDenied,
    IntegrityError,
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from lamina.settings import Limits, Settings
from lamina.store.artifacts import MemoryArtifactStore
from lamina.store.sqlite import SqliteMetadataStore

PREFIX = "arn:aws:lambda:us-east-1:000000000000:layer"
ROLE = "arn:aws:iam::000000000000:role/r"


class XorCipher:
    """A reversible stand-in for the key ring that checks the aad it is given back."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return aad + b"|" + bytes(b ^ 0x5A for b in plaintext)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        bound, _, body = blob.partition(b"|")
        assert bound == aad, "ciphertext bound to another identity"
        return bytes(b ^ 0x5A for b in body)


def make_zip(files: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (files or {"python/lib.py": b"VALUE = 1\n"}).items():
            archive.writestr(name, data)
    return buf.getvalue()


CLOCK = datetime(2024, 1, 31, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A small quota keeps the 250 MB rule testable with kilobytes of data.
    return Settings(data_dir=tmp_path, limits=Limits(unzipped_max_bytes=10_000))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteMetadataStore]:
    s = SqliteMetadataStore(tmp_path / "db", XorCipher())
    yield s
    s.close()


@pytest.fixture
def artifacts() -> MemoryArtifactStore:
    return MemoryArtifactStore()


@pytest.fixture
def layers(settings: Settings, store: SqliteMetadataStore, artifacts: MemoryArtifactStore) -> Layers:
    return Layers(settings, store, artifacts, clock=lambda: CLOCK, sweep_grace_seconds=0)


@pytest.fixture
def functions(settings: Settings, store: SqliteMetadataStore, artifacts: MemoryArtifactStore,
              layers: Layers) -> Functions:
    f = Functions(settings, store, artifacts, ("python3.11",))
    f.layers = layers
    return f


def test_publish_numbers_versions_and_stores_the_zip_encrypted_and_bound(
        layers: Layers, artifacts: MemoryArtifactStore) -> None:
    data = make_zip()
    first = layers.publish("lib", data, "d", ["python3.11"], ["x86_64"], "MIT")
    second = layers.publish(f"{PREFIX}:lib", make_zip({"b": b"2"}))
    assert (first.version, second.version) == (1, 2)
    assert first.version_arn == f"{PREFIX}:lib:1" and first.layer_arn == f"{PREFIX}:lib"
    assert first.created == "2024-01-31T12:00:00.000+0000"
    assert first.code_size == len(data) and first.unzipped_size == len(b"VALUE = 1\n")
    assert first.code_key.startswith(f"layer/{PREFIX}:lib:1/")
    assert layers.read_layer_key(first.code_key) == data
    digest = first.code_key.rsplit("/", 1)[1]
    with pytest.raises(IntegrityError):  # bound to the version ARN: another one does not open it
        artifacts.get(first.code_key, layer_aad(f"{PREFIX}:lib:2", digest))


def test_hostile_or_broken_zips_are_refused_with_aws_text(layers: Layers) -> None:
    with pytest.raises(InvalidParameterValue, match="Could not unzip uploaded file"):
        layers.publish("lib", b"not a zip")
    with pytest.raises(InvalidParameterValue, match="Unzipped size must be smaller than 10000 bytes"):
        layers.publish("lib", make_zip({"big": b"\0" * 20_000}))
    with pytest.raises(InvalidParameterValue):
        layers.publish("lib", make_zip({"../escape": b"x"}))


def test_get_and_get_by_arn(layers: Layers) -> None:
    published = layers.publish("lib", make_zip())
    assert layers.get("lib", 1) == published
    assert layers.get(f"{PREFIX}:lib", 1) == published
    assert layers.get_by_arn(f"{PREFIX}:lib:1") == published
    with pytest.raises(ResourceNotFound, match="The resource you requested does not exist."):
        layers.get("lib", 2)
    with pytest.raises(ResourceNotFound):
        layers.get_by_arn("arn:aws:lambda:eu-west-1:000000000000:layer:lib:1")
    with pytest.raises(InvalidParameterValue, match="Layer Version Cannot be less than 1"):
        layers.get("lib", 0)
    with pytest.raises(AccessDenied):
        layers.get("arn:aws:lambda:us-east-1:111111111111:layer:lib", 1)


def test_list_layers_shows_latest_matching_version_per_layer(layers: Layers) -> None:
    layers.publish("a", make_zip(), compatible_runtimes=["python3.11"], compatible_architectures=["x86_64"])
    layers.publish("a", make_zip(), compatible_runtimes=["provided.al2023"])
    layers.publish("b", make_zip(), compatible_runtimes=["python3.11"], compatible_architectures=["arm64"])
    page, marker = layers.list_layers(None, None, None, None)
    assert [(v.name, v.version) for v in page] == [("a", 2), ("b", 1)] and marker is None
    page, _ = layers.list_layers("python3.11", None, None, None)
    assert [(v.name, v.version) for v in page] == [("a", 1), ("b", 1)]
    page, _ = layers.list_layers("python3.11", "arm64", None, None)
    assert [(v.name, v.version) for v in page] == [("b", 1)]
    page, marker = layers.list_layers(None, None, None, 1)
    assert [v.name for v in page] == ["a"] and marker
    page, marker = layers.list_layers(None, None, marker, 1)
    assert [v.name for v in page] == ["b"] and marker is None


def test_list_versions_newest_first_with_filters_and_pages(layers: Layers) -> None:
    for runtime in ("python3.11", "provided.al2023", "python3.11"):
        layers.publish("lib", make_zip(), compatible_runtimes=[runtime])
    page, _ = layers.list_versions("lib", None, None, None, None)
    assert [v.version for v in page] == [3, 2, 1]
    page, _ = layers.list_versions("lib", "python3.11", None, None, None)
    assert [v.version for v in page] == [3, 1]
    page, marker = layers.list_versions("lib", None, None, None, 2)
    assert [v.version for v in page] == [3, 2] and marker
    page, marker = layers.list_versions("lib", None, None, marker, 2)
    assert [v.version for v in page] == [1] and marker is None
    assert layers.list_versions("nope", None, None, None, None) == ([], None)


def test_delete_is_idempotent_and_numbers_are_never_reused(
        layers: Layers, artifacts: MemoryArtifactStore) -> None:
    first = layers.publish("lib", make_zip())
    layers.delete("lib", 1)
    layers.delete("lib", 1)
    layers.delete("lib", 7)
    with pytest.raises(ResourceNotFound):
        layers.get("lib", 1)
    assert not artifacts.exists(first.code_key)  # nothing referenced it: swept at once
    assert layers.list_layers(None, None, None, None) == ([], None)
    assert layers.publish("lib", make_zip()).version == 2


def test_deleted_version_stays_usable_by_functions_that_reference_it(
        layers: Layers, functions: Functions, artifacts: MemoryArtifactStore) -> None:
    layer = layers.publish("lib", make_zip())

    async def scenario() -> FunctionVersion:
        created = await functions.create("f", make_zip({"index.py": b"x"}), _change(layers=(layer.version_arn,)))
        await functions.settle()
        return created

    created = asyncio.run(scenario())
    layers.delete("lib", 1)
    with pytest.raises(ResourceNotFound):
        layers.get("lib", 1)
    assert layers.list_versions("lib", None, None, None, None) == ([], None)
    # Still there for the worker and for the function's configuration.
    assert layers.for_function(created.layers)[0].code_key == layer.code_key
    assert layers.read_layer_key(layer.code_key) == make_zip()
    assert shapes.function_configuration(created)["Layers"] == [
        {"Arn": layer.version_arn, "CodeSize": layer.code_size}]
    # New references to it are refused.
    with pytest.raises(InvalidParameterValue, match=f"Layer version {PREFIX}:lib:1 does not exist."):
        layers.resolve_for_function([layer.version_arn])
    # Once the function lets go, the sweep removes row and artifact.
    assert layers.sweep() == 0
    functions.delete("f")
    assert layers.sweep() == 1
    assert not artifacts.exists(layer.code_key)
    with pytest.raises(ResourceNotFound):
        layers.for_function([layer.version_arn])


def test_sweep_waits_for_the_grace_period(settings: Settings, store: SqliteMetadataStore,
                                          artifacts: MemoryArtifactStore) -> None:
    slow = Layers(settings, store, artifacts, sweep_grace_seconds=3600)
    layer = slow.publish("lib", make_zip())
    slow.delete("lib", 1)
    assert artifacts.exists(layer.code_key)
    assert slow.sweep(now=layer.deleted_at or 0) == 0
    deleted_at = slow.for_function([layer.version_arn])[0].deleted_at
    assert deleted_at is not None and slow.sweep(now=deleted_at + 3600) == 1


def test_resolve_for_function_errors(layers: Layers) -> None:
    arns = [layers.publish(f"l{i}", make_zip()).version_arn for i in range(6)]
    assert [v.version_arn for v in layers.resolve_for_function(arns[:5])] == arns[:5]
    with pytest.raises(InvalidParameterValue, match=r"^Cannot reference more than 5 layers\.$"):
        layers.resolve_for_function(arns)
    with pytest.raises(InvalidParameterValue, match=rf"^Layer version {PREFIX}:l0:9 does not exist\.$"):
        layers.resolve_for_function([f"{PREFIX}:l0:9"])
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        layers.resolve_for_function(["arn:aws:lambda:::awslayer:Managed"])
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        layers.resolve_for_function(["arn:aws:lambda:us-east-1:111111111111:layer:l0:1"])
    with pytest.raises(InvalidParameterValue, match="expected to be in region us-east-1"):
        layers.resolve_for_function(["arn:aws:lambda:eu-west-1:000000000000:layer:l0:1"])
    second = layers.publish("l0", make_zip()).version_arn
    with pytest.raises(InvalidParameterValue,
                       match=f"same function. {arns[0]} and {second} are versions of the same layer."):
        layers.resolve_for_function([arns[0], second])
    with pytest.raises(InvalidParameterValue, match="Two different versions"):
        layers.resolve_for_function([arns[0], arns[0]])


def test_permissions_statements_revisions_and_errors(layers: Layers) -> None:
    layer = layers.publish("lib", make_zip())
    with pytest.raises(ResourceNotFound, match="No policy is associated with the given resource."):
        layers.get_policy("lib", 1)
    statement, rev1 = layers.add_permission("lib", 1, "one", "lambda:GetLayerVersion", "111111111111")
    assert statement == {"Sid": "one", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                         "Action": "lambda:GetLayerVersion", "Resource": layer.version_arn}
    with pytest.raises(ResourceConflict, match=r"The statement id \(one\) provided already exists"):
        layers.add_permission("lib", 1, "one", "lambda:GetLayerVersion", "*")
    with pytest.raises(PreconditionFailed, match="GetLayerPolicy"):
        layers.add_permission("lib", 1, "two", "lambda:GetLayerVersion", "*", revision_id="stale")
    org, rev2 = layers.add_permission("lib", 1, "two", "lambda:GetLayerVersion", "*", "o-abcdefghij", rev1)
    assert org["Principal"] == "*" and org["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}
    policy, revision = layers.get_policy(f"{PREFIX}:lib", 1)
    assert revision == rev2 != rev1
    assert policy["Version"] == "2012-10-17" and [s["Sid"] for s in policy["Statement"]] == ["one", "two"]
    stored = layers.get("lib", 1)
    assert layers.allows(stored, "111111111111") and layers.allows(stored, "222222222222", "o-abcdefghij")
    assert not layers.allows(stored, "222222222222") and layers.allows(stored, "000000000000")
    with pytest.raises(ResourceNotFound, match="Statement three is not found in resource policy."):
        layers.remove_permission("lib", 1, "three")
    with pytest.raises(PreconditionFailed):
        layers.remove_permission("lib", 1, "one", revision_id=rev1)
    layers.remove_permission("lib", 1, "one", revision_id=rev2)
    layers.remove_permission("lib", 1, "two")
    with pytest.raises(ResourceNotFound, match="No policy"):
        layers.get_policy("lib", 1)
    with pytest.raises(ResourceNotFound, match=f"Layer version {PREFIX}:lib:5 does not exist."):
        layers.add_permission("lib", 5, "x", "lambda:GetLayerVersion", "*")


def test_policy_is_enforced_for_other_accounts(layers: Layers) -> None:
    arn = layers.publish("lib", make_zip()).version_arn
    with pytest.raises(AccessDenied, match="because no resource-based policy allows"):
        layers.resolve_for_function([arn], caller_account="111111111111")
    layers.add_permission("lib", 1, "share", "lambda:GetLayerVersion", "111111111111")
    assert layers.resolve_for_function([arn], caller_account="111111111111")


def _change(**kw: object) -> ConfigChange:
    values: dict[str, object] = dict(runtime="python3.11", role=ROLE, handler="index.handler")
    values.update(kw)
    return ConfigChange(**values)  # type: ignore[arg-type]


def test_functions_check_layers_and_the_combined_size(layers: Layers, functions: Functions) -> None:
    small = layers.publish("small", make_zip({"a": b"a" * 1000})).version_arn
    big = layers.publish("big", make_zip({"b": b"b" * 8000})).version_arn

    async def scenario() -> None:
        created = await functions.create("f", make_zip({"index.py": b"c" * 500}), _change(layers=(small,)))
        assert created.unzipped_size == 500 and created.layer_code_sizes[0] > 0
        await functions.settle()
        with pytest.raises(InvalidParameterValue, match=r"does not exist"):
            await functions.update_configuration("f", ConfigChange(layers=(f"{PREFIX}:small:9",)))
        with pytest.raises(InvalidParameterValue, match=(
                r"^Function code combined with layers exceeds the maximum allowed size of 10000 bytes\. "
                r"The actual size is 10001 bytes\.$")):
            await functions.create("g", make_zip({"index.py": b"c" * 1001}), _change(layers=(small, big)))
        # Exactly at the quota is allowed ("exceeds" the maximum).
        await functions.create("h", make_zip({"index.py": b"c" * 1000}), _change(layers=(small, big)))
        updated = await functions.update_configuration("f", ConfigChange(layers=(small, big)))
        assert updated.layers == (small, big)
        await functions.settle()
        with pytest.raises(InvalidParameterValue, match="The actual size is 10001 bytes."):
            await functions.update_code("f", make_zip({"index.py": b"c" * 1001}))
        cleared = await functions.update_configuration("f", ConfigChange(layers=()))
        assert cleared.layers == () and "Layers" not in shapes.function_configuration(cleared)
        await functions.settle()

    asyncio.run(scenario())


def test_function_versions_stored_before_layers_read_back(store: SqliteMetadataStore) -> None:
    """Documents without unzipped_size/layer_code_sizes (older data dirs) still load."""
    version = FunctionVersion("f", "$LATEST", "arn", "python3.11", ROLE, "h", "s", 1, "k", "r", "t")
    doc = version.to_doc()
    del doc["unzipped_size"], doc["layer_code_sizes"]
    loaded = FunctionVersion.from_doc(json.loads(json.dumps(doc)), {})
    assert loaded == replace(version, unzipped_size=0, layer_code_sizes=())
