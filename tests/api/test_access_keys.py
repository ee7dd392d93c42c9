"""AccessKeys, the SigV4 key lookup: status, expiry, the excluded presign key, memory sessions.

Runs against a real SqliteMetadataStore (secrets encrypted by a real KeyRing) and an injected
clock, so expiry is tested at exact instants rather than by sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from lamina.api.keys import MSG_EXPIRED, AccessKeys
from lamina.api.sigv4 import SecretKey
from lamina.control.model import AccessKey
from lamina.errors import AuthError, ExpiredToken
from lamina.store.keys import KeyRing
from lamina.store.metadata import Transaction
from lamina.store.sqlite import SqliteMetadataStore

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
USER = "arn:aws:iam::000000000000:user/alice"
SESSION = "arn:aws:sts::000000000000:assumed-role/r/s"
PRESIGN = "AKIAPRESIGNPRESIGN00"


class Clock:
    """A settable clock: ``AccessKeys`` asks it for the time on every lookup."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(
    key_id: str,
    secret: str = "s" * 40,
    principal: str = USER,
    *,
    expires: datetime | None = None,
    token: str | None = None,
    status: str = "Active",
) -> AccessKey:
    return AccessKey(
        key_id,
        secret,
        principal,
        _iso(NOW - timedelta(days=1)),
        token,
        _iso(expires) if expires is not None else None,
        status,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteMetadataStore]:
    db = SqliteMetadataStore(tmp_path / "meta.db", KeyRing.load_or_create(tmp_path / "keys"))
    yield db
    db.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Sessions:
    """Memory-only environment credentials, as lamina.iam.credentials keeps them."""

    def __init__(self) -> None:
        self.live: dict[str, AccessKey] = {}
        self.asked: list[str] = []

    def __call__(self, key_id: str) -> AccessKey | None:
        self.asked.append(key_id)
        return self.live.get(key_id)


def _put(store: SqliteMetadataStore, *keys: AccessKey) -> None:
    with store.transaction() as tx:
        for key in keys:
            tx.put_access_key(key)


def test_a_stored_active_key_resolves_to_its_secret(store: SqliteMetadataStore, clock: Clock) -> None:
    _put(store, _key("AKIAALICE00000000001", "secret-one"))
    keys = AccessKeys(store, exclude=PRESIGN, clock=clock)
    assert keys("AKIAALICE00000000001") == SecretKey("AKIAALICE00000000001", "secret-one", None, USER)
    assert keys("AKIANOSUCHKEY0000000") is None


def test_the_presign_key_never_signs_api_calls(store: SqliteMetadataStore, clock: Clock) -> None:
    _put(store, _key(PRESIGN))
    assert AccessKeys(store, exclude=PRESIGN, clock=clock)(PRESIGN) is None
    sessions = Sessions()
    sessions.live["ASIAPRESIGNPRESIGN00"] = _key("ASIAPRESIGNPRESIGN00", principal=SESSION, token="t")
    excluded = AccessKeys(store, exclude="ASIAPRESIGNPRESIGN00", sessions=sessions, clock=clock)
    assert excluded("ASIAPRESIGNPRESIGN00") is None


def test_inactive_keys_sign_nothing_and_status_changes_apply_at_once(
    store: SqliteMetadataStore, clock: Clock
) -> None:
    _put(store, _key("AKIAINACTIVE00000001", status="Inactive"))
    keys = AccessKeys(store, exclude=PRESIGN, clock=clock)
    assert keys("AKIAINACTIVE00000001") is None
    _put(store, _key("AKIAINACTIVE00000001", "now-active"))
    found = keys("AKIAINACTIVE00000001")
    assert found is not None and found.secret_access_key == "now-active"
    _put(store, _key("AKIAINACTIVE00000001", status="Inactive"))  # cached before: must not linger
    assert keys("AKIAINACTIVE00000001") is None


def test_a_deleted_key_stops_resolving_although_it_was_cached(
    store: SqliteMetadataStore, clock: Clock
) -> None:
    _put(store, _key("AKIADELETED000000001"))
    keys = AccessKeys(store, exclude=PRESIGN, clock=clock)
    assert keys("AKIADELETED000000001") is not None
    with store.transaction() as tx:
        tx.delete_access_key("AKIADELETED000000001")
    assert keys("AKIADELETED000000001") is None


def test_unchanged_store_is_not_read_again(
    store: SqliteMetadataStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put(store, _key("AKIACACHED0000000001"))
    keys = AccessKeys(store, exclude=PRESIGN, clock=clock)
    opened: list[int] = []
    real = store.transaction

    def counting() -> AbstractContextManager[Transaction]:
        opened.append(1)
        return real()

    monkeypatch.setattr(store, "transaction", counting)
    for _ in range(3):
        assert keys("AKIACACHED0000000001") is not None
    assert len(opened) == 1


def test_an_expired_stored_session_is_expired_token(store: SqliteMetadataStore, clock: Clock) -> None:
    expiry = NOW + timedelta(minutes=15)
    _put(store, _key("ASIASTORED0000000001", "sess", SESSION, expires=expiry, token="tok"))
    keys = AccessKeys(store, exclude=PRESIGN, clock=clock)
    assert keys("ASIASTORED0000000001") == SecretKey("ASIASTORED0000000001", "sess", "tok", SESSION)
    clock.now = expiry - timedelta(seconds=1)
    assert keys("ASIASTORED0000000001") is not None  # cached, and still checked against the clock
    for moment in (expiry, expiry + timedelta(days=3)):
        clock.now = moment
        with pytest.raises(ExpiredToken) as exc:
            keys("ASIASTORED0000000001")
        assert exc.value.message == MSG_EXPIRED == "The security token included in the request is expired"
        assert isinstance(exc.value, AuthError)
        assert (exc.value.code, exc.value.status) == ("ExpiredTokenException", 403)


def test_expiry_with_an_explicit_utc_offset_is_understood(store: SqliteMetadataStore, clock: Clock) -> None:
    key = _key("ASIAOFFSET0000000001", principal=SESSION, token="t")
    _put(
        store,
        AccessKey(
            key.access_key_id,
            key.secret_access_key,
            key.principal_arn,
            key.created,
            key.session_token,
            "2024-05-01T14:00:00+02:00",
        ),
    )  # == NOW
    with pytest.raises(ExpiredToken):
        AccessKeys(store, exclude=PRESIGN, clock=clock)("ASIAOFFSET0000000001")


def test_memory_sessions_win_over_the_store(store: SqliteMetadataStore, clock: Clock) -> None:
    _put(
        store,
        _key(
            "ASIABOTH000000000001",
            "stored-secret",
            SESSION,
            expires=NOW + timedelta(hours=1),
            token="stored-token",
        ),
    )
    sessions = Sessions()
    sessions.live["ASIABOTH000000000001"] = _key(
        "ASIABOTH000000000001",
        "memory-secret",
        SESSION,
        expires=NOW + timedelta(hours=1),
        token="memory-token",
    )
    found = AccessKeys(store, exclude=PRESIGN, sessions=sessions, clock=clock)("ASIABOTH000000000001")
    assert found == SecretKey("ASIABOTH000000000001", "memory-secret", "memory-token", SESSION)


def test_a_revoked_memory_session_stops_at_once(store: SqliteMetadataStore, clock: Clock) -> None:
    sessions = Sessions()
    sessions.live["ASIAENV0000000000001"] = _key(
        "ASIAENV0000000000001", "env", SESSION, expires=NOW + timedelta(minutes=15), token="t"
    )
    keys = AccessKeys(store, exclude=PRESIGN, sessions=sessions, clock=clock)
    for _ in range(2):
        assert keys("ASIAENV0000000000001") is not None
    del sessions.live["ASIAENV0000000000001"]  # revoked; the store did not change at all
    assert keys("ASIAENV0000000000001") is None
    assert sessions.asked.count("ASIAENV0000000000001") == 3


def test_a_memory_session_expires_and_a_refresh_revives_it(store: SqliteMetadataStore, clock: Clock) -> None:
    sessions = Sessions()
    expiry = NOW + timedelta(minutes=15)
    sessions.live["ASIAENV0000000000002"] = _key(
        "ASIAENV0000000000002", "env", SESSION, expires=expiry, token="t"
    )
    keys = AccessKeys(store, exclude=PRESIGN, sessions=sessions, clock=clock)
    assert keys("ASIAENV0000000000002") is not None
    clock.now = expiry
    with pytest.raises(ExpiredToken) as exc:
        keys("ASIAENV0000000000002")
    assert exc.value.message == MSG_EXPIRED
    sessions.live["ASIAENV0000000000002"] = _key(
        "ASIAENV0000000000002", "env", SESSION, expires=expiry + timedelta(minutes=15), token="t"
    )
    assert keys("ASIAENV0000000000002") is not None


def test_long_term_keys_never_expire(store: SqliteMetadataStore, clock: Clock) -> None:
    _put(store, _key("AKIAFOREVER000000001"))
    keys = AccessKeys(store, exclude=PRESIGN, sessions=Sessions(), clock=clock)
    clock.now = NOW + timedelta(days=3650)
    assert keys("AKIAFOREVER000000001") is not None
