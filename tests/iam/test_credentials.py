"""Temporary credentials: AssumeRole sessions persist, environment keys live in memory."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from iam_fakes import T0, Clock, open_store

from lamina.errors import IamError
from lamina.iam.credentials import Credentials, expires_at, session_arn
from lamina.iam.directory import Directory
from lamina.store.sqlite import SqliteMetadataStore

ACCT = "111122223333"
TRUST = json.dumps(
    {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    }
)


@pytest.fixture
def store(tmp_path: Path) -> SqliteMetadataStore:
    return open_store(tmp_path)


def test_session_arn_drops_the_role_path() -> None:
    assert session_arn(f"arn:aws:iam::{ACCT}:role/a/b/R", "s") == f"arn:aws:sts::{ACCT}:assumed-role/R/s"
    with pytest.raises(IamError):
        session_arn(f"arn:aws:iam::{ACCT}:user/u", "s")


def test_assume_role_is_persisted_and_survives_a_restart(store: SqliteMetadataStore, tmp_path: Path) -> None:
    clock = Clock()
    role = Directory(store, ACCT, clock).create_role("R", TRUST, path="/p/")
    key, assumed_id = Credentials(store, ACCT, clock).assume_role(role.arn, "sess", 1800)
    assert key.access_key_id.startswith("ASIA") and len(key.access_key_id) == 20
    assert len(key.secret_access_key) == 40 and key.session_token
    assert key.principal_arn == f"arn:aws:sts::{ACCT}:assumed-role/R/sess"
    assert key.expires == "2024-05-01T12:30:00Z"
    assert assumed_id == f"{role.role_id}:sess"
    store.close()
    reopened = open_store(tmp_path)
    with reopened.transaction() as tx:
        assert tx.get_access_key(key.access_key_id) == key
    assert Credentials(reopened, ACCT, clock).live(key.access_key_id) is None  # not an env key


def test_assume_role_of_a_missing_role_is_refused(store: SqliteMetadataStore) -> None:
    with pytest.raises(IamError) as exc:
        Credentials(store, ACCT).assume_role(f"arn:aws:iam::{ACCT}:role/none", "s", 900)
    assert exc.value.code == "NoSuchEntity"


def test_environment_credentials_expire_refresh_and_revoke(store: SqliteMetadataStore) -> None:
    clock = Clock()
    creds = Credentials(store, ACCT, clock)
    issued = creds.issue(f"arn:aws:iam::{ACCT}:role/R", "env-1")
    assert issued.access_key_id.startswith("ASIA")
    assert issued.expiration == T0 + timedelta(minutes=15)
    key = creds.live(issued.access_key_id)
    assert key is not None
    assert key.principal_arn == f"arn:aws:sts::{ACCT}:assumed-role/R/env-1"
    assert (key.secret_access_key, key.session_token) == (issued.secret_access_key, issued.session_token)
    with store.transaction() as tx:
        assert tx.get_access_key(issued.access_key_id) is None  # never written to disk

    clock.now = T0 + timedelta(minutes=16)
    expired = creds.live(issued.access_key_id)
    assert expired is not None and expires_at(expired) == T0 + timedelta(minutes=15)  # caller decides
    creds.refresh(issued.access_key_id)
    refreshed = creds.live(issued.access_key_id)
    assert refreshed is not None and expires_at(refreshed) == T0 + timedelta(minutes=31)

    creds.revoke(issued.access_key_id)
    assert creds.live(issued.access_key_id) is None
    creds.refresh(issued.access_key_id)  # a revoked key stays revoked
    assert creds.live(issued.access_key_id) is None


def test_keys_nobody_revoked_are_forgotten_eventually(store: SqliteMetadataStore) -> None:
    clock = Clock()
    creds = Credentials(store, ACCT, clock)
    old = creds.issue(f"arn:aws:iam::{ACCT}:role/R", "a")
    clock.now = T0 + timedelta(minutes=20)
    creds.issue(f"arn:aws:iam::{ACCT}:role/R", "b")
    assert creds.live(old.access_key_id) is not None  # expired 5 minutes ago: still reported
    clock.now = T0 + timedelta(minutes=31)
    creds.issue(f"arn:aws:iam::{ACCT}:role/R", "c")
    assert creds.live(old.access_key_id) is None


def test_sweep_deletes_only_expired_stored_sessions(store: SqliteMetadataStore) -> None:
    clock = Clock()
    role = Directory(store, ACCT, clock).create_role("R", TRUST)
    creds = Credentials(store, ACCT, clock)
    short, _ = creds.assume_role(role.arn, "short", 900)
    long, _ = creds.assume_role(role.arn, "long", 3600)
    clock.now = T0 + timedelta(minutes=20)
    assert creds.sweep() == 1
    with store.transaction() as tx:
        assert tx.get_access_key(short.access_key_id) is None
        assert tx.get_access_key(long.access_key_id) == long
    assert creds.sweep() == 0


def test_deleting_a_role_deletes_its_stored_sessions(store: SqliteMetadataStore) -> None:
    clock = Clock()
    directory = Directory(store, ACCT, clock)
    role = directory.create_role("a_b", TRUST)
    look_alike = directory.create_role("aXb", TRUST)  # "_" must not act as a wildcard
    creds = Credentials(store, ACCT, clock)
    gone, _ = creds.assume_role(role.arn, "s", 900)
    kept, _ = creds.assume_role(look_alike.arn, "s", 900)
    directory.delete_role("A_B")
    with store.transaction() as tx:
        assert tx.get_access_key(gone.access_key_id) is None
        assert tx.get_access_key(kept.access_key_id) == kept


def test_deleting_a_role_revokes_its_environment_sessions(store: SqliteMetadataStore) -> None:
    directory = Directory(store, ACCT, Clock())
    creds = Credentials(store, ACCT, Clock())
    directory.on_role_deleted.append(creds.revoke_sessions)
    role = directory.create_role("worker", TRUST)
    other = directory.create_role("worker2", TRUST)
    gone = creds.issue(role.arn, "fn")
    kept = creds.issue(other.arn, "fn")
    directory.delete_role("Worker")
    assert creds.live(gone.access_key_id) is None
    assert creds.live(kept.access_key_id) is not None
