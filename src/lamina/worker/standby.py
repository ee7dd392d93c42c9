"""Standby environments: sandboxes started ahead of demand, one small stock per runtime.

A cold start takes a standby (its sandbox and interpreter already running) and assigns it to
the function; the stock is refilled in the background, off the request path, one spawn at a
time so refills never crowd out invokes. A standby has never run user code, so handing it to
any function keeps every environment bound to exactly one version. With a stock of 0 (or an
empty stock) a cold start spawns a fresh sandbox itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from lamina.worker.environment import Environment

log = logging.getLogger(__name__)


class Standbys:
    def __init__(
        self, spawn: Callable[[str], Awaitable[Environment]], targets: dict[str, int]
    ) -> None:
        """``spawn(runtime)`` starts one standby; ``targets`` is the stock to keep per runtime."""
        self._spawn = spawn
        self.targets = {runtime: n for runtime, n in targets.items() if n > 0}
        self._stock: dict[str, list[Environment]] = {runtime: [] for runtime in self.targets}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.taken = 0

    def start(self) -> None:
        if self.targets and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refill())
            self._wake.set()

    def take(self, runtime: str) -> Environment | None:
        """A live standby of ``runtime``, or None; either way the stock gets refilled."""
        stock = self._stock.get(runtime)
        env = None
        while stock:
            candidate = stock.pop()
            if candidate.alive:
                env = candidate
                break
            asyncio.get_running_loop().create_task(candidate.destroy())
        if env is not None:
            self.taken += 1
        self._wake.set()
        return env

    def count(self, runtime: str) -> int:
        return len(self._stock.get(runtime, ()))

    def status(self) -> dict[str, dict[str, int]]:
        """Per runtime: standbys ready now and the stock kept (the health endpoint shows it)."""
        return {
            runtime: {"ready": sum(env.alive for env in self._stock[runtime]), "target": target}
            for runtime, target in self.targets.items()
        }

    async def _refill(self) -> None:
        """The refill loop: waits to be woken, tops every stock up, backs off on errors."""
        backoff = 0.5
        while True:
            await self._wake.wait()
            self._wake.clear()
            for runtime, target in self.targets.items():
                stock = self._stock[runtime]
                stock[:] = [env for env in stock if env.alive]
                while len(stock) < target:
                    try:
                        stock.append(await self._spawn(runtime))
                        backoff = 0.5
                    except Exception:
                        log.exception("starting a %s standby failed; retrying in %.1f s", runtime, backoff)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 30.0)
                        self._wake.set()
                        break

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for stock in self._stock.values():
            while stock:
                await stock.pop().destroy()
