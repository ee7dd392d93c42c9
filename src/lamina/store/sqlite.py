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
    AccessKey,
    Alias,
    EventInvokeConfig,
    Function,
    FunctionVersion,
    LayerVersion,
)
from lamina.errors import StoreError
from lamina.iam.model import Role, User


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


class SqliteTransaction:
    def __init__(self, db: sqlite3.Connection, cipher: Cipher) -> None:
        self._db = db
        self._cipher = cipher
        self.wrote = False

    def _one(self, sql: str, *args: Any) -> Any:
        try:
            return self._db.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def _all(self, sql: str, *args: Any) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def _exec(self, sql: str, *args: Any) -> None:
        self.wrote = True
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

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

    # access keys

    def get_access_key(self, access_key_id: str) -> AccessKey | None:
        row = self._one("SELECT doc, secret FROM access_keys WHERE access_key_id = ?", access_key_id)
        if row is None:
            return None
        doc = json.loads(row[0])
        secret = self._cipher.decrypt(row[1], f"lamina:akid:{access_key_id}".encode()).decode()
        return AccessKey(secret_access_key=secret, **doc)

    def put_access_key(self, key: AccessKey) -> None:
        doc = {k: v for k, v in key.__dict__.items() if k != "secret_access_key"}
        secret = self._cipher.encrypt(
            key.secret_access_key.encode(), f"lamina:akid:{key.access_key_id}".encode()
        )
        self._exec(
            "INSERT INTO access_keys(access_key_id, doc, secret) VALUES (?, ?, ?) "
            "ON CONFLICT(access_key_id) DO UPDATE SET doc = excluded.doc, secret = excluded.secret",
            key.access_key_id,
            json.dumps(doc),
            secret,
        )

    def list_access_keys(self, principal_arn: str) -> list[AccessKey]:
        rows = self._all(
            "SELECT access_key_id FROM access_keys "
            "WHERE json_extract(doc, '$.principal_arn') = ? ORDER BY rowid",
            principal_arn,
        )
        keys = (self.get_access_key(r[0]) for r in rows)
        return [k for k in keys if k is not None]

    def delete_access_key(self, access_key_id: str) -> None:
        self._exec("DELETE FROM access_keys WHERE access_key_id = ?", access_key_id)

    # IAM roles and users, with their inline policies (deleted with them)

    def get_role(self, name: str) -> Role | None:
        row = self._one("SELECT doc FROM roles WHERE name = ?", name)
        return Role.from_doc(json.loads(row[0])) if row else None

    def list_roles(self) -> list[Role]:
        rows = self._all("SELECT doc FROM roles ORDER BY name")
        return [Role.from_doc(json.loads(r[0])) for r in rows]

    def put_role(self, role: Role) -> None:
        self._exec(
            "INSERT INTO roles(name, doc) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET doc = excluded.doc",
            role.name,
            json.dumps(role.to_doc()),
        )

    def delete_role(self, name: str) -> None:
        self._exec("DELETE FROM roles WHERE name = ?", name)

    def get_role_policy(self, role: str, policy: str) -> str | None:
        return self._policy("role_policies", "role", role, policy)

    def list_role_policies(self, role: str) -> list[str]:
        return self._policy_names("role_policies", "role", role)

    def put_role_policy(self, role: str, policy: str, document: str) -> None:
        self._put_policy("role_policies", "role", role, policy, document)

    def delete_role_policy(self, role: str, policy: str) -> None:
        self._exec("DELETE FROM role_policies WHERE role = ? AND name = ?", role, policy)

    def get_user(self, name: str) -> User | None:
        row = self._one("SELECT doc FROM users WHERE name = ?", name)
        return User.from_doc(json.loads(row[0])) if row else None

    def list_users(self) -> list[User]:
        rows = self._all("SELECT doc FROM users ORDER BY name")
        return [User.from_doc(json.loads(r[0])) for r in rows]

    def put_user(self, user: User) -> None:
        self._exec(
            "INSERT INTO users(name, doc) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET doc = excluded.doc",
            user.name,
            json.dumps(user.to_doc()),
        )

    def delete_user(self, name: str) -> None:
        self._exec("DELETE FROM users WHERE name = ?", name)

    def get_user_policy(self, user: str, policy: str) -> str | None:
        return self._policy("user_policies", "user", user, policy)

    def list_user_policies(self, user: str) -> list[str]:
        return self._policy_names("user_policies", "user", user)

    def put_user_policy(self, user: str, policy: str, document: str) -> None:
        self._put_policy("user_policies", "user", user, policy, document)

    def delete_user_policy(self, user: str, policy: str) -> None:
        self._exec("DELETE FROM user_policies WHERE user = ? AND name = ?", user, policy)

    # The helpers below take table and column names only from the literals above.

    def _policy(self, table: str, owner_column: str, owner: str, policy: str) -> str | None:
        row = self._one(
            f"SELECT document FROM {table} WHERE {owner_column} = ? AND name = ?", owner, policy
        )
        return str(row[0]) if row else None

    def _policy_names(self, table: str, owner_column: str, owner: str) -> list[str]:
        rows = self._all(f"SELECT name FROM {table} WHERE {owner_column} = ? ORDER BY name", owner)
        return [str(r[0]) for r in rows]

    def _put_policy(self, table: str, owner_column: str, owner: str, policy: str, document: str) -> None:
        self._exec(
            f"INSERT INTO {table}({owner_column}, name, document) VALUES (?, ?, ?) "
            f"ON CONFLICT({owner_column}, name) DO UPDATE SET document = excluded.document",
            owner,
            policy,
            document,
        )

    # resource-based policies of functions ("" qualifier = the unqualified function)

    def get_function_policy(self, function: str, qualifier: str) -> str | None:
        row = self._one(
            "SELECT document FROM function_policies WHERE function = ? AND qualifier = ?",
            function,
            qualifier,
        )
        return str(row[0]) if row else None

    def put_function_policy(self, function: str, qualifier: str, document: str) -> None:
        self._exec(
            "INSERT INTO function_policies(function, qualifier, document) VALUES (?, ?, ?) "
            "ON CONFLICT(function, qualifier) DO UPDATE SET document = excluded.document",
            function,
            qualifier,
            document,
        )

    def delete_function_policy(self, function: str, qualifier: str) -> None:
        self._exec(
            "DELETE FROM function_policies WHERE function = ? AND qualifier = ?", function, qualifier
        )

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
