"""The sandbox seam: what the worker asks of any isolation driver.

A driver turns a :class:`SandboxSpec` into a running, isolated process tree (:class:`Sandbox`).
Lifecycle: ``start`` → ``wait``/``terminate``/``kill`` → ``destroy``. After ``destroy`` the
sandbox holds no kernel object (cgroup, namespace, mount) and no host directory; calling
``destroy`` again does nothing. A sandbox whose setup failed is destroyed by ``start`` itself
before the :class:`lamina.errors.SandboxError` reaches the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class SandboxSpec:
    """Everything one env needs; the driver adds nothing the spec does not name."""

    env_id: str  # unique, [a-z0-9-]; names the cgroup
    argv: Sequence[str]
    env: Mapping[str, str]  # the complete environment; nothing is inherited
    code_dir: Path  # bound read-only at /var/task; must be reachable by ``uid``
    opt_dir: Path | None  # bound read-only at /opt (layers); an empty /opt if None
    runtime_binds: Sequence[tuple[Path, str]]  # host path -> sandbox path, read-only
    memory_mb: int
    tmp_mb: int
    stdout_fd: int
    stderr_fd: int
    pids_max: int = 1024
    nofile: int = 1024
    uid: int = 993
    gid: int = 990
    net_ns_fd: int | None = None  # None: a fresh namespace with loopback only
    pass_fds: Sequence[int] = ()  # kept open inside under the same numbers


@dataclass(frozen=True)
class SandboxStats:
    max_memory_bytes: int
    oom_killed: bool
    cpu_time_ns: int


class Sandbox(Protocol):
    @property
    def pid(self) -> int:
        """Host pid of the tree's root (the PID namespace's init)."""

    async def wait(self) -> int:
        """Exit status of the command; 128 + N if a signal N killed it (bwrap's convention)."""

    def kill(self) -> None:
        """SIGKILL the whole tree, including setsid and double-forked descendants."""

    async def terminate(self, grace: float) -> None:
        """SIGTERM the command, then :meth:`kill` if it has not exited after ``grace`` s."""

    def resize(self, memory_mb: int) -> None:
        """Applies another memory size (a standby assigned to a function): the memory limit,
        the init burst now, and the steady CPU quota that :meth:`end_init` will apply."""

    def freeze(self) -> None:
        """Between invokes: nothing in the sandbox runs (AWS freezes idle environments), so no
        leftover process can act, or race the runtime for the next event, while it waits."""

    def thaw(self) -> None:
        """Resumes a frozen sandbox (before its next invoke, or before a graceful shutdown)."""

    def end_init(self) -> None:
        """The runtime is ready: from now on the CPU quota is proportional to memory (init ran
        with AWS's burst CPU, at least one full core)."""

    def stats(self) -> SandboxStats:
        """Peak memory, whether the memory limit OOM-killed something, CPU time used."""

    def destroy(self) -> None:
        """Kill anything left, remove cgroups and temp state; idempotent."""


class SandboxDriver(Protocol):
    async def start(self, spec: SandboxSpec) -> Sandbox:
        """Set up the sandbox and exec ``spec.argv`` in it; returns once it runs."""

    def reclaim(self) -> int:
        """At server start: kill and remove what a previous run left; returns the count."""
