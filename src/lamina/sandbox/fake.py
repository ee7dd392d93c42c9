"""An in-memory driver for the worker's unit tests: no processes, no kernel objects.

It records every spec it was given and lets a test decide, per env, when the "process"
exits and with what status, so pool and lifecycle logic can be tested without root.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from lamina.errors import SandboxError
from lamina.sandbox.driver import SandboxSpec, SandboxStats


@dataclass
class FakeSandbox:
    spec: SandboxSpec
    pid: int
    stats_value: SandboxStats = SandboxStats(0, False, 0)
    killed: bool = False
    terminated: bool = False
    destroyed: bool = False
    init_ended: bool = False
    frozen: bool = False
    memory_mb: int = 0
    _exit: asyncio.Future[int] | None = field(default=None, repr=False)

    def _future(self) -> asyncio.Future[int]:
        if self._exit is None:
            self._exit = asyncio.get_running_loop().create_future()
            if self.killed:
                self._exit.set_result(-9)
        return self._exit

    def exit(self, status: int) -> None:
        """Test hook: the command exits with ``status``."""
        future = self._future()
        if not future.done():
            future.set_result(status)

    async def wait(self) -> int:
        return await self._future()

    def kill(self) -> None:
        self.killed = True
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(-9)

    async def terminate(self, grace: float) -> None:
        self.terminated = True
        self.kill()

    def end_init(self) -> None:
        self.init_ended = True

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    def resize(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb

    def stats(self) -> SandboxStats:
        return self.stats_value

    def destroy(self) -> None:
        self.kill()
        self.destroyed = True


class FakeDriver:
    """A :class:`lamina.sandbox.driver.SandboxDriver`; ``fail_next`` simulates a setup error."""

    def __init__(self) -> None:
        self.started: list[FakeSandbox] = []
        self.fail_next: SandboxError | None = None
        self.reclaimed = 0

    async def start(self, spec: SandboxSpec) -> FakeSandbox:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        sandbox = FakeSandbox(spec, pid=10_000 + len(self.started))
        self.started.append(sandbox)
        return sandbox

    def reclaim(self) -> int:
        self.reclaimed += 1
        return 0
