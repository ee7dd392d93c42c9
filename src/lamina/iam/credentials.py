"""Temporary credentials: STS AssumeRole sessions and execution-role credentials of environments.

Both are AWS-shaped ("ASIA" key id, 40-character secret, session token, expiry) and sign as the
session principal ``arn:aws:sts::<account>:assumed-role/<role>/<session>``. AssumeRole's are
persisted, since a client holds them across a server restart. An environment's live only in
memory: environments do not survive a restart, so neither should their keys, and keeping them
out of the store spares a write per environment start and per refresh.

``live`` returns expired environment keys too, so the SigV4 seam (``api/keys.py``) can answer
ExpiredToken rather than InvalidClientTokenId, as AWS does; persisted keys are read through the
store there.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from lamina.control.model import AccessKey
from lamina.errors import IamError
from lamina.iam.directory import iso, utc_now
from lamina.iam.keys import new_access_key
from lamina.store.metadata import MetadataStore
from lamina.worker.credentials import IssuedCredentials

ENVIRONMENT_LIFETIME = timedelta(minutes=15)


def session_arn(role_arn: str, session_name: str) -> str:
    """The principal a role session signs as (AWS drops the role's path here)."""
    parts = role_arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
        raise IamError("ValidationError", f"{role_arn} is not a valid role ARN.")
    role_name = parts[5].rsplit("/", 1)[-1]
    return f"arn:{parts[1]}:sts::{parts[4]}:assumed-role/{role_name}/{session_name}"


def expires_at(key: AccessKey) -> datetime | None:
    """A key's expiry as a UTC datetime (None for long-term keys)."""
    if key.expires is None:
        return None
    return datetime.fromisoformat(key.expires).astimezone(timezone.utc)


def _session_token() -> str:
    return secrets.token_urlsafe(96)


class Credentials:
    """Mints and finds temporary credentials; implements worker.credentials.CredentialIssuer."""

    def __init__(
        self,
        store: MetadataStore,
        account: str,
        clock: Callable[[], datetime] = utc_now,
        lifetime: timedelta = ENVIRONMENT_LIFETIME,
    ) -> None:
        self.store = store
        self.account = account
        self.clock = clock
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._live: dict[str, AccessKey] = {}

    # STS AssumeRole (persisted)

    def assume_role(self, role_arn: str, session_name: str, duration: int) -> tuple[AccessKey, str]:
        """New session credentials of an existing role and its AssumedRoleId ("AROA...:session").

        The caller has checked the trust policy and the duration against the role."""
        with self.store.transaction() as tx:
            role = tx.get_role(role_arn.rsplit("/", 1)[-1])
            if role is None or role.arn != role_arn:
                raise IamError("NoSuchEntity", f"The role with ARN {role_arn} cannot be found.", 404)
            key = self._mint(role_arn, session_name, self.clock() + timedelta(seconds=duration))
            tx.put_access_key(key)
        return key, f"{role.role_id}:{session_name}"

    def sweep(self) -> int:
        """Deletes stored AssumeRole keys past their expiry (they can never sign again)."""
        with self.store.transaction() as tx:
            return tx.delete_expired_keys(iso(self.clock()))

    # environments (memory only)

    def issue(self, role_arn: str, session_name: str) -> IssuedCredentials:
        now = self.clock()
        key = self._mint(role_arn, session_name, now + self.lifetime)
        with self._lock:
            self._forget_expired(now)
            self._live[key.access_key_id] = key
        return _issued(key)

    def refresh(self, access_key_id: str) -> None:
        """Extends live (even just expired) credentials to now + lifetime; revoked stay revoked."""
        with self._lock:
            key = self._live.get(access_key_id)
            if key is not None:
                expiry = iso(self.clock() + self.lifetime)
                self._live[access_key_id] = dataclasses.replace(key, expires=expiry)

    def revoke_sessions(self, principal_prefix: str) -> None:
        """Revokes every environment key whose principal starts with the prefix (any case):
        the role they were issued for is gone."""
        prefix = principal_prefix.lower()
        with self._lock:
            for key_id in [k for k, v in self._live.items() if v.principal_arn.lower().startswith(prefix)]:
                del self._live[key_id]

    def revoke(self, access_key_id: str) -> None:
        with self._lock:
            self._live.pop(access_key_id, None)

    # SigV4

    def live(self, access_key_id: str) -> AccessKey | None:
        """An environment's key (memory only); revoked ones are gone at once."""
        with self._lock:
            return self._live.get(access_key_id)

    def _mint(self, role_arn: str, session_name: str, expiry: datetime) -> AccessKey:
        key_id, secret = new_access_key("ASIA")
        return AccessKey(
            key_id, secret, session_arn(role_arn, session_name), iso(self.clock()),
            _session_token(), iso(expiry),
        )  # fmt: skip

    def _forget_expired(self, now: datetime) -> None:
        """Drops keys long past expiry that no environment revoked (e.g. a worker crashed)."""
        horizon = now - self.lifetime
        stale = [k for k, v in self._live.items() if (e := expires_at(v)) is not None and e < horizon]
        for key_id in stale:
            del self._live[key_id]


def _issued(key: AccessKey) -> IssuedCredentials:
    expiry = expires_at(key)
    assert key.session_token is not None and expiry is not None  # minted above with both
    return IssuedCredentials(key.access_key_id, key.secret_access_key, key.session_token, expiry)
