"""The embedded metadata store: SQLite in WAL mode with full sync and schema migrations."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from lamina.control.model import (
    Alias,
    EventInvokeConfig,
    Function,
    FunctionVersion,
    LayerVersion,
)
from lamina.errors import StoreError
from lamina.store.sqlite_iam import SqliteIamTables


class Cipher(Protocol):
    """What the store needs of the key ring to keep secrets encrypted at rest."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes: ...
    def decrypt(self, blob: bytes, aad: bytes) -> bytes: ...


# Each entry upgrades the schema by one version; never edit a released entry, append.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE functions (
        name TEXT PRIMARY KEY,
        doc TEXT NOT NULL
    );
    CREATE TABLE versions (
        name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        version TEXT NOT NULL,
        seq INTEGER NOT NULL,
        doc TEXT NOT NULL,
        env BLOB,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE aliases (
        function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (function, name)
    );
    CREATE TABLE access_keys (
        access_key_id TEXT PRIMARY KEY,
        doc TEXT NOT NULL,
        secret BLOB NOT NULL
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE layers (
        name TEXT PRIMARY KEY,
        last_version INTEGER NOT NULL
    );
    CREATE TABLE layer_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE event_invoke_configs (
        function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier TEXT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (function, qualifier)
    );
    """,
    # IAM names are unique regardless of case, as on AWS (NOCASE): "Admin" and "admin" clash.
    """
    CREATE TABLE roles (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        doc TEXT NOT NULL
    );
    CREATE TABLE role_policies (
        role TEXT NOT NULL COLLATE NOCASE REFERENCES roles(name) ON DELETE CASCADE,
        name TEXT NOT NULL COLLATE NOCASE,
        document TEXT NOT NULL,
        PRIMARY KEY (role, name)
    );
    CREATE TABLE users (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        doc TEXT NOT NULL
    );
    CREATE TABLE user_policies (
        user TEXT NOT NULL COLLATE NOCASE REFERENCES users(name) ON DELETE CASCADE,
        name TEXT NOT NULL COLLATE NOCASE,
        document TEXT NOT NULL,
        PRIMARY KEY (user, name)
    );
    CREATE TABLE function_policies (
        function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        qualifier TEXT NOT NULL,
        document TEXT NOT NULL,
        PRIMARY KEY (function, qualifier)
    );
    CREATE INDEX access_keys_by_principal ON access_keys(json_extract(doc, '$.principal_arn'))
    """,
    # Customer-managed policies and their versions; attachments of customer- and AWS-managed
    # policies (the latter live in code, so ``policy`` is a plain ARN, not a foreign key).
    """
    CREATE TABLE managed_policies (
        arn TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        doc TEXT NOT NULL
    );
    CREATE TABLE policy_versions (
        policy TEXT NOT NULL REFERENCES managed_policies(arn) ON DELETE CASCADE,
        version TEXT NOT NULL,
        seq INTEGER NOT NULL,
        document TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (policy, version)
    );
    CREATE TABLE policy_attachments (
        policy TEXT NOT NULL,
        role TEXT COLLATE NOCASE REFERENCES roles(name) ON DELETE CASCADE,
        user TEXT COLLATE NOCASE REFERENCES users(name) ON DELETE CASCADE,
        CHECK ((role IS NULL) <> (user IS NULL))
    );
    CREATE UNIQUE INDEX policy_attachments_of_role ON policy_attachments(role, policy) WHERE role IS NOT NULL;
    CREATE UNIQUE INDEX policy_attachments_of_user ON policy_attachments(user, policy) WHERE user IS NOT NULL;
    CREATE INDEX policy_attachments_by_policy ON policy_attachments(policy)
    """,
)


class SqliteMetadataStore:
    """MetadataStore on one SQLite file. Safe to call from several threads (one lock)."""

    def __init__(self, path: Path, cipher: Cipher) -> None:
        self._cipher = cipher
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open metadata store {path}: {exc}") from exc
        self._closed = False
        self.generation = 0  # bumped by every committed transaction that wrote

    def _migrate(self) -> None:
        current = self._db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, script.split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={number}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        with self._lock:
            if self._closed:
                raise StoreError("metadata store is closed")
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot begin transaction: {exc}") from exc
            tx = SqliteTransaction(self._db, self._cipher)
            try:
                yield tx
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"commit failed: {exc}") from exc
            if tx.wrote:
                self.generation += 1

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()


def _version_seq(version: str) -> int:
    return 0 if version == "$LATEST" else int(version)


class SqliteTransaction(SqliteIamTables):
    """One transaction's reads and writes; the IAM tables' methods are in ``sqlite_iam``."""

    # functions

    def get_function(self, name: str) -> Function | None:
        row = self._one("SELECT doc FROM functions WHERE name = ?", name)
        return _function(row[0]) if row else None

    def list_functions(self, after: str | None, limit: int) -> list[Function]:
        rows = self._all(
            "SELECT doc FROM functions WHERE name > ? ORDER BY name LIMIT ?", after or "", limit
        )
        return [_function(r[0]) for r in rows]

    def put_function(self, function: Function) -> None:
        doc = {**function.__dict__, "tags": dict(function.tags)}
        self._exec(
            "INSERT INTO functions(name, doc) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET doc = excluded.doc",
            function.name,
            json.dumps(doc),
        )

    def delete_function(self, name: str) -> None:
        self._exec("DELETE FROM functions WHERE name = ?", name)

    # versions

    def _env_aad(self, arn: str, version: str) -> bytes:
        return f"lamina:env:{arn}:{version}".encode()

    def get_version(self, name: str, version: str) -> FunctionVersion | None:
        row = self._one("SELECT doc, env FROM versions WHERE name = ? AND version = ?", name, version)
        return self._version(row) if row else None

    def list_versions(self, name: str) -> list[FunctionVersion]:
        rows = self._all("SELECT doc, env FROM versions WHERE name = ? ORDER BY seq", name)
        return [self._version(r) for r in rows]

    def _version(self, row: Any) -> FunctionVersion:
        doc = json.loads(row[0])
        env: dict[str, str] = {}
        if row[1] is not None:
            plain = self._cipher.decrypt(row[1], self._env_aad(doc["arn"], doc["version"]))
            env = json.loads(plain)
        return FunctionVersion.from_doc(doc, env)

    def put_version(self, version: FunctionVersion) -> None:
        env = None
        if version.environment:
            env = self._cipher.encrypt(
                json.dumps(dict(version.environment)).encode(),
                self._env_aad(version.arn, version.version),
            )
        self._exec(
            "INSERT INTO versions(name, version, seq, doc, env) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(name, version) DO UPDATE SET doc = excluded.doc, env = excluded.env",
            version.name,
            version.version,
            _version_seq(version.version),
            json.dumps(version.to_doc()),
            env,
        )

    def delete_version(self, name: str, version: str) -> None:
        self._exec("DELETE FROM versions WHERE name = ? AND version = ?", name, version)

    # aliases

    def get_alias(self, function: str, name: str) -> Alias | None:
        row = self._one("SELECT doc FROM aliases WHERE function = ? AND name = ?", function, name)
        return Alias.from_doc(json.loads(row[0])) if row else None

    def list_aliases(self, function: str) -> list[Alias]:
        rows = self._all("SELECT doc FROM aliases WHERE function = ? ORDER BY name", function)
        return [Alias.from_doc(json.loads(r[0])) for r in rows]

    def put_alias(self, alias: Alias) -> None:
        self._exec(
            "INSERT INTO aliases(function, name, doc) VALUES (?, ?, ?) "
            "ON CONFLICT(function, name) DO UPDATE SET doc = excluded.doc",
            alias.function,
            alias.name,
            json.dumps(alias.to_doc()),
        )

    def delete_alias(self, function: str, name: str) -> None:
        self._exec("DELETE FROM aliases WHERE function = ? AND name = ?", function, name)

    # layers (a layer's version numbers are never reused, even after every version is deleted)

    def next_layer_version(self, name: str) -> int:
        row = self._one("SELECT last_version FROM layers WHERE name = ?", name)
        number = (row[0] if row else 0) + 1
        self._exec(
            "INSERT INTO layers(name, last_version) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET last_version = excluded.last_version",
            name,
            number,
        )
        return int(number)

    def get_layer_version(self, name: str, version: int) -> LayerVersion | None:
        row = self._one("SELECT doc FROM layer_versions WHERE name = ? AND version = ?", name, version)
        return LayerVersion.from_doc(json.loads(row[0])) if row else None

    def list_layer_versions(self, name: str) -> list[LayerVersion]:
        """Newest first, as ListLayerVersions answers."""
        rows = self._all("SELECT doc FROM layer_versions WHERE name = ? ORDER BY version DESC", name)
        return [LayerVersion.from_doc(json.loads(r[0])) for r in rows]

    def list_layer_names(self, after: str | None, limit: int) -> list[str]:
        rows = self._all(
            "SELECT DISTINCT name FROM layer_versions WHERE name > ? ORDER BY name LIMIT ?",
            after or "",
            limit,
        )
        return [r[0] for r in rows]

    def put_layer_version(self, layer: LayerVersion) -> None:
        self._exec(
            "INSERT INTO layer_versions(name, version, doc) VALUES (?, ?, ?) "
            "ON CONFLICT(name, version) DO UPDATE SET doc = excluded.doc",
            layer.name,
            layer.version,
            json.dumps(layer.to_doc()),
        )

    def delete_layer_version(self, name: str, version: int) -> None:
        self._exec("DELETE FROM layer_versions WHERE name = ? AND version = ?", name, version)

    # asynchronous invocation settings

    def get_event_invoke_config(self, function: str, qualifier: str) -> EventInvokeConfig | None:
        row = self._one(
            "SELECT doc FROM event_invoke_configs WHERE function = ? AND qualifier = ?", function, qualifier
        )
        return EventInvokeConfig.from_doc(json.loads(row[0])) if row else None

    def list_event_invoke_configs(self, function: str) -> list[EventInvokeConfig]:
        rows = self._all(
            "SELECT doc FROM event_invoke_configs WHERE function = ? ORDER BY qualifier", function
        )
        return [EventInvokeConfig.from_doc(json.loads(r[0])) for r in rows]

    def put_event_invoke_config(self, config: EventInvokeConfig) -> None:
        self._exec(
            "INSERT INTO event_invoke_configs(function, qualifier, doc) VALUES (?, ?, ?) "
            "ON CONFLICT(function, qualifier) DO UPDATE SET doc = excluded.doc",
            config.function,
            config.qualifier,
            json.dumps(config.to_doc()),
        )

    def delete_event_invoke_config(self, function: str, qualifier: str) -> None:
        self._exec(
            "DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?", function, qualifier
        )

    # settings

    def get_setting(self, key: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", key)
        return str(row[0]) if row else None

    def put_setting(self, key: str, value: str) -> None:
        self._exec(
            "INSERT INTO settings(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )


def _function(doc: str) -> Function:
    return Function(**json.loads(doc))
