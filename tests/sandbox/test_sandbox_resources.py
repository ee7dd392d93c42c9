"""SECURITY.md class A: resource exhaustion stops at the env's own limits."""

from __future__ import annotations

import pytest
from sandbox_helpers import Runner

from lamina.sandbox.bwrap import BwrapSandbox

pytestmark = pytest.mark.root

FORK_BOMB = """
import os, errno, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print(errno.errorcode[e.errno], n, flush=True)
"""

BALLOON = """
chunks = []
while True:
    chunks.append(bytearray(16 * 1024 * 1024))
"""

FILL_TMP = """
import errno
written = 0
try:
    with open("/tmp/fill", "wb") as f:
        while True:
            f.write(b"x" * 65536)
            f.flush()
            written += 65536
except OSError as e:
    print(errno.errorcode[e.errno], written)
"""

FD_EXHAUST = """
import errno, os
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as e:
    print(errno.errorcode[e.errno], len(fds) + 3)
"""


def test_fork_bomb_stops_with_eagain_at_pids_limit(runner: Runner) -> None:
    result = runner.run(FORK_BOMB, pids_max=32)
    code, forked = result.out.split()
    assert code == "EAGAIN"
    # 32 tasks: bwrap's init, python itself, the children.
    assert 25 <= int(forked) <= 30
    runner.assert_host_serving()


def test_memory_balloon_is_oom_killed_inside_its_cgroup(runner: Runner) -> None:
    result = runner.run(BALLOON, memory_mb=64)
    assert result.rc != 0
    assert result.stats.oom_killed
    assert result.stats.max_memory_bytes <= 64 * 1024 * 1024
    runner.assert_host_serving()


def test_normal_run_reports_no_oom(runner: Runner) -> None:
    result = runner.run("x = bytearray(8 << 20)")
    assert result.rc == 0
    assert not result.stats.oom_killed
    assert result.stats.max_memory_bytes >= 8 << 20
    assert result.stats.cpu_time_ns > 0


def test_filling_tmp_stops_with_enospc_at_its_size(runner: Runner) -> None:
    result = runner.run(FILL_TMP, tmp_mb=4)
    code, written = result.out.split()
    assert code == "ENOSPC"
    assert 3 * 1024 * 1024 <= int(written) <= 4 * 1024 * 1024
    runner.assert_host_serving()


def test_fd_exhaustion_stops_with_emfile_at_1024(runner: Runner) -> None:
    result = runner.run(FD_EXHAUST)
    assert result.out.split() == ["EMFILE", "1024"]


def test_cpu_quota_bursts_during_init_then_is_proportional_to_memory(runner: Runner) -> None:
    spec = runner.spec("import time; time.sleep(30)", memory_mb=512)

    async def body(sandbox: BwrapSandbox) -> tuple[int, int, int]:
        cpu = runner.driver.hierarchy.parents()["cpu"] / spec.env_id
        burst = int((cpu / "cpu.cfs_quota_us").read_text())
        sandbox.end_init()
        quota = int((cpu / "cpu.cfs_quota_us").read_text())
        return burst, quota, int((cpu / "cpu.cfs_period_us").read_text())

    try:
        burst, quota, period = runner.started(spec, body)
    finally:
        runner.close(spec)
    assert burst == 100_000  # one full core while the runtime initialises, as AWS's init burst
    assert (quota, period) == (100_000 * 512 // 1769, 100_000)
