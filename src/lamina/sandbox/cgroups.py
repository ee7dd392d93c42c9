"""cgroups v1 and v2: one group per env with memory, pids and CPU limits.

Why both: these hosts mount v1 (memory, pids, cpu, cpuacct, freezer as separate hierarchies)
while most current distributions run v2 only. The version is detected once, from the
filesystem, by :func:`detect`. The cgroup root is injected so the v2 logic can be tested
against a fake directory tree.

Every OSError is translated here into :class:`lamina.errors.SandboxError` naming the step,
the path and the errno.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lamina.errors import SandboxError

CPU_PERIOD_US = 100_000
# AWS Lambda: one full vCPU at 1769 MB, CPU proportional to memory below and above.
MB_PER_CORE = 1769
_V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
_V2_CONTROLLERS = ("memory", "pids", "cpu")


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    pids_max: int
    cpu_quota_us: int
    cpu_period_us: int = CPU_PERIOD_US


def limits_for(memory_mb: int, pids_max: int) -> Limits:
    """Memory in bytes and a CFS quota proportional to memory (1 core at 1769 MB)."""
    return Limits(memory_mb * 1024 * 1024, pids_max, cpu_quota_for(memory_mb))


def cpu_quota_for(memory_mb: int) -> int:
    return max(1000, CPU_PERIOD_US * memory_mb // MB_PER_CORE)


def init_quota_for(memory_mb: int) -> int:
    """The init phase's burst: at least one full core, as AWS gives init "burst CPU"."""
    return max(CPU_PERIOD_US, cpu_quota_for(memory_mb))


@dataclass(frozen=True)
class Usage:
    max_memory_bytes: int
    oom_killed: bool
    cpu_time_ns: int


@contextmanager
def _step(step: str, path: Path) -> Iterator[None]:
    """The one seam where OSError becomes SandboxError."""
    try:
        yield
    except OSError as exc:
        raise SandboxError(step, f"{path}: {exc.strerror}", exc.errno) from exc


def _write(path: Path, value: str) -> None:
    with _step("cgroup write", path), open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    with _step("cgroup read", path):
        return path.read_text()


def _keyed(text: str, key: str) -> int:
    """A value from a ``key value`` file such as memory.events or memory.oom_control."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _rmdir(path: Path) -> None:
    """rmdir, retrying while the kernel still counts exiting tasks (EBUSY)."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise SandboxError("cgroup remove", str(path), exc.errno) from exc
            time.sleep(0.002)


def _pids(procs_file: Path) -> list[int]:
    try:
        return [int(p) for p in procs_file.read_text().split()]
    except FileNotFoundError:
        return []


def _kill_listed(procs_file: Path) -> None:
    for pid in _pids(procs_file):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_empty(procs_file: Path, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while _pids(procs_file) and time.monotonic() < deadline:
        time.sleep(0.001)


class Cgroup:
    """One env's group; subclasses know the file names of their cgroup version."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs
        self._fds: dict[tuple[str, str, int], int] = {}

    def _fd(self, controller: str, name: str, flags: int) -> int:
        """An open fd of one of the group's files; kept open (the hot path reads and writes
        these on every invoke), keyed by plain strings so no path is built per call."""
        key = (controller, name, flags)
        fd = self._fds.get(key)
        if fd is None:
            path = self.dirs[controller] / name
            with _step("cgroup open", path):
                fd = self._fds[key] = os.open(path, flags | os.O_CLOEXEC)
        return fd

    def _pread(self, controller: str, name: str) -> str:
        fd = self._fd(controller, name, os.O_RDONLY)
        try:
            return os.pread(fd, 4096, 0).decode()
        except OSError as exc:
            raise SandboxError("cgroup read", f"{controller}/{name}: {exc.strerror}", exc.errno) from exc

    def _pwrite(self, controller: str, name: str, value: bytes) -> None:
        fd = self._fd(controller, name, os.O_WRONLY)
        try:
            os.pwrite(fd, value, 0)
        except OSError as exc:
            raise SandboxError("cgroup write", f"{controller}/{name}: {exc.strerror}", exc.errno) from exc

    def _close_files(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def create(self, limits: Limits) -> None:
        raise NotImplementedError

    def add(self, pid: int) -> None:
        """Move ``pid`` (the sandbox's init, blocked before exec) into every hierarchy."""
        for path in dict.fromkeys(self.dirs.values()):
            _write(path / "cgroup.procs", str(pid))

    def procs(self) -> list[int]:
        return _pids(next(iter(self.dirs.values())) / "cgroup.procs")

    def kill_all(self) -> None:
        raise NotImplementedError

    def set_cpu_quota(self, quota_us: int, period_us: int = CPU_PERIOD_US) -> None:
        raise NotImplementedError

    def set_memory_limit(self, limit_bytes: int) -> None:
        raise NotImplementedError

    def freeze(self, frozen: bool) -> None:
        """Stops (or resumes) every process of the group; the kernel completes it at once for
        sleeping tasks, so callers do not wait for the state to settle."""
        raise NotImplementedError

    def usage(self) -> Usage:
        raise NotImplementedError

    def remove(self) -> None:
        """Kill whatever is left and remove the group; idempotent."""
        self._close_files()
        if any(p.exists() for p in self.dirs.values()):
            self.kill_all()
        for path in dict.fromkeys(self.dirs.values()):
            _rmdir(path)


class CgroupV1(Cgroup):
    def create(self, limits: Limits) -> None:
        for path in dict.fromkeys(self.dirs.values()):
            with _step("cgroup create", path):
                path.mkdir(parents=True)
        mem = self.dirs["memory"]
        _write(mem / "memory.limit_in_bytes", str(limits.memory_bytes))
        if (mem / "memory.memsw.limit_in_bytes").exists():
            _write(mem / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
        _write(self.dirs["pids"] / "pids.max", str(limits.pids_max))
        _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(limits.cpu_period_us))
        _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(limits.cpu_quota_us))

    def set_cpu_quota(self, quota_us: int, period_us: int = CPU_PERIOD_US) -> None:
        _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(quota_us))

    def freeze(self, frozen: bool) -> None:
        self._pwrite("freezer", "freezer.state", b"FROZEN" if frozen else b"THAWED")

    def set_memory_limit(self, limit_bytes: int) -> None:
        mem = self.dirs["memory"]
        memsw = mem / "memory.memsw.limit_in_bytes"
        current = int(_read(mem / "memory.limit_in_bytes"))
        # memory+swap may never be below memory: raise it first, lower it last.
        if memsw.exists() and limit_bytes > current:
            _write(memsw, str(limit_bytes))
        _write(mem / "memory.limit_in_bytes", str(limit_bytes))
        if memsw.exists() and limit_bytes <= current:
            _write(memsw, str(limit_bytes))

    def kill_all(self) -> None:
        """Freeze so nothing can fork while we list, SIGKILL everything, thaw so it dies."""
        freezer = self.dirs["freezer"]
        if not freezer.exists():
            return
        state = freezer / "freezer.state"
        _write(state, "FROZEN")
        deadline = time.monotonic() + 1.0
        while _read(state).strip() != "FROZEN" and time.monotonic() < deadline:
            time.sleep(0.0005)
        _kill_listed(freezer / "cgroup.procs")
        _write(state, "THAWED")
        _wait_empty(freezer / "cgroup.procs")

    def usage(self) -> Usage:
        # Read after every invoke (the REPORT line): files stay open, one pread each.
        return Usage(
            max_memory_bytes=int(self._pread("memory", "memory.max_usage_in_bytes")),
            oom_killed=_keyed(self._pread("memory", "memory.oom_control"), "oom_kill") > 0,
            cpu_time_ns=int(self._pread("cpuacct", "cpuacct.usage")),
        )


class CgroupV2(Cgroup):
    def create(self, limits: Limits) -> None:
        path = self.dirs["unified"]
        with _step("cgroup create", path):
            path.mkdir()
        _write(path / "memory.max", str(limits.memory_bytes))
        if (path / "memory.swap.max").exists():
            _write(path / "memory.swap.max", "0")
        # One OOM kills the whole env, as a v1 env is discarded after any OOM anyway.
        _write(path / "memory.oom.group", "1")
        _write(path / "pids.max", str(limits.pids_max))
        _write(path / "cpu.max", f"{limits.cpu_quota_us} {limits.cpu_period_us}")

    def set_cpu_quota(self, quota_us: int, period_us: int = CPU_PERIOD_US) -> None:
        _write(self.dirs["unified"] / "cpu.max", f"{quota_us} {period_us}")

    def freeze(self, frozen: bool) -> None:
        self._pwrite("unified", "cgroup.freeze", b"1" if frozen else b"0")

    def set_memory_limit(self, limit_bytes: int) -> None:
        _write(self.dirs["unified"] / "memory.max", str(limit_bytes))

    def kill_all(self) -> None:
        path = self.dirs["unified"]
        if not path.exists():
            return
        if (path / "cgroup.kill").exists():
            _write(path / "cgroup.kill", "1")
        else:
            _write(path / "cgroup.freeze", "1")
            _kill_listed(path / "cgroup.procs")
            _write(path / "cgroup.freeze", "0")
        _wait_empty(path / "cgroup.procs")

    def usage(self) -> Usage:
        path = self.dirs["unified"]
        peak = path / "memory.peak"
        stat = _read(path / "cpu.stat")
        return Usage(
            max_memory_bytes=int(_read(peak if peak.exists() else path / "memory.current")),
            oom_killed=_keyed(_read(path / "memory.events"), "oom_kill") > 0,
            cpu_time_ns=_keyed(stat, "usage_usec") * 1000,
        )


class Hierarchy:
    """The parent group (``<root>/<controller>/<name>`` on v1, ``<root>/<name>`` on v2)."""

    def __init__(self, root: Path, name: str, version: int) -> None:
        self.root = root
        self.name = name
        self.version = version

    def parents(self) -> dict[str, Path]:
        if self.version == 2:
            return {"unified": self.root / self.name}
        return {c: self.root / c / self.name for c in _V1_CONTROLLERS}

    def group(self, env_id: str) -> Cgroup:
        dirs = {c: p / env_id for c, p in self.parents().items()}
        return CgroupV2(dirs) if self.version == 2 else CgroupV1(dirs)

    def prepare(self) -> None:
        """Create the parent group(s); on v2 delegate the controllers down to env groups."""
        for path in self.parents().values():
            with _step("cgroup prepare", path):
                path.mkdir(parents=True, exist_ok=True)
        if self.version == 2:
            enable = " ".join(f"+{c}" for c in _V2_CONTROLLERS)
            _write(self.root / "cgroup.subtree_control", enable)
            _write(self.root / self.name / "cgroup.subtree_control", enable)

    def remove_parents(self) -> None:
        """At shutdown: remove the (then empty) parent groups; busy ones are left for reclaim."""
        for path in self.parents().values():
            try:
                path.rmdir()
            except OSError:
                pass

    def leftovers(self) -> list[str]:
        names: set[str] = set()
        for path in self.parents().values():
            if path.is_dir():
                names.update(p.name for p in path.iterdir() if p.is_dir())
        return sorted(names)

    def reclaim(self) -> int:
        """Kill the processes of every env group a previous run left and remove the groups."""
        stale = self.leftovers()
        for env_id in stale:
            self.group(env_id).remove()
        return len(stale)


def detect(root: Path = Path("/sys/fs/cgroup"), name: str = "lamina") -> Hierarchy:
    """v2 when the root is a cgroup2 mount with the memory controller, else v1 if mounted."""
    controllers = root / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return Hierarchy(root, name, 2)
    if (root / "memory" / "memory.limit_in_bytes").exists():
        return Hierarchy(root, name, 1)
    raise SandboxError("cgroup detect", f"{root}: neither a usable v2 nor a v1 memory hierarchy")
