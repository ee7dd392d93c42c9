"""The environment pool: warm environments per function version, one invocation at a time.

An environment is leased for exactly one invoke (``async with pool.lease(key, make)``). On
release it goes back to the idle list only if it is still healthy, still current (its
function was not updated or deleted meanwhile) and not past its maximum lifetime; otherwise
it is destroyed. Nothing is ever handed to two invokes at once. A reaper destroys
environments idle for longer than the idle timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvKey:
    """Which code and configuration an environment runs: envs are never shared across keys."""

    function: str
    version: str
    fingerprint: str  # changes whenever the version's code or configuration changes


class PooledEnv(Protocol):
    id: str
    created: float

    @property
    def healthy(self) -> bool:
        """False once the env timed out, crashed, ran out of memory or misbehaved."""
        ...

    def revoke(self) -> None:
        """Leaving service: the env's credentials stop working now; idempotent."""
        ...

    async def destroy(self) -> None:
        """Kills everything in the env and frees its resources (revoking first); idempotent."""
        ...


class Pool:
    def __init__(
        self,
        *,
        idle_timeout: float,
        max_lifetime: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.max_lifetime = max_lifetime
        self.clock = clock
        self._idle: dict[EnvKey, list[tuple[float, PooledEnv]]] = defaultdict(list)
        self._busy: dict[str, tuple[EnvKey, PooledEnv]] = {}
        self._retired: set[str] = set()  # ids of busy envs to destroy on release
        self._making: dict[object, EnvKey] = {}  # cold starts in progress, by lease ticket
        self._stale_makes: set[object] = set()  # tickets retired while their env was starting
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.cold_starts = 0

    def counts(self) -> tuple[int, int]:
        """(idle, busy) environments."""
        return sum(len(v) for v in self._idle.values()), len(self._busy)

    @asynccontextmanager
    async def lease(
        self, key: EnvKey, make: Callable[[], Awaitable[PooledEnv]]
    ) -> AsyncIterator[tuple[PooledEnv, bool]]:
        """An environment of ``key`` for one invoke, and whether it was a cold start.

        If the body raises (cancellation included) the env is destroyed, not pooled: it may
        still be in the middle of an invoke.
        """
        env, cold = self._take_idle(key), False
        if env is None:
            # A retire() while make() runs must reach the env it is about to return.
            ticket = object()
            self._making[ticket] = key
            try:
                env, cold = await make(), True
            finally:
                del self._making[ticket]
                stale = ticket in self._stale_makes
                self._stale_makes.discard(ticket)
            self.cold_starts += 1
            if stale:
                self._retired.add(env.id)
        self._busy[env.id] = (key, env)
        failed = True
        try:
            yield env, cold
            failed = False
        finally:
            del self._busy[env.id]
            retired = env.id in self._retired
            self._retired.discard(env.id)
            expired = self.clock() - env.created >= self.max_lifetime
            if env.healthy and not (failed or retired or expired or self._closed):
                self._idle[key].append((self.clock(), env))
            else:
                self._destroy_soon(env)

    def _take_idle(self, key: EnvKey) -> PooledEnv | None:
        idle = self._idle.get(key)
        while idle:
            _, env = idle.pop()  # most recently used first: its caches are warmest
            if env.healthy and self.clock() - env.created < self.max_lifetime:
                return env
            self._destroy_soon(env)
        return None

    def retire(self, function: str, keep: Callable[[EnvKey], bool] = lambda k: False) -> None:
        """No new invoke reaches the function's current envs (unless ``keep`` says so)."""
        for key in [k for k in self._idle if k.function == function and not keep(k)]:
            for _, env in self._idle.pop(key):
                self._destroy_soon(env)
        for env_id, (key, _) in self._busy.items():
            if key.function == function and not keep(key):
                self._retired.add(env_id)
        for ticket, key in self._making.items():
            if key.function == function and not keep(key):
                self._stale_makes.add(ticket)

    def reap(self) -> int:
        """Destroys envs idle too long or past their lifetime; returns how many."""
        now = self.clock()
        count = 0
        for key in list(self._idle):
            keep = []
            for since, env in self._idle[key]:
                if now - since >= self.idle_timeout or now - env.created >= self.max_lifetime:
                    self._destroy_soon(env)
                    count += 1
                else:
                    keep.append((since, env))
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return count

    async def run_reaper(self, interval: float) -> None:
        """The reaper loop: runs until cancelled."""
        while True:
            await asyncio.sleep(interval)
            reaped = self.reap()
            if reaped:
                log.debug("reaped %d idle environments", reaped)

    def _destroy_soon(self, env: PooledEnv) -> None:
        env.revoke()
        task = asyncio.get_running_loop().create_task(self._destroy(env))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _destroy(env: PooledEnv) -> None:
        try:
            await env.destroy()
        except Exception:  # a failed teardown must not take the pool down; reclaim catches it
            log.exception("destroying environment %s failed", env.id)

    async def close(self) -> None:
        """Destroys every environment, idle and busy, and waits for the teardowns; envs
        released afterwards are destroyed too, never pooled."""
        self._closed = True
        for key in list(self._idle):
            for _, env in self._idle.pop(key):
                self._destroy_soon(env)
        for _, env in list(self._busy.values()):
            self._destroy_soon(env)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
