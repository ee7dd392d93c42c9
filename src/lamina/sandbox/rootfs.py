"""The sandbox's filesystem: the exact bind list handed to bwrap, in order.

Invariants: the root is a fresh tmpfs remounted read-only at the end; every host path is bound
read-only (bwrap adds nosuid and nodev to every bind); nothing of /root, the data dir, other
functions or the host's /etc beyond the files the runtime needs is mounted; /tmp is a private
tmpfs of exactly ``tmp_mb``; /dev holds null, zero, full, random and urandom only.

Host paths must be reachable by the sandbox uid, because bwrap resolves them after dropping
to it. A runtime living under a private directory (pyenv under /root, mode 0700) is made
reachable by :class:`Exposer`, which bind-mounts just that directory, read-only, under the
driver's state dir; :meth:`Exposer.reclaim` removes what a crashed run left.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from lamina.errors import SandboxError

if TYPE_CHECKING:
    from lamina.sandbox.driver import SandboxSpec

DEVICES = ("null", "zero", "full", "random", "urandom")
# Files of the host's /etc a runtime needs; none of them is secret.
HOST_ETC = ("ld.so.cache", "localtime", "ssl", "ca-certificates")
_MS_RDONLY, _MS_NOSUID, _MS_NODEV = 0x1, 0x2, 0x4
_MS_REMOUNT, _MS_BIND, _MNT_DETACH = 0x20, 0x1000, 0x2
_libc = ctypes.CDLL(None, use_errno=True)


def reachable(path: Path, uid: int, gid: int) -> bool:
    """True when ``uid``/``gid`` can search every ancestor of ``path`` and read ``path``."""
    for part in [*reversed(path.parents), path]:
        st = os.stat(part)
        need = stat.S_IXOTH
        bits = st.st_mode & 0o7
        if st.st_uid == uid:
            bits = (st.st_mode >> 6) & 0o7
        elif st.st_gid == gid:
            bits = (st.st_mode >> 3) & 0o7
        if not bits & need:
            return False
    return True


class Exposer:
    """Read-only host bind mounts that make private runtime dirs reachable to the sandbox uid."""

    def __init__(self, state_dir: Path) -> None:
        self.base = state_dir / "exposed"
        # Runtime dirs are few and fixed: decide once per (path, uid, gid), then only check
        # with one stat that the answer still shows the source (a bind shows its inode).
        self._known: dict[tuple[Path, int, int], Path] = {}

    def expose(self, path: Path, uid: int, gid: int) -> Path:
        key = (path, uid, gid)
        known = self._known.get(key)
        if known is None or not _same_inode(known, path):
            known = self._known[key] = self._expose(path.resolve(), uid, gid)
        return known

    def _expose(self, path: Path, uid: int, gid: int) -> Path:
        if reachable(path, uid, gid):
            return path
        target = self.base / hashlib.sha256(str(path).encode()).hexdigest()[:16]
        if target in _mount_points():
            return target
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:  # a single-file module (six.py): bind a file onto a file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        self.base.chmod(0o755)
        self.base.parent.chmod(0o755)
        self._mount(path, target, None, _MS_BIND)
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
        self._mount(path, target, None, flags)
        return target

    @staticmethod
    def _mount(src: Path, dst: Path, fstype: str | None, flags: int) -> None:
        fs = fstype.encode() if fstype else None
        if _libc.mount(str(src).encode(), str(dst).encode(), fs, flags, None) != 0:
            err = ctypes.get_errno()
            raise SandboxError("expose runtime", f"{src} -> {dst}: {os.strerror(err)}", err)

    def reclaim(self) -> int:
        """Unmount and remove every exposure (a previous run's or this one's)."""
        self._known.clear()
        if not self.base.is_dir():
            return 0
        mounted = _mount_points()
        count = 0
        for target in self.base.iterdir():
            if target in mounted:
                if _libc.umount2(str(target).encode(), _MNT_DETACH) != 0:
                    err = ctypes.get_errno()
                    raise SandboxError("reclaim exposure", str(target), err)
                count += 1
            if target.is_dir():
                target.rmdir()
            else:  # the mount point of a single-file exposure (e.g. six.py)
                target.unlink()
        return count


def _same_inode(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _mount_points() -> set[Path]:
    """Mount points of this mount namespace (os.path.ismount misses same-device binds)."""
    with open("/proc/self/mountinfo") as f:
        return {Path(line.split()[4].replace("\\040", " ")) for line in f}


def write_etc(state_dir: Path, uid: int, gid: int) -> Path:
    """passwd/group/hosts naming the sandbox user; shared by every env with that uid/gid."""
    etc = state_dir / f"etc-{uid}-{gid}"
    if (etc / "hosts").exists():
        return etc
    etc.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)
    etc.chmod(0o755)
    files = {
        "passwd": f"sbx_user1051:x:{uid}:{gid}::/tmp:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
        "group": f"sbx_user1051:x:{gid}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
    }
    for name, text in files.items():
        (etc / name).write_text(text)
        (etc / name).chmod(0o644)
    return etc


def _system_dirs() -> list[str]:
    """/usr plus /bin, /sbin, /lib* as the host has them (symlinks on merged-/usr systems)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    return args


def mount_args(spec: SandboxSpec, etc_dir: Path, runtime: list[tuple[Path, str]]) -> list[str]:
    """bwrap arguments for the whole filesystem, in the order bwrap applies them."""
    for name, path in (("code_dir", spec.code_dir), ("opt_dir", spec.opt_dir)):
        if path is not None and not reachable(path, spec.uid, spec.gid):
            raise SandboxError("rootfs", f"{name} {path} is not reachable by uid {spec.uid}")
    args = _system_dirs()
    args += ["--dir", "/etc"]
    for name in ("passwd", "group", "hosts"):
        args += ["--ro-bind", str(etc_dir / name), f"/etc/{name}"]
    args += [a for n in HOST_ETC for a in ("--ro-bind-try", f"/etc/{n}", f"/etc/{n}")]
    for source, dest in runtime:
        args += ["--ro-bind", str(source), dest]
    args += ["--ro-bind", str(spec.code_dir), "/var/task"]
    args += ["--ro-bind", str(spec.opt_dir), "/opt"] if spec.opt_dir else ["--dir", "/opt"]
    args += ["--proc", "/proc", "--tmpfs", "/dev"]
    args += [a for d in DEVICES for a in ("--dev-bind", f"/dev/{d}", f"/dev/{d}")]
    args += ["--remount-ro", "/dev"]
    args += ["--perms", "1777", "--size", str(spec.tmp_mb * 1024 * 1024), "--tmpfs", "/tmp"]
    args += ["--remount-ro", "/", "--chdir", "/var/task"]
    return args
