"""LiveCredentials: the worker's bookkeeping of environment credentials, on the fake issuer."""

from __future__ import annotations

import asyncio

import pytest

from lamina.worker.credentials import FakeCredentialIssuer, LiveCredentials


class FlakyIssuer(FakeCredentialIssuer):
    """Fails refresh and revoke for one chosen key."""

    def __init__(self) -> None:
        super().__init__()
        self.bad = ""

    def refresh(self, access_key_id: str) -> None:
        if access_key_id == self.bad:
            raise RuntimeError("issuer down")
        super().refresh(access_key_id)

    def revoke(self, access_key_id: str) -> None:
        if access_key_id == self.bad:
            raise RuntimeError("issuer down")
        super().revoke(access_key_id)


def test_issue_tracks_and_revoke_is_idempotent() -> None:
    issuer = FakeCredentialIssuer()
    live = LiveCredentials(issuer)
    a = live.issue("arn:aws:iam::000000000000:role/r", "fn")
    assert issuer.issued == [("arn:aws:iam::000000000000:role/r", "fn", a)]
    assert a.access_key_id.startswith("ASIA") and len(a.access_key_id) == 20
    assert live.live == {a.access_key_id}
    live.revoke(a.access_key_id)
    live.revoke(a.access_key_id)
    assert issuer.revoked == [a.access_key_id]
    assert live.live == frozenset()


def test_one_failing_key_neither_stops_the_others_nor_raises(caplog: pytest.LogCaptureFixture) -> None:
    issuer = FlakyIssuer()
    live = LiveCredentials(issuer)
    keys = [live.issue("role", f"s{i}").access_key_id for i in range(3)]
    issuer.bad = keys[1]
    assert live.refresh_all() == 2
    assert sorted(issuer.refreshed) == sorted([keys[0], keys[2]])
    live.revoke(keys[1])  # logged, not raised: a teardown must finish
    assert keys[1] not in live.live
    assert "issuer down" in caplog.text


def test_loop_refreshes_until_close_and_close_revokes_what_is_left() -> None:
    issuer = FakeCredentialIssuer()

    async def main() -> None:
        live = LiveCredentials(issuer, refresh_interval=0.01)
        key = live.issue("role", "fn").access_key_id
        live.start()
        live.start()  # one loop, however often started
        while issuer.refreshed.count(key) < 3:
            await asyncio.sleep(0.01)
        await live.close()
        assert issuer.revoked == [key]
        count = len(issuer.refreshed)
        await asyncio.sleep(0.05)
        assert len(issuer.refreshed) == count

    asyncio.run(asyncio.wait_for(main(), 5))
