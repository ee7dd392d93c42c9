"""The SQLite store's IAM tables: access keys, roles, users, their inline and attached policies,
customer-managed policies with their versions, and functions' resource-based policies.

Split from ``sqlite.py`` (which keeps the schema's MIGRATIONS and the Lambda tables) so each
module stays readable; ``SqliteTransaction`` inherits these methods. ``SqliteRows`` holds the
row helpers both halves use, so sqlite3 errors become StoreError at this one seam.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any, Literal

from lamina.control.model import AccessKey
from lamina.errors import StoreError
from lamina.iam.model import ManagedPolicy, PolicyVersion, Role, User

if TYPE_CHECKING:
    from lamina.store.sqlite import Cipher

Owner = Literal["role", "user"]


class SqliteRows:
    """One connection inside an open transaction; ``wrote`` records whether anything changed."""

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

    def _exec(self, sql: str, *args: Any) -> int:
        """Runs a write; how many rows it changed."""
        self.wrote = True
        try:
            return int(self._db.execute(sql, args).rowcount)
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc


class SqliteIamTables(SqliteRows):
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

    def delete_keys_with_principal_prefix(self, prefix: str) -> int:
        where = "lower(substr(json_extract(doc, '$.principal_arn'), 1, ?)) = lower(?)"
        return self._exec(f"DELETE FROM access_keys WHERE {where}", len(prefix), prefix)

    def delete_expired_keys(self, now: str) -> int:
        # Expiries are written as YYYY-MM-DDTHH:MM:SSZ, so text order is time order.
        return self._exec("DELETE FROM access_keys WHERE json_extract(doc, '$.expires') < ?", now)

    # IAM roles and users, with their inline policies (deleted with them)

    def get_role(self, name: str) -> Role | None:
        row = self._one("SELECT doc FROM roles WHERE name = ?", name)
        return Role.from_doc(json.loads(row[0])) if row else None

    def list_roles(self) -> list[Role]:
        rows = self._all("SELECT doc FROM roles ORDER BY name")
        return [Role.from_doc(json.loads(r[0])) for r in rows]

    def put_role(self, role: Role) -> None:
        self._exec(
            "INSERT INTO roles(name, doc) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc",
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
            "INSERT INTO users(name, doc) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc",
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
        row = self._one(f"SELECT document FROM {table} WHERE {owner_column} = ? AND name = ?", owner, policy)
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
        self._exec("DELETE FROM function_policies WHERE function = ? AND qualifier = ?", function, qualifier)

    # customer-managed policies (AWS-managed ones live in code: lamina.iam.aws_managed)

    def get_managed_policy(self, arn: str) -> ManagedPolicy | None:
        row = self._one("SELECT doc FROM managed_policies WHERE arn = ?", arn)
        return ManagedPolicy.from_doc(json.loads(row[0])) if row else None

    def managed_policy_named(self, name: str) -> ManagedPolicy | None:
        row = self._one("SELECT doc FROM managed_policies WHERE name = ?", name)
        return ManagedPolicy.from_doc(json.loads(row[0])) if row else None

    def list_managed_policies(self) -> list[ManagedPolicy]:
        rows = self._all("SELECT doc FROM managed_policies ORDER BY name")
        return [ManagedPolicy.from_doc(json.loads(r[0])) for r in rows]

    def put_managed_policy(self, policy: ManagedPolicy) -> None:
        self._exec(
            "INSERT INTO managed_policies(arn, name, doc) VALUES (?, ?, ?) "
            "ON CONFLICT(arn) DO UPDATE SET doc = excluded.doc",
            policy.arn,
            policy.name,
            json.dumps(policy.to_doc()),
        )

    def delete_managed_policy(self, arn: str) -> None:
        self._exec("DELETE FROM managed_policies WHERE arn = ?", arn)

    def get_policy_version(self, arn: str, version: str) -> PolicyVersion | None:
        row = self._one(
            "SELECT version, document, created FROM policy_versions WHERE policy = ? AND version = ?",
            arn,
            version,
        )
        return PolicyVersion(row[0], row[1], row[2]) if row else None

    def list_policy_versions(self, arn: str) -> list[PolicyVersion]:
        rows = self._all(
            "SELECT version, document, created FROM policy_versions WHERE policy = ? ORDER BY seq", arn
        )
        return [PolicyVersion(r[0], r[1], r[2]) for r in rows]

    def put_policy_version(self, arn: str, version: PolicyVersion) -> None:
        self._exec(
            "INSERT INTO policy_versions(policy, version, seq, document, created) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(policy, version) DO UPDATE SET document = excluded.document",
            arn,
            version.version_id,
            int(version.version_id.lstrip("v")),
            version.document,
            version.created,
        )

    def delete_policy_version(self, arn: str, version: str) -> None:
        self._exec("DELETE FROM policy_versions WHERE policy = ? AND version = ?", arn, version)

    # managed policies attached to roles and users (rows go with their role or user)

    def attach_policy(self, owner: Owner, name: str, arn: str) -> None:
        column = _owner_column(owner)
        self._exec(
            f"INSERT INTO policy_attachments({column}, policy) VALUES (?, ?) ON CONFLICT DO NOTHING",
            name,
            arn,
        )

    def detach_policy(self, owner: Owner, name: str, arn: str) -> None:
        column = _owner_column(owner)
        self._exec(f"DELETE FROM policy_attachments WHERE {column} = ? AND policy = ?", name, arn)

    def list_attached_policies(self, owner: Owner, name: str) -> list[str]:
        column = _owner_column(owner)
        rows = self._all(f"SELECT policy FROM policy_attachments WHERE {column} = ? ORDER BY rowid", name)
        return [str(r[0]) for r in rows]

    def policy_attachment_count(self, arn: str) -> int:
        row = self._one("SELECT count(*) FROM policy_attachments WHERE policy = ?", arn)
        return int(row[0])


def _owner_column(owner: Owner) -> str:
    """The attachment table's column for ``owner`` (only these literals reach the SQL text)."""
    return {"role": "role", "user": "user"}[owner]
