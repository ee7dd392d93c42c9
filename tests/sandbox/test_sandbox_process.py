"""SECURITY.md class B: the whole tree dies on kill and terminate; reclaim after a crash."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from sandbox_helpers import Runner, arun

from lamina.sandbox.bwrap import BwrapDriver, BwrapSandbox
from lamina.sandbox.driver import SandboxSpec

pytestmark = pytest.mark.root

# Children that setsid and double-fork, then exec a sleep whose argv carries a marker.
ESCAPERS = """
import os, signal, sys, time
marker = sys.argv[1]
for _ in range(3):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            # sh keeps the marker in its command line (GNU sleep would refuse the extra argument)
            os.execv("/bin/sh", ["sh", "-c", "while :; do sleep 1; done", marker])
        os._exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(0.2)
print("ready", flush=True)
time.sleep(1000)
"""


def _host_pids_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


async def _until_ready(runner: Runner, fd: int) -> None:
    deadline = time.monotonic() + 10
    while b"ready" not in os.pread(fd, 100, 0):
        assert time.monotonic() < deadline, "sandbox never became ready"
        await asyncio.sleep(0.01)


def _escaper_spec(runner: Runner, marker: str) -> SandboxSpec:
    spec = runner.spec(ESCAPERS)
    return replace(spec, argv=[*spec.argv, marker])


def test_kill_leaves_no_survivor(runner: Runner) -> None:
    marker = f"lamina-marker-{uuid.uuid4().hex}"
    spec = _escaper_spec(runner, marker)

    async def body(sandbox: BwrapSandbox) -> tuple[int, list[int], list[int]]:
        await _until_ready(runner, spec.stdout_fd)
        before = _host_pids_with(marker)
        sandbox.kill()
        status = await asyncio.wait_for(sandbox.wait(), 5)
        return status, before, runner.driver.hierarchy.group(spec.env_id).procs()

    try:
        status, before, left = runner.started(spec, body)
    finally:
        runner.close(spec)
    assert len(before) >= 4  # the sandboxed main process and its three escaped shells
    assert status != 0
    assert left == []
    assert _host_pids_with(marker) == []


def test_terminate_kills_a_tree_that_ignores_sigterm(runner: Runner) -> None:
    marker = f"lamina-marker-{uuid.uuid4().hex}"
    spec = _escaper_spec(runner, marker)

    async def body(sandbox: BwrapSandbox) -> float:
        await _until_ready(runner, spec.stdout_fd)
        started = time.monotonic()
        await sandbox.terminate(grace=0.2)
        return time.monotonic() - started

    try:
        took = runner.started(spec, body)
    finally:
        runner.close(spec)
    assert 0.2 <= took < 3
    assert _host_pids_with(marker) == []


def test_destroy_is_idempotent_and_removes_the_cgroup(runner: Runner) -> None:
    spec = runner.spec("print('x')")

    async def go() -> None:
        sandbox = await runner.driver.start(spec)
        await sandbox.wait()
        sandbox.destroy()
        sandbox.destroy()

    try:
        arun(go())
    finally:
        runner.close(spec)
    assert spec.env_id not in runner.driver.hierarchy.leftovers()


def test_reclaim_removes_a_crashed_runs_leftovers(runner: Runner, sandbox_base: Path) -> None:
    marker = f"lamina-marker-{uuid.uuid4().hex}"
    spec = _escaper_spec(runner, marker)

    async def body(sandbox: BwrapSandbox) -> int:
        await _until_ready(runner, spec.stdout_fd)
        # A new server start on the same cgroup parent and state dir, as after kill -9.
        successor = BwrapDriver(state_dir=sandbox_base / "state", cgroup_name="lamina-test")
        try:
            return successor.reclaim()
        finally:
            successor.close()

    try:
        reclaimed = runner.started(spec, body)
    finally:
        runner.close(spec)
    assert reclaimed >= 1
    assert _host_pids_with(marker) == []
    assert runner.driver.hierarchy.leftovers() == []
    runner.assert_host_serving()
