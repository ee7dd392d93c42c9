"""The fake driver keeps the seam's contract (used by the worker's unit tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lamina.errors import SandboxError
from lamina.sandbox.driver import SandboxDriver, SandboxSpec
from lamina.sandbox.fake import FakeDriver

SPEC = SandboxSpec(
    env_id="e1", argv=["x"], env={}, code_dir=Path("/c"), opt_dir=None, runtime_binds=[],
    memory_mb=128, tmp_mb=512, stdout_fd=1, stderr_fd=2,
)  # fmt: skip


def test_fake_start_wait_kill_destroy() -> None:
    async def go() -> tuple[int, int]:
        driver: SandboxDriver = FakeDriver()
        first = await driver.start(SPEC)
        second = await driver.start(SPEC)
        asyncio.get_running_loop().call_soon(first.kill)
        second.destroy()
        second.destroy()
        return await first.wait(), await second.wait()

    assert asyncio.run(go()) == (-9, -9)


def test_fake_setup_failure() -> None:
    driver = FakeDriver()
    driver.fail_next = SandboxError("cgroup create", "/x", 17)
    with pytest.raises(SandboxError, match="cgroup create"):
        asyncio.run(driver.start(SPEC))
    assert driver.started == []
