"""The worker's memory-backed scratch space: decrypted code, per-env directories.

Decrypted code must never touch the persistent disk, so the worker mounts a private tmpfs of
its own (falling back to a directory under /dev/shm, itself a tmpfs, where mounting is not
possible) and checks with statfs that what it got really is memory-backed. Everything under
it belongs to one server instance (named after its data dir) and is wiped at start and stop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import shutil
from pathlib import Path

from lamina.errors import SandboxError

log = logging.getLogger(__name__)

TMPFS_MAGIC = 0x01021994
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]


def is_tmpfs(path: Path) -> bool:
    buf = _StatFs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return False
    return (buf.f_type & 0xFFFFFFFF) == TMPFS_MAGIC


def _mount_tmpfs(target: Path, size_mb: int) -> bool:
    options = f"size={size_mb}m,mode=0700,nosuid,nodev".encode()
    rc = _libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", 0, options)
    if rc != 0:
        log.info("cannot mount a tmpfs at %s (errno %d); using /dev/shm", target, ctypes.get_errno())
        return False
    return True


def _umount(target: Path) -> None:
    if _libc.umount2(os.fsencode(target), MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        log.warning("umount %s failed: errno %d", target, ctypes.get_errno())


class Scratch:
    """A tmpfs directory for one server instance; ``code/`` and ``envs/`` live under it."""

    def __init__(self, data_dir: Path, size_mb: int = 8192, base: Path = Path("/run/lamina")) -> None:
        instance = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
        self.root = base / instance
        self._mounted = False
        self.reclaim()
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._mounted = _mount_tmpfs(self.root, size_mb)
        except OSError:
            self._mounted = False
        if not self._mounted:
            self.root = Path("/dev/shm") / f"lamina-{instance}"
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(mode=0o700)
        if not is_tmpfs(self.root):
            raise SandboxError("scratch", f"{self.root} is not memory-backed (tmpfs)")
        os.chmod(self.root, 0o711)  # sandboxes traverse (never list) into their own binds
        for sub in ("code", "envs", "runtime"):
            (self.root / sub).mkdir(mode=0o711, exist_ok=True)

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def envs(self) -> Path:
        return self.root / "envs"

    @property
    def runtime(self) -> Path:
        return self.root / "runtime"

    def reclaim(self) -> None:
        """Removes what a previous run of this instance left (mount and fallback dir)."""
        if self.root.exists():
            _umount(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
        fallback = Path("/dev/shm") / f"lamina-{self.root.name}"
        shutil.rmtree(fallback, ignore_errors=True)

    def close(self) -> None:
        if self._mounted:
            _umount(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
