"""SECURITY.md class C: Lamina's seccomp filter, capabilities, NoNewPrivs, foreign ABIs.

Arguments are chosen so that, without the filter, most calls would fail differently
(EFAULT, EBADF, ENOTTY) or succeed; only the filter answers EPERM/ENOSYS.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from sandbox_helpers import Runner

from lamina.sandbox.bwrap import BwrapDriver

pytestmark = pytest.mark.root

# x86-64 syscall numbers, with arguments.
CALLS = {
    "mount": (165, [1, 1, 1, 0, 0], "EPERM"),
    "umount2": (166, [1, 0], "EPERM"),
    "pivot_root": (155, [1, 1], "EPERM"),
    "unshare_user": (272, [0x10000000], "EPERM"),
    "unshare_net": (272, [0x40000000], "EPERM"),
    "setns": (308, [-1, 0], "EPERM"),
    "clone_newuser": (56, [0x10000000 | 17, 0, 0, 0, 0], "EPERM"),
    "clone_newpid": (56, [0x20000000 | 17, 0, 0, 0, 0], "EPERM"),
    "clone3": (435, [0, 0], "ENOSYS"),
    "keyctl": (250, [0, -3, 0], "EPERM"),
    "add_key": (248, [1, 1, 0, 0, -3], "EPERM"),
    "request_key": (249, [1, 1, 0, -3], "EPERM"),
    "bpf": (321, [0, 0, 0], "EPERM"),
    "perf_event_open": (298, [1, 0, -1, -1, 0], "EPERM"),
    "userfaultfd": (323, [0], "EPERM"),
    "io_uring_setup": (425, [1, 1], "EPERM"),
    "ptrace": (101, [16, 1, 0, 0], "EPERM"),
    "process_vm_readv": (310, [1, 1, 1, 1, 1, 0], "EPERM"),
    "kexec_load": (246, [0, 0, 0, 0], "EPERM"),
    "init_module": (175, [1, 0, 1], "EPERM"),
    "reboot": (169, [0, 0, 0, 0], "EPERM"),
    "clock_settime": (227, [0, 1], "EPERM"),
    "settimeofday": (164, [1, 0], "EPERM"),
    # TIOCSTI on stdin (/dev/null): ENOTTY without the filter.
    "tiocsti": (16, [0, 0x5412, 1], "EPERM"),
    "tiocsti_high_bits": (16, [0, 0xDEAD_0000_5412, 1], "EPERM"),
    "tioclinux": (16, [0, 0x541C, 1], "EPERM"),
}

PROBE = """
import ctypes, errno, json
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {}
for name, (nr, args, _) in json.loads(CALLS).items():
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    out[name] = "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def probe(driver: BwrapDriver, sandbox_base: Path) -> dict[str, str]:
    result = Runner(driver, sandbox_base).run(f"CALLS = {json.dumps(json.dumps(CALLS))}\n{PROBE}")
    assert result.rc == 0, result.err
    out: dict[str, str] = json.loads(result.out)
    return out


@pytest.mark.parametrize("name", sorted(CALLS))
def test_denied_syscall(probe: dict[str, str], name: str) -> None:
    assert probe[name] == CALLS[name][2]


def test_threads_work_through_clone3_fallback(runner: Runner) -> None:
    script = "import threading as t\nth = t.Thread(target=print, args=('t',))\n"
    script += "th.start(); th.join()"
    assert runner.run(script).out == "t\n"


STATUS = """
import os, threading
ev = threading.Event()
t = threading.Thread(target=ev.wait); t.start()
for tid in os.listdir("/proc/self/task"):
    fields = dict(l.split(":", 1) for l in open(f"/proc/self/task/{tid}/status"))
    keys = ("Uid", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
    print("|".join(fields[k].strip() for k in keys))
ev.set(); t.join()
"""


def test_every_thread_is_unprivileged_and_filtered(runner: Runner) -> None:
    lines = runner.run(STATUS).out.splitlines()
    assert len(lines) == 2
    zero = "0000000000000000"
    for line in lines:
        assert line.split("|") == ["993\t993\t993\t993", zero, zero, zero, zero, "1", "2"]


X32 = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print("before", flush=True)
libc.syscall(ctypes.c_long(0x40000000 | 39))  # x32 getpid
print("after", flush=True)
"""

# mov eax, 20 (i386 getpid); int 0x80; ret
I386 = """
import ctypes, mmap
code = b"\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3"
buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
buf.write(code)
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
print("before", flush=True)
ctypes.CFUNCTYPE(ctypes.c_int)(addr)()
print("after", flush=True)
"""


@pytest.mark.parametrize("script", [X32, I386], ids=["x32", "i386"])
def test_foreign_abi_kills_the_process(runner: Runner, script: str) -> None:
    result = runner.run(script)
    assert result.out == "before\n"
    assert result.rc == 128 + signal.SIGSYS
    runner.assert_host_serving()


SETUID = """
import os, errno
try:
    os.setuid(0)
except OSError as e:
    print(errno.errorcode[e.errno])
import socket
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def test_no_setuid_and_no_raw_sockets(runner: Runner) -> None:
    # setuid(0): root is not even mapped in the sandbox's user namespace (EINVAL).
    setuid, raw = runner.run(SETUID).out.split()
    assert setuid in ("EINVAL", "EPERM")
    assert raw == "EPERM"
