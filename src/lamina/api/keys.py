"""SigV4's access-key lookup: environment sessions in memory, then the metadata store (cached)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from lamina.api import sigv4
from lamina.control.model import AccessKey
from lamina.errors import ExpiredToken
from lamina.store.metadata import MetadataStore

MSG_EXPIRED = "The security token included in the request is expired"


class AccessKeys:
    """Keys found in the store are kept decrypted in memory until the store next changes: the
    invoke path verifies a signature on every request and must not read the database for it.
    Environment credentials live only in memory (``sessions``) and are looked up there first,
    so a revoked one stops working at once. Expiry and status are checked on every call."""

    def __init__(
        self,
        store: MetadataStore,
        exclude: str,
        sessions: Callable[[str], AccessKey | None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.store = store
        self.exclude = exclude  # the download key signs presigned URLs only, never API calls
        self.sessions = sessions
        self.clock = clock
        self._known: dict[str, tuple[sigv4.SecretKey, datetime | None]] = {}
        self._generation = -1

    def __call__(self, access_key_id: str) -> sigv4.SecretKey | None:
        if access_key_id == self.exclude:
            return None
        if self.sessions is not None and access_key_id.startswith("ASIA"):
            session = self.sessions(access_key_id)
            if session is not None:
                return self._usable(_secret(session), _expiry(session))
        if self._generation != self.store.generation:
            self._known.clear()
            self._generation = self.store.generation
        known = self._known.get(access_key_id)
        if known is None:
            with self.store.transaction() as tx:
                key = tx.get_access_key(access_key_id)
            if key is None or key.status != "Active":
                return None
            known = (_secret(key), _expiry(key))
            self._known[access_key_id] = known
        return self._usable(*known)

    def _usable(self, secret: sigv4.SecretKey, expires: datetime | None) -> sigv4.SecretKey:
        if expires is not None and expires <= self.clock():
            raise ExpiredToken(MSG_EXPIRED)
        return secret


def _secret(key: AccessKey) -> sigv4.SecretKey:
    return sigv4.SecretKey(key.access_key_id, key.secret_access_key, key.session_token, key.principal_arn)


def _expiry(key: AccessKey) -> datetime | None:
    if not key.expires:
        return None
    return datetime.fromisoformat(key.expires.replace("Z", "+00:00"))
