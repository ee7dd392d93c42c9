"""Lamina's own seccomp filter, compiled with libseccomp and handed to ``bwrap --seccomp FD``.

Allow-by-default with an explicit deny list (SECURITY.md class C): the runtimes need the
ordinary Linux surface, and the denied calls are the ones that reach kernel attack surface or
host state. libseccomp emits the architecture check first; the filter is built for the native
arch only and the bad-arch action kills the process, so i386 (``int 0x80``) and x32 syscalls
(nr | ``__X32_SYSCALL_BIT``) never reach the syscall table.

The program is compiled once per driver (:func:`compile_bpf`) and written to a fresh pipe for
each start (:func:`bpf_fd`), because bwrap reads the fd to its end.
"""

from __future__ import annotations

import errno
import os
import tempfile

import pyseccomp as sc

from lamina.errors import SandboxError

DENY_EPERM = (
    # mount family and root changes
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    # namespaces
    "unshare", "setns",
    # keyrings
    "keyctl", "add_key", "request_key",
    # kernel attack surface
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register",
    # other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev",
    # host state
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "clock_settime", "settimeofday", "adjtimex", "clock_adjtime", "swapon", "swapoff",
    "acct", "quotactl", "syslog", "open_by_handle_at", "name_to_handle_at", "iopl", "ioperm",
    "vhangup", "personality",
)  # fmt: skip

# clone3 passes its flags in memory that seccomp cannot read: ENOSYS makes glibc fall back
# to clone, whose flags (argument 0 on x86-64) the filter can inspect.
DENY_ENOSYS = ("clone3",)

CLONE_NS_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

TIOCSTI = 0x5412
TIOCLINUX = 0x541C
# The kernel reads an ioctl's request as a 32-bit int: compare only the low 32 bits so a
# request with high bits set cannot slip past.
_LOW32 = 0xFFFF_FFFF


def build_filter() -> sc.SyscallFilter:
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENY_EPERM:
        f.add_rule(eperm, name)
    for name in DENY_ENOSYS:
        f.add_rule(sc.ERRNO(errno.ENOSYS), name)
    for flag in CLONE_NS_FLAGS:
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for request in (TIOCSTI, TIOCLINUX):
        f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, _LOW32, request))
    return f


def compile_bpf() -> bytes:
    """The filter as a classic BPF program (what the kernel and bwrap take)."""
    try:
        with tempfile.TemporaryFile() as out:
            build_filter().export_bpf(out)
            out.seek(0)
            return out.read()
    except OSError as exc:
        raise SandboxError("seccomp compile", "libseccomp export failed", exc.errno) from exc


def bpf_fd(program: bytes) -> int:
    """A pipe read end holding ``program``; the caller passes it to bwrap and closes it."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, program)
    finally:
        os.close(write_end)
    return read_end
