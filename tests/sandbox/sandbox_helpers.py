"""Helpers for real-sandbox tests: a ``Runner`` that starts a Python script in a sandbox
and always destroys it."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from lamina.sandbox.bwrap import BwrapDriver, BwrapSandbox
from lamina.sandbox.driver import SandboxSpec, SandboxStats

T = TypeVar("T")
PYTHON = ["/var/lang/bin/python3", "-I", "-S"]
_ids = itertools.count()


def arun(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str
    stats: SandboxStats


class Runner:
    """Starts scripts in sandboxes; each gets a fresh code dir and log files."""

    def __init__(self, driver: BwrapDriver, base: Path) -> None:
        self.driver = driver
        self.base = base

    def spec(self, script: str, **overrides: Any) -> SandboxSpec:
        n = next(_ids)
        code = self.base / f"code-{n}"
        code.mkdir(mode=0o755)
        (code / "main.py").write_text(script)
        (code / "main.py").chmod(0o644)
        out = os.open(self.base / f"out-{n}", os.O_RDWR | os.O_CREAT, 0o600)
        err = os.open(self.base / f"err-{n}", os.O_RDWR | os.O_CREAT, 0o600)
        spec = SandboxSpec(
            env_id=f"t{os.getpid()}-{n}",
            argv=[*PYTHON, "/var/task/main.py"],
            env={"LD_LIBRARY_PATH": "/var/lang/lib", "PATH": "/usr/bin:/bin"},
            code_dir=code,
            opt_dir=None,
            runtime_binds=[(Path(sys.base_prefix), "/var/lang")],
            memory_mb=1769,
            tmp_mb=16,
            stdout_fd=out,
            stderr_fd=err,
        )
        return replace(spec, **overrides)

    def output(self, spec: SandboxSpec) -> tuple[str, str]:
        texts = []
        for fd in (spec.stdout_fd, spec.stderr_fd):
            texts.append(os.pread(fd, 1 << 20, 0).decode(errors="replace"))
        return texts[0], texts[1]

    def close(self, spec: SandboxSpec) -> None:
        os.close(spec.stdout_fd)
        os.close(spec.stderr_fd)

    def run(self, script: str, timeout: float = 20, **overrides: Any) -> Result:
        spec = self.spec(script, **overrides)

        async def go() -> Result:
            sandbox = await self.driver.start(spec)
            try:
                rc = await asyncio.wait_for(sandbox.wait(), timeout)
                stats = sandbox.stats()
            finally:
                sandbox.destroy()
            return Result(rc, *self.output(spec), stats)

        try:
            return arun(go())
        finally:
            self.close(spec)

    def started(self, spec: SandboxSpec, body: Callable[[BwrapSandbox], Awaitable[T]]) -> T:
        """Run ``body`` against a started sandbox; destroy it whatever happens."""

        async def go() -> T:
            sandbox = await self.driver.start(spec)
            try:
                return await body(sandbox)
            finally:
                sandbox.destroy()

        return arun(go())

    def assert_host_serving(self) -> None:
        result = self.run("print('alive')")
        assert (result.rc, result.out) == (0, "alive\n")


