"""What the worker needs to give each environment credentials of its function's role.

The IAM side (``lamina.iam.credentials``) implements :class:`CredentialIssuer`; the worker
asks for one set of temporary credentials per environment when it assigns the environment
to a function version, keeps them valid while the environment lives (``refresh``), and
revokes them when the environment ends. Environments never see a platform key.
:class:`LiveCredentials` does that bookkeeping for the worker; :class:`FakeCredentialIssuer`
stands in for the IAM side in tests.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 300.0  # seconds between refreshes of live environments' credentials


@dataclass(frozen=True)
class IssuedCredentials:
    access_key_id: str  # "ASIA..." as AWS's temporary keys
    secret_access_key: str
    session_token: str
    expiration: datetime  # UTC


class CredentialIssuer(Protocol):
    def issue(self, role_arn: str, session_name: str) -> IssuedCredentials:
        """Temporary credentials of ``role_arn`` for one environment."""
        ...

    def refresh(self, access_key_id: str) -> None:
        """Pushes the expiry of live credentials forward (the environment is still running)."""
        ...

    def revoke(self, access_key_id: str) -> None:
        """The credentials stop working now (the environment ended)."""
        ...


class LiveCredentials:
    """The credentials of the worker's live environments: issued at assignment, refreshed by
    one loop for all of them (not a task per env), revoked when their environment ends.

    Issuer failures on refresh or revoke are logged, never raised: a teardown must finish,
    and one bad key must not stop the refresh of the others.
    """

    def __init__(self, issuer: CredentialIssuer, refresh_interval: float = REFRESH_INTERVAL) -> None:
        self.issuer = issuer
        self.refresh_interval = refresh_interval
        self._live: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def live(self) -> frozenset[str]:
        return frozenset(self._live)

    def issue(self, role_arn: str, session_name: str) -> IssuedCredentials:
        creds = self.issuer.issue(role_arn, session_name=session_name)
        self._live.add(creds.access_key_id)
        return creds

    def revoke(self, access_key_id: str) -> None:
        """Idempotent: only live keys reach the issuer."""
        if access_key_id not in self._live:
            return
        self._live.discard(access_key_id)
        try:
            self.issuer.revoke(access_key_id)
        except Exception:
            log.exception("revoking credentials %s failed", access_key_id)

    def refresh_all(self) -> int:
        """Refreshes every live key; returns how many succeeded."""
        count = 0
        for key_id in list(self._live):
            try:
                self.issuer.refresh(key_id)
                count += 1
            except Exception:
                log.exception("refreshing credentials %s failed", key_id)
        return count

    def start(self) -> None:
        """Starts the refresh loop (call once the event loop runs)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            self.refresh_all()

    async def close(self) -> None:
        """Stops refreshing and revokes whatever is still live."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for key_id in list(self._live):
            self.revoke(key_id)


class FakeCredentialIssuer:
    """An in-memory issuer for tests: records every call."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.clock = clock
        self.issued: list[tuple[str, str, IssuedCredentials]] = []  # (role, session, creds)
        self.refreshed: list[str] = []
        self.revoked: list[str] = []

    def issue(self, role_arn: str, session_name: str) -> IssuedCredentials:
        creds = IssuedCredentials(
            "ASIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30),
            secrets.token_urlsafe(48), self.clock() + timedelta(hours=1),
        )
        self.issued.append((role_arn, session_name, creds))
        return creds

    def refresh(self, access_key_id: str) -> None:
        self.refreshed.append(access_key_id)

    def revoke(self, access_key_id: str) -> None:
        self.revoked.append(access_key_id)

    @property
    def live(self) -> set[str]:
        return {c.access_key_id for _, _, c in self.issued} - set(self.revoked)
