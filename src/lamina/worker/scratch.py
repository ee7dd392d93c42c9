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
from pathlib import Path

from lamina.errors import SandboxError

log = logging.getLogger(__name__)

TMPFS_MAGIC = 0x01021994
MNT_DETACH = 2
MS_NOSUID = 2
MS_NODEV = 4

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]


def is_tmpfs(path: Path) -> bool:
    buf = _StatFs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return False
    return bool((buf.f_type & 0xFFFFFFFF) == TMPFS_MAGIC)


def _mount_tmpfs(target: Path, size_mb: int) -> bool:
    options = f"size={size_mb}m,mode=0700".encode()
    rc = _libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", MS_NOSUID | MS_NODEV, options)
    if rc != 0:
        log.info("cannot mount a tmpfs at %s (errno %d); using /dev/shm", target, ctypes.get_errno())
        return False
    return True


def _umount(target: Path) -> None:
    if _libc.umount2(os.fsencode(target), MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        log.warning("umount %s failed: errno %d", target, ctypes.get_errno())


def _mounts_below(path: Path) -> list[Path]:
    """Mount points strictly below ``path``, deepest first (from /proc/self/mountinfo)."""
    prefix = str(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path) -> None:
    """Unmounts everything below ``path``, then deletes it without ever crossing into another
    filesystem: a bind mount of host data under scratch must never be deleted through."""
    if not path.exists():
        return
    for point in _mounts_below(path):
        _umount(point)
    root_dev = path.lstat().st_dev

    def remove(p: Path) -> None:
        st = p.lstat()
        if st.st_dev != root_dev:
            log.error("not deleting %s: another filesystem is mounted there", p)
            return
        if p.is_dir() and not p.is_symlink():
            for child in p.iterdir():
                remove(child)
            p.rmdir()
        else:
            p.unlink()

    try:
        remove(path)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


class Scratch:
    """A tmpfs directory for one server instance; ``code/`` and ``envs/`` live under it."""

    def __init__(self, data_dir: Path, size_mb: int = 8192, base: Path = Path("/run/lamina")) -> None:
        instance = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
        self.instance = instance  # names this server's kernel objects, wherever scratch lives
        self.root = base / instance
        self._mounted = False
        self.reclaim()
        try:
            base.mkdir(parents=True, exist_ok=True)
            os.chmod(base, 0o711)  # traversable, not listable
            self.root.mkdir(exist_ok=True, mode=0o700)
            self._mounted = _mount_tmpfs(self.root, size_mb)
        except OSError:
            self._mounted = False
        if not self._mounted:
            self.root = Path("/dev/shm") / f"lamina-{instance}"
            remove_tree(self.root)
            self.root.mkdir(mode=0o700)
        if not is_tmpfs(self.root):
            raise SandboxError("scratch", f"{self.root} is not memory-backed (tmpfs)")
        os.chmod(self.root, 0o711)  # sandboxes traverse (never list) into their own binds
        for sub in ("code", "envs", "runtime"):
            (self.root / sub).mkdir(exist_ok=True)
            os.chmod(self.root / sub, 0o711)  # explicit: the server runs with umask 077

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
        fallback = Path("/dev/shm") / f"lamina-{self.root.name}"
        for path in (self.root, fallback):
            if path.exists():
                remove_tree(path) if path == fallback else self._unmount_and_remove(path)

    @staticmethod
    def _unmount_and_remove(path: Path) -> None:
        for point in _mounts_below(path):
            _umount(point)
        _umount(path)  # the instance's own tmpfs, if it is still mounted
        remove_tree(path)

    def close(self) -> None:
        self._unmount_and_remove(self.root)
