"""Pool lifecycle on fake environments and an injected clock: leases, reuse, retire, reaping."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from lamina.worker.pool import EnvKey, Pool, PooledEnv

KEY = EnvKey("fn", "$LATEST", "code-1|t1")
KEY_NEW = EnvKey("fn", "$LATEST", "code-2|t2")
KEY_V1 = EnvKey("fn", "1", "code-1|t0")
OTHER = EnvKey("other", "$LATEST", "code-9|t9")


def aio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop, with a hard deadline."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 10))

    return run


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeEnv:
    """Just enough of an Environment for the pool: an id, a birth time, health, destroy()."""

    _ids = itertools.count(1)

    def __init__(self, created: float, fail_destroy: bool = False) -> None:
        self.id = f"env-{next(self._ids)}"
        self.created = created
        self.ok = True
        self.destroyed = 0
        self.fail_destroy = fail_destroy
        self.in_use = 0  # leases holding this env right now
        self.revoked = False

    @property
    def healthy(self) -> bool:
        return self.ok and not self.destroyed

    def revoke(self) -> None:
        self.revoked = True

    async def destroy(self) -> None:
        self.destroyed += 1
        if self.fail_destroy:
            raise OSError("teardown failed")


class Harness:
    def __init__(self, *, idle_timeout: float = 60.0, max_lifetime: float = 3600.0) -> None:
        self.clock = Clock()
        self.pool = Pool(idle_timeout=idle_timeout, max_lifetime=max_lifetime, clock=self.clock)
        self.made: list[FakeEnv] = []

    def maker(self, **kwargs: bool) -> Callable[[], Awaitable[PooledEnv]]:
        async def make() -> PooledEnv:
            env = FakeEnv(self.clock(), **kwargs)
            self.made.append(env)
            return env

        return make

    async def use(self, key: EnvKey = KEY) -> tuple[FakeEnv, bool]:
        """One lease, released at once."""
        async with self.pool.lease(key, self.maker()) as (env, cold):
            assert isinstance(env, FakeEnv)
            return env, cold

    async def settle(self) -> None:
        """Let the pool's background teardowns run."""
        for _ in range(5):
            await asyncio.sleep(0)


@pytest.fixture
def h() -> Harness:
    return Harness()


@aio
async def test_cold_start_then_warm_reuse(h: Harness) -> None:
    first, cold1 = await h.use()
    second, cold2 = await h.use()
    assert (cold1, cold2) == (True, False)
    assert second is first
    assert h.pool.cold_starts == 1
    assert h.pool.counts() == (1, 0)


@aio
async def test_concurrent_leases_never_share_an_env(h: Harness) -> None:
    gate = asyncio.Event()
    seen: list[FakeEnv] = []

    async def invoke() -> None:
        async with h.pool.lease(KEY, h.maker()) as (env, _):
            assert isinstance(env, FakeEnv)
            env.in_use += 1
            assert env.in_use == 1, "one env leased twice"
            seen.append(env)
            await gate.wait()
            env.in_use -= 1

    tasks = [asyncio.create_task(invoke()) for _ in range(5)]
    await h.settle()
    assert h.pool.counts() == (0, 5)
    assert len({e.id for e in seen}) == 5
    gate.set()
    await asyncio.gather(*tasks)
    assert h.pool.counts() == (5, 0)
    # A second wave reuses the five and still never doubles up.
    gate.clear()
    seen.clear()
    tasks = [asyncio.create_task(invoke()) for _ in range(5)]
    await h.settle()
    gate.set()
    await asyncio.gather(*tasks)
    assert len({e.id for e in seen}) == 5
    assert h.pool.cold_starts == 5


@aio
async def test_idle_reuse_is_most_recent_first(h: Harness) -> None:
    async with h.pool.lease(KEY, h.maker()) as (a, _), h.pool.lease(KEY, h.maker()) as (b, _):
        pass
    # b went back first, a last: the next lease gets a (the warmest).
    again, cold = await h.use()
    assert again is a and not cold
    assert b is not a


@aio
async def test_keys_are_never_shared(h: Harness) -> None:
    mine, _ = await h.use(KEY)
    other, cold = await h.use(KEY_NEW)
    assert cold and other is not mine
    assert h.pool.counts() == (2, 0)


@aio
async def test_unhealthy_env_is_destroyed_on_release(h: Harness) -> None:
    async with h.pool.lease(KEY, h.maker()) as (env, _):
        assert isinstance(env, FakeEnv)
        env.ok = False
    await h.settle()
    assert env.destroyed == 1
    assert h.pool.counts() == (0, 0)
    fresh, cold = await h.use()
    assert cold and fresh is not env


@aio
async def test_idle_env_turned_unhealthy_is_skipped_and_destroyed(h: Harness) -> None:
    env, _ = await h.use()
    env.ok = False  # e.g. its process died while idle
    fresh, cold = await h.use()
    await h.settle()
    assert cold and fresh is not env
    assert env.destroyed == 1


@aio
async def test_body_exception_destroys_env(h: Harness) -> None:
    with pytest.raises(RuntimeError):
        async with h.pool.lease(KEY, h.maker()) as (env, _):
            raise RuntimeError("invoke blew up")
    await h.settle()
    assert isinstance(env, FakeEnv) and env.destroyed == 1
    assert h.pool.counts() == (0, 0)


@aio
async def test_cancelled_lease_destroys_env(h: Harness) -> None:
    entered = asyncio.Event()
    holder: list[FakeEnv] = []

    async def invoke() -> None:
        async with h.pool.lease(KEY, h.maker()) as (env, _):
            assert isinstance(env, FakeEnv)
            holder.append(env)
            entered.set()
            await asyncio.Event().wait()  # a client that went away mid-invoke

    task = asyncio.create_task(invoke())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await h.settle()
    assert holder[0].destroyed == 1  # healthy-looking but mid-invoke: never pooled
    assert h.pool.counts() == (0, 0)


@aio
async def test_retire_destroys_idle_now_and_busy_on_release(h: Harness) -> None:
    other, _ = await h.use(OTHER)
    async with h.pool.lease(KEY, h.maker()) as (busy, _):
        idle, _ = await h.use(KEY)  # a second env of the function, now idle
        assert isinstance(busy, FakeEnv) and busy is not idle
        h.pool.retire("fn")
        assert isinstance(idle, FakeEnv) and idle.revoked  # credentials dead before retire returns
        assert not busy.revoked  # the running invoke keeps its credentials
        await h.settle()
        assert idle.destroyed == 1
        assert busy.destroyed == 0  # never under a running invoke
    await h.settle()
    assert busy.destroyed == 1
    assert other.destroyed == 0
    assert h.pool.counts() == (1, 0)
    again, cold = await h.use(OTHER)
    assert again is other and not cold


@aio
async def test_retire_keep_predicate_spares_kept_keys(h: Harness) -> None:
    v1, _ = await h.use(KEY_V1)
    latest, _ = await h.use(KEY)
    async with (
        h.pool.lease(KEY_V1, h.maker()) as (busy_v1, _),
        h.pool.lease(KEY_V1, h.maker()) as (busy_v1b, _),
    ):
        h.pool.retire("fn", keep=lambda k: k.version == "1")
    await h.settle()
    assert latest.destroyed == 1
    assert busy_v1 is v1 and v1.destroyed == 0
    assert isinstance(busy_v1b, FakeEnv) and busy_v1b.destroyed == 0
    assert h.pool.counts() == (2, 0)


@aio
async def test_retire_during_cold_start_reaches_the_new_env(h: Harness) -> None:
    release = asyncio.Event()

    async def slow_make() -> PooledEnv:
        await release.wait()
        env = FakeEnv(h.clock())
        h.made.append(env)
        return env

    async def invoke() -> None:
        async with h.pool.lease(KEY, slow_make):
            pass

    task = asyncio.create_task(invoke())
    await h.settle()
    h.pool.retire("fn")  # the function was updated while its env was still starting
    release.set()
    await task
    await h.settle()
    assert h.made[0].destroyed == 1
    assert h.pool.counts() == (0, 0)


@aio
async def test_max_lifetime_on_release_and_on_take() -> None:
    h = Harness(max_lifetime=100.0)
    env, _ = await h.use()
    h.clock.now += 100.0
    fresh, cold = await h.use()  # the idle one is too old to hand out
    await h.settle()
    assert cold and env.destroyed == 1
    async with h.pool.lease(KEY, h.maker()) as (same, _):
        assert same is fresh
        h.clock.now += 100.0  # grows too old during the invoke
    await h.settle()
    assert fresh.destroyed == 1
    assert h.pool.counts() == (0, 0)


@aio
async def test_reap_idle_timeout_and_lifetime() -> None:
    h = Harness(idle_timeout=60.0, max_lifetime=500.0)
    async with h.pool.lease(KEY, h.maker()) as (a, _), h.pool.lease(KEY, h.maker()) as (b, _):
        pass
    assert h.pool.reap() == 0
    h.clock.now += 30.0
    await h.use()  # a (LIFO) is used again: its idle time restarts
    h.clock.now += 30.0
    assert h.pool.reap() == 1  # b idle for 60 s
    await h.settle()
    assert isinstance(a, FakeEnv) and isinstance(b, FakeEnv)
    assert (a.destroyed, b.destroyed) == (0, 1)
    for _ in range(8):  # a stays busy enough never to idle out ...
        h.clock.now += 50.0
        again, _ = await h.use()
        assert again is a
    h.clock.now += 45.0
    assert h.pool.reap() == 1  # ... but its lifetime is over
    await h.settle()
    assert a.destroyed == 1
    assert h.pool.counts() == (0, 0)


@aio
async def test_run_reaper_loop_reaps_and_stops_on_cancel() -> None:
    h = Harness(idle_timeout=10.0)
    env, _ = await h.use()
    h.clock.now += 10.0
    task = asyncio.create_task(h.pool.run_reaper(0.001))
    for _ in range(100):
        await asyncio.sleep(0.001)
        if env.destroyed:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert env.destroyed == 1


@aio
async def test_close_destroys_idle_and_busy(h: Harness) -> None:
    idle, _ = await h.use()
    async with h.pool.lease(KEY, h.maker()) as (busy, _):
        await h.pool.close()
        assert idle.destroyed == 1
        assert isinstance(busy, FakeEnv) and busy.destroyed >= 1
    await h.settle()
    assert h.pool.counts() == (0, 0)  # a release after close never pools


@aio
async def test_failing_make_leaves_pool_consistent(h: Harness) -> None:
    async def broken() -> PooledEnv:
        raise OSError("sandbox setup failed")

    with pytest.raises(OSError):
        async with h.pool.lease(KEY, broken):
            pytest.fail("body must not run")
    assert h.pool.counts() == (0, 0)
    assert h.pool.cold_starts == 0
    env, cold = await h.use()
    assert cold and h.pool.counts() == (1, 0)
    h.pool.retire("fn")  # no stale bookkeeping left from the failed start
    await h.settle()
    assert env.destroyed == 1


@aio
async def test_destroy_failure_is_logged_not_raised(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async with h.pool.lease(KEY, h.maker(fail_destroy=True)) as (env, _):
        assert isinstance(env, FakeEnv)
        env.ok = False
    with caplog.at_level(logging.ERROR, logger="lamina.worker.pool"):
        await h.settle()
        await h.pool.close()
    assert env.destroyed == 1
    assert any(env.id in r.getMessage() for r in caplog.records)
