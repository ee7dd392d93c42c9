"""The SQLite metadata store: transactions, migrations, secrets encrypted at rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.control.model import AccessKey, Alias, Function, FunctionVersion
from lamina.errors import StoreError
from lamina.store.sqlite import MIGRATIONS, SqliteMetadataStore


class XorCipher:
    """A reversible stand-in for the key ring that also records the aad it was given."""

    def __init__(self) -> None:
        self.aads: list[bytes] = []

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        self.aads.append(aad)
        return aad + b"|" + bytes(b ^ 0x5A for b in plaintext)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        bound, _, body = blob.partition(b"|")
        assert bound == aad, "ciphertext bound to another identity"
        return bytes(b ^ 0x5A for b in body)


def _version(name: str = "f", version: str = "$LATEST", **kw: object) -> FunctionVersion:
    values: dict[str, object] = dict(
        name=name, version=version, arn=f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
        runtime="python3.11", role="arn:aws:iam::000000000000:role/r", handler="h.handler",
        code_sha256="sha", code_size=1, code_key="k", revision_id="r1", last_modified="t",
    )
    values.update(kw)
    return FunctionVersion(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> SqliteMetadataStore:
    return SqliteMetadataStore(tmp_path / "db", XorCipher())


def test_round_trip_and_cascade(store: SqliteMetadataStore) -> None:
    with store.transaction() as tx:
        tx.put_function(Function("f", "arn", "t", tags={"a": "b"}))
        tx.put_version(_version(environment={"SECRET": "marker-xyz"}))
        tx.put_version(_version(version="2"))
        tx.put_version(_version(version="10"))
        tx.put_alias(Alias("live", "f", "arn:live", "2", "r"))
    with store.transaction() as tx:
        assert tx.get_function("f") == Function("f", "arn", "t", tags={"a": "b"})
        assert [v.version for v in tx.list_versions("f")] == ["$LATEST", "2", "10"]
        latest = tx.get_version("f", "$LATEST")
        assert latest is not None and latest.environment == {"SECRET": "marker-xyz"}
        assert tx.get_alias("f", "live") is not None
        tx.delete_function("f")
    with store.transaction() as tx:
        assert tx.get_function("f") is None
        assert tx.list_versions("f") == []
        assert tx.list_aliases("f") == []


def test_failed_transaction_rolls_back(store: SqliteMetadataStore) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.put_function(Function("f", "arn", "t"))
            raise RuntimeError("boom")
    with store.transaction() as tx:
        assert tx.get_function("f") is None


def test_secrets_are_not_stored_in_plaintext(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "db", XorCipher())
    with store.transaction() as tx:
        tx.put_function(Function("f", "arn", "t"))
        tx.put_version(_version(environment={"K": "env-marker-123"}))
        tx.put_access_key(AccessKey("AKIAX", "secret-marker-456", "arn:root", "t"))
    with store.transaction() as tx:
        key = tx.get_access_key("AKIAX")
        assert key is not None and key.secret_access_key == "secret-marker-456"
    store.close()
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert b"env-marker-123" not in data and b"secret-marker-456" not in data


def test_migrations_are_applied_once(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "db", XorCipher())
    assert store.schema_version == len(MIGRATIONS)
    store.close()
    again = SqliteMetadataStore(tmp_path / "db", XorCipher())
    assert again.schema_version == len(MIGRATIONS)


def test_closed_store_raises(store: SqliteMetadataStore) -> None:
    store.close()
    with pytest.raises(StoreError):
        with store.transaction():
            pass


def test_list_functions_pages_by_name(store: SqliteMetadataStore) -> None:
    with store.transaction() as tx:
        for name in ["c", "a", "b"]:
            tx.put_function(Function(name, "arn", "t"))
    with store.transaction() as tx:
        assert [f.name for f in tx.list_functions(None, 2)] == ["a", "b"]
        assert [f.name for f in tx.list_functions("b", 2)] == ["c"]


def test_layer_versions_are_never_reused_and_list_newest_first(store: SqliteMetadataStore) -> None:
    from lamina.control.model import LayerVersion

    def layer(version: int) -> LayerVersion:
        return LayerVersion("lib", version, "arn:l", f"arn:l:{version}", "t", "sha", 1, "k", 2)

    with store.transaction() as tx:
        assert tx.next_layer_version("lib") == 1
        tx.put_layer_version(layer(1))
        assert tx.next_layer_version("lib") == 2
        tx.put_layer_version(layer(2))
    with store.transaction() as tx:
        assert [v.version for v in tx.list_layer_versions("lib")] == [2, 1]
        tx.delete_layer_version("lib", 2)
        tx.delete_layer_version("lib", 1)
        assert tx.list_layer_names(None, 10) == []
        assert tx.next_layer_version("lib") == 3


def test_event_invoke_configs_go_with_their_function(store: SqliteMetadataStore) -> None:
    from lamina.control.model import EventInvokeConfig

    with store.transaction() as tx:
        tx.put_function(Function("f", "arn", "t"))
        tx.put_event_invoke_config(EventInvokeConfig("f", "$LATEST", "arn:$LATEST", 1.0, 0))
    with store.transaction() as tx:
        assert [c.maximum_retry_attempts for c in tx.list_event_invoke_configs("f")] == [0]
        tx.delete_function("f")
    with store.transaction() as tx:
        assert tx.list_event_invoke_configs("f") == []


def test_generation_moves_on_writes_only(store: SqliteMetadataStore) -> None:
    before = store.generation
    with store.transaction() as tx:
        tx.get_function("nope")
    assert store.generation == before
    with store.transaction() as tx:
        tx.put_setting("k", "v")
    assert store.generation == before + 1
