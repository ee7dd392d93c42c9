"""The SQLite store's IAM tables: roles, users, inline, managed and function policies (schemas 3, 4)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from lamina.control.model import AccessKey, Function
from lamina.errors import StoreError
from lamina.iam.model import ManagedPolicy, PolicyVersion, Role, User
from lamina.store import sqlite as sqlite_store
from lamina.store.sqlite import MIGRATIONS, SqliteMetadataStore


class XorCipher:
    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return aad + b"|" + bytes(b ^ 0x5A for b in plaintext)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        bound, _, body = blob.partition(b"|")
        assert bound == aad
        return bytes(b ^ 0x5A for b in body)


ACCT = "000000000000"


def _role(name: str = "r", **kw: object) -> Role:
    values: dict[str, object] = dict(
        name=name,
        arn=f"arn:aws:iam::{ACCT}:role/{name}",
        role_id="AROAAAAAAAAAAAAAAAAA",
        path="/",
        created="2024-01-01T00:00:00Z",
        assume_role_policy="{}",
    )
    values.update(kw)
    return Role(**values)  # type: ignore[arg-type]


def _user(name: str = "u") -> User:
    return User(name, f"arn:aws:iam::{ACCT}:user/{name}", "AIDAAAAAAAAAAAAAAAAA", "/", "t")


@pytest.fixture
def store(tmp_path: Path) -> SqliteMetadataStore:
    return SqliteMetadataStore(tmp_path / "db", XorCipher())


def test_roles_round_trip_with_policies_and_case_insensitive_names(store: SqliteMetadataStore) -> None:
    role = _role("Admin", description="d", max_session_duration=7200, tags={"k": "v"})
    with store.transaction() as tx:
        tx.put_role(role)
        tx.put_role(_role("b"))
        tx.put_role_policy("Admin", "p2", "{2}")
        tx.put_role_policy("Admin", "p1", "{1}")
    with store.transaction() as tx:
        assert tx.get_role("Admin") == role
        assert tx.get_role("admin") == role
        assert [r.name for r in tx.list_roles()] == ["Admin", "b"]
        assert tx.list_role_policies("Admin") == ["p1", "p2"]
        assert tx.get_role_policy("admin", "P1") == "{1}"
        tx.put_role_policy("Admin", "p1", "{1b}")
        assert tx.get_role_policy("Admin", "p1") == "{1b}"
        tx.delete_role_policy("Admin", "p2")
        assert tx.list_role_policies("Admin") == ["p1"]
        tx.delete_role("Admin")
    with store.transaction() as tx:
        assert tx.get_role("Admin") is None
        assert tx.get_role_policy("Admin", "p1") is None
        tx.put_role(_role("Admin"))
        assert tx.list_role_policies("Admin") == []  # cascade removed them


def test_users_round_trip_with_policies(store: SqliteMetadataStore) -> None:
    with store.transaction() as tx:
        tx.put_user(_user("u"))
        tx.put_user_policy("u", "p", "{}")
    with store.transaction() as tx:
        assert tx.get_user("U") == _user("u")
        assert [u.name for u in tx.list_users()] == ["u"]
        assert tx.list_user_policies("u") == ["p"]
        assert tx.get_user_policy("u", "p") == "{}"
        tx.delete_user_policy("u", "p")
        assert tx.get_user_policy("u", "p") is None
        tx.delete_user("u")
        assert tx.get_user("u") is None


def test_policy_of_missing_owner_is_refused(store: SqliteMetadataStore) -> None:
    from lamina.errors import StoreError

    with pytest.raises(StoreError), store.transaction() as tx:
        tx.put_role_policy("ghost", "p", "{}")


def test_access_keys_by_principal_and_status(store: SqliteMetadataStore) -> None:
    arn = f"arn:aws:iam::{ACCT}:user/u"
    with store.transaction() as tx:
        tx.put_access_key(AccessKey("AKIA2", "s2", arn, "2024-01-02T00:00:00Z", status="Inactive"))
        tx.put_access_key(AccessKey("AKIA1", "s1", arn, "2024-01-01T00:00:00Z"))
        tx.put_access_key(AccessKey("AKIA3", "s3", "arn:other", "2024-01-01T00:00:00Z"))
    with store.transaction() as tx:
        keys = tx.list_access_keys(arn)
        assert [(k.access_key_id, k.secret_access_key, k.status) for k in keys] == [
            ("AKIA2", "s2", "Inactive"),  # in the order they were written
            ("AKIA1", "s1", "Active"),
        ]
        tx.delete_access_key("AKIA1")
        assert tx.get_access_key("AKIA1") is None
        assert [k.access_key_id for k in tx.list_access_keys(arn)] == ["AKIA2"]


def test_function_policies_are_deleted_with_their_function(store: SqliteMetadataStore) -> None:
    with store.transaction() as tx:
        tx.put_function(Function("f", "arn", "t"))
        tx.put_function_policy("f", "", '{"a":1}')
        tx.put_function_policy("f", "live", '{"b":2}')
    with store.transaction() as tx:
        assert tx.get_function_policy("f", "") == '{"a":1}'
        assert tx.get_function_policy("f", "live") == '{"b":2}'
        assert tx.get_function_policy("f", "1") is None
        tx.put_function_policy("f", "", '{"a":3}')
        assert tx.get_function_policy("f", "") == '{"a":3}'
        tx.delete_function_policy("f", "live")
        assert tx.get_function_policy("f", "live") is None
        tx.delete_function("f")
    with store.transaction() as tx:
        tx.put_function(Function("f", "arn", "t"))
        assert tx.get_function_policy("f", "") is None


def test_migration_from_schema_2_keeps_existing_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "db"
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS[:2])
    old = SqliteMetadataStore(path, XorCipher())
    with old.transaction() as tx:
        # A key written before AccessKey had a status: its stored document lacks the field.
        tx.put_access_key(AccessKey("AKIAOLD", "s", "arn:aws:iam::000000000000:root", "t"))
    old.close()
    raw = sqlite3.connect(path)
    doc = json.loads(raw.execute("SELECT doc FROM access_keys").fetchone()[0])
    doc.pop("status")
    raw.execute("UPDATE access_keys SET doc = ?", (json.dumps(doc),))
    raw.commit()
    raw.close()
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS)
    new = SqliteMetadataStore(path, XorCipher())
    assert new.schema_version == len(MIGRATIONS)
    with new.transaction() as tx:
        key = tx.get_access_key("AKIAOLD")
        assert key is not None and key.status == "Active"
        assert [k.access_key_id for k in tx.list_access_keys("arn:aws:iam::000000000000:root")] == ["AKIAOLD"]
        tx.put_role(_role())
        assert tx.get_role("r") is not None


def _policy(name: str = "P") -> ManagedPolicy:
    return ManagedPolicy(name, f"arn:aws:iam::{ACCT}:policy/{name}", "ANPAAAAAAAAAAAAAAAAA", "/", "t", "t",
                         description="d", tags={"k": "v"}, next_version=3)


def test_managed_policies_and_versions_round_trip(store: SqliteMetadataStore) -> None:
    policy = _policy("Deploy")
    with store.transaction() as tx:
        tx.put_managed_policy(policy)
        tx.put_managed_policy(_policy("alpha"))
        tx.put_policy_version(policy.arn, PolicyVersion("v10", "{10}", "t10"))
        tx.put_policy_version(policy.arn, PolicyVersion("v2", "{2}", "t2"))
    with store.transaction() as tx:
        assert tx.get_managed_policy(policy.arn) == policy
        assert tx.managed_policy_named("DEPLOY") == policy
        assert tx.managed_policy_named("other") is None
        assert [p.name for p in tx.list_managed_policies()] == ["alpha", "Deploy"]
        assert tx.get_policy_version(policy.arn, "v2") == PolicyVersion("v2", "{2}", "t2")
        assert [v.version_id for v in tx.list_policy_versions(policy.arn)] == ["v2", "v10"]  # numeric
        tx.delete_policy_version(policy.arn, "v2")
        assert [v.version_id for v in tx.list_policy_versions(policy.arn)] == ["v10"]
        tx.delete_managed_policy(policy.arn)
    with store.transaction() as tx:
        assert tx.get_managed_policy(policy.arn) is None
        assert tx.get_policy_version(policy.arn, "v10") is None  # versions went with it


def test_names_of_managed_policies_are_unique_regardless_of_case(store: SqliteMetadataStore) -> None:
    with store.transaction() as tx:
        tx.put_managed_policy(_policy("P"))
    other = ManagedPolicy("p", f"arn:aws:iam::{ACCT}:policy/x/p", "ANPABBBBBBBBBBBBBBBB", "/x/", "t", "t")
    with pytest.raises(StoreError), store.transaction() as tx:
        tx.put_managed_policy(other)


def test_attachments_per_owner_count_and_cascade(store: SqliteMetadataStore) -> None:
    aws = "arn:aws:iam::aws:policy/AdministratorAccess"
    mine = _policy().arn
    with store.transaction() as tx:
        tx.put_role(_role("Exec"))
        tx.put_user(_user("u"))
        tx.attach_policy("role", "exec", mine)
        tx.attach_policy("role", "Exec", aws)
        tx.attach_policy("role", "Exec", mine)  # once only
        tx.attach_policy("user", "U", aws)
    with store.transaction() as tx:
        assert tx.list_attached_policies("role", "EXEC") == [mine, aws]
        assert tx.list_attached_policies("user", "u") == [aws]
        assert (tx.policy_attachment_count(aws), tx.policy_attachment_count(mine)) == (2, 1)
        tx.detach_policy("role", "Exec", mine)
        assert tx.list_attached_policies("role", "Exec") == [aws]
        tx.delete_role("Exec")
        tx.delete_user("u")
        assert tx.policy_attachment_count(aws) == 0  # attachments went with their role and user
    with pytest.raises(StoreError), store.transaction() as tx:
        tx.attach_policy("role", "ghost", aws)
