"""The seccomp filter as a program: arch check, deny list, masked compares."""

from __future__ import annotations

import errno
import struct
import tempfile

import pyseccomp as sc  # type: ignore[import-untyped]

from lamina.sandbox import seccomp


def _pfc() -> str:
    with tempfile.TemporaryFile("w+") as out:
        seccomp.build_filter().export_pfc(out)
        out.seek(0)
        return out.read()


def test_only_the_native_abi_is_allowed_and_others_kill() -> None:
    f = seccomp.build_filter()
    assert f.get_attr(sc.Attr.ACT_BADARCH) == sc.KILL_PROCESS
    assert f.exist_arch(sc.Arch.X86_64)
    for foreign in (sc.Arch.X86, sc.Arch.X32):
        try:
            present = f.exist_arch(foreign)
        except OSError:
            present = False
        assert not present


def test_program_starts_with_the_arch_check() -> None:
    program = seccomp.compile_bpf()
    assert len(program) % 8 == 0
    code, _, _, k = struct.unpack("<HBBI", program[:8])
    assert (code, k) == (0x20, 4)  # ld [4]: seccomp_data.arch
    code, _, _, k = struct.unpack("<HBBI", program[8:16])
    assert k == sc.Arch.X86_64  # jeq AUDIT_ARCH_X86_64


def test_every_denied_call_is_in_the_filter() -> None:
    text = _pfc()
    for name in (*seccomp.DENY_EPERM, *seccomp.DENY_ENOSYS, "clone", "ioctl"):
        assert f"syscall \"{name}\"" in text, name
    assert f"action ERRNO({errno.ENOSYS})" in text


def test_ioctl_requests_are_compared_on_the_low_32_bits() -> None:
    text = _pfc()
    assert "0x5412" in text or str(seccomp.TIOCSTI) in text
    assert "& 0xffffffff" in text.lower() or "4294967295" in text


def test_bpf_fd_holds_the_program() -> None:
    import os

    program = seccomp.compile_bpf()
    fd = seccomp.bpf_fd(program)
    try:
        assert os.read(fd, 65536) == program
        assert os.read(fd, 1) == b""
    finally:
        os.close(fd)
