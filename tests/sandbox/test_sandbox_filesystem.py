"""SECURITY.md class D: what the sandbox can see and write."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import cast

import pytest
from sandbox_helpers import Runner

from lamina.sandbox.bwrap import BwrapDriver
from lamina.sandbox.rootfs import DEVICES

pytestmark = pytest.mark.root

PROBE = """
import errno, json, os
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
def write(path):
    return attempt(lambda: open(path, "w").write("x"))
out = {
    "root_entries": sorted(os.listdir("/")),
    "dev": sorted(os.listdir("/dev")),
    "pids": sorted(p for p in os.listdir("/proc") if p.isdigit()),
    "init_cmdline": open("/proc/1/cmdline").read().split("\\0")[0],
    "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")
                  if os.path.exists(f"/proc/self/fd/{f}")),
    "exists": {p: os.path.exists(p) for p in ("/root", "/work", "/home", "/run", "/sys",
                                               "/etc/shadow", "/var/lib", "/boot")},
    "writes": {p: write(p) for p in ("/var/task/x", "/var/task/main.py", "/usr/x", "/x",
                                      "/var/lang/x", "/etc/passwd", "/opt/x", "/dev/x",
                                      "/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger",
                                      "/proc/self/exe", "/tmp/ok")},
    "passwd": open("/etc/passwd").read().splitlines()[0].split(":")[:3],
    "mounts": [l.split()[4] + " " + l.split()[5] for l in open("/proc/self/mountinfo")],
    "cwd": os.getcwd(),
}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def seen(driver: BwrapDriver, sandbox_base: Path) -> dict[str, object]:
    runner = Runner(driver, sandbox_base)
    extra = os.open("/dev/null", os.O_RDONLY)
    try:
        result = runner.run(PROBE, pass_fds=(extra,))
    finally:
        os.close(extra)
    assert result.rc == 0, result.err
    seen: dict[str, object] = json.loads(result.out)
    seen["extra_fd"] = extra
    return seen


def test_root_holds_only_the_sandbox_tree(seen: dict[str, object]) -> None:
    expected = {"bin", "dev", "etc", "lib", "opt", "proc", "sbin", "tmp", "usr", "var"}
    entries = cast(list[str], seen["root_entries"])
    assert set(entries) <= expected | {"lib32", "lib64", "libx32"}
    assert all(not v for v in seen["exists"].values()), seen["exists"]  # type: ignore[attr-defined]


def test_dev_holds_exactly_the_five_devices(seen: dict[str, object]) -> None:
    assert seen["dev"] == sorted(DEVICES)


def test_only_own_processes_visible(seen: dict[str, object]) -> None:
    # bwrap's init (1) and the command (2); the host's pid 1 is not in this namespace.
    assert seen["pids"] == ["1", "2"]
    assert str(seen["init_cmdline"]).endswith("bwrap")


def test_only_stdio_and_passed_fds_are_open(seen: dict[str, object]) -> None:
    assert seen["fds"] == [0, 1, 2, seen["extra_fd"]]


def test_everything_but_tmp_is_read_only(seen: dict[str, object]) -> None:
    # ENOENT: a kernel without magic SysRq has no /proc/sysrq-trigger at all.
    writes: dict[str, str] = seen["writes"]  # type: ignore[assignment]
    assert writes.pop("/tmp/ok") == "ok"
    safe = ("EROFS", "EACCES", "ETXTBSY", "ENOENT")
    assert {path: err for path, err in writes.items() if err not in safe} == {}


def test_every_mount_is_nosuid_and_nodev_except_device_binds(seen: dict[str, object]) -> None:
    for line in seen["mounts"]:  # type: ignore[attr-defined]
        target, options = line.split(" ")
        assert "nosuid" in options.split(","), line
        if not target.startswith("/dev/"):
            assert "nodev" in options.split(","), line


def test_passwd_names_the_sandbox_user_and_cwd_is_task(seen: dict[str, object]) -> None:
    assert seen["passwd"] == ["sbx_user1051", "x", "993"]
    assert seen["cwd"] == "/var/task"


def test_two_envs_do_not_share_tmp(runner: Runner) -> None:
    first = runner.run("open('/tmp/secret', 'w').write('s'); print('ok')")
    second = runner.run("import os; print(os.listdir('/tmp'))")
    assert (first.out, second.out) == ("ok\n", "[]\n")
