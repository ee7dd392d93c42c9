"""One execution environment: a sandbox running one function version, and its Runtime API.

States (an explicit machine; every other transition is a bug):

    STANDBY ──assign──▶ STARTING ──ready──▶ IDLE ──invoke──▶ BUSY ──result──▶ IDLE
       │                    │                 │                │
       └────────────────────┴──init failed────┴──destroy───────┴──timeout / crash / OOM /
                                                                  misbehaved──▶ DEAD

Every environment is spawned as a *standby*: a sandbox whose runtime has started (for Python:
the interpreter and Lamina's bootstrap are loaded) but which belongs to no function yet, so
it has never run user code. ``assign`` binds it to one function version for good: the
version's code is hard-linked into the env's /var/task (same tmpfs, no copy), the cgroup
takes the function's memory size, and the runtime receives the function's environment over
the Runtime API, then imports the handler. The worker keeps a few standbys ready, so a cold
start usually skips sandbox and interpreter start altogether.

An environment that failed in any way is never reused: ``healthy`` turns False and the pool
destroys it. The Runtime API listener is created inside the environment's own network
namespace (127.0.0.1:9001 there) and served from this process, so the sandbox needs no extra
process and can reach nothing else. With a relay target, a second listener there
(127.0.0.1:9002, see ``relay.py``) carries connections to the Lamina API, and only there.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.runtime import InitError, Invocation, InvocationResult, RuntimeChannel, serve
from lamina.runtime.models import ChannelClosed
from lamina.sandbox import netns
from lamina.sandbox.driver import Sandbox, SandboxDriver, SandboxSpec
from lamina.worker.code import link_tree
from lamina.worker.logcapture import LogCapture
from lamina.worker.relay import RELAY_PORT, Relay, RelayTarget
from lamina.worker.scratch import remove_tree

log = logging.getLogger(__name__)

RUNTIME_API_PORT = 9001
RUNTIME_API = f"127.0.0.1:{RUNTIME_API_PORT}"
RESPONSE_LIMIT = 6_291_556  # AWS's synchronous response payload limit (as its error message says)
STANDBY_MEMORY_MB = 128


class EnvState(enum.Enum):
    STANDBY = "standby"
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


@dataclass(frozen=True)
class StandbyConfig:
    """How to start a runtime before its function is known."""

    runtime: str
    argv: tuple[str, ...]
    env: Mapping[str, str]  # generic: PATH, LANG, TZ, LD_LIBRARY_PATH, ...
    binds: tuple[tuple[Path, str], ...]
    tmp_mb: int


@dataclass(frozen=True)
class Assignment:
    """The function version an environment is bound to."""

    function: str
    version: str
    env: Mapping[str, str]  # the function's complete environment
    code_tree: Path  # extracted code (on the scratch tmpfs), linked into /var/task
    memory_mb: int
    log_stream: str
    layer_trees: tuple[Path, ...] = ()  # extracted layers, merged in order into /opt


@dataclass(frozen=True)
class Failure:
    """A platform-side end of an invoke or init, in AWS's terms."""

    error_type: str  # Sandbox.Timedout, Runtime.ExitError, Runtime.OutOfMemory, ...
    message: str
    body: bytes | None = None  # the runtime's own error document, when it sent one


class Environment:
    def __init__(
        self, standby: StandbyConfig, driver: SandboxDriver, workdir: Path, api_target: RelayTarget | None = None
    ) -> None:
        self.id = uuid.uuid4().hex
        self.standby = standby
        self.driver = driver
        self.workdir = workdir / self.id  # task/ and opt/ live here, bound into the sandbox
        self.created = time.monotonic()
        self.state = EnvState.STANDBY
        self.assignment: Assignment | None = None
        self.init_duration_ms = 0.0
        self.spans: dict[str, float] = {}  # named timings of the cold start, in seconds
        self.logs: LogCapture | None = None
        self._on_destroy: Callable[[], None] | None = None
        self._on_revoke: Callable[[], None] | None = None
        self._failed = False
        self._channel = RuntimeChannel()
        self._server: asyncio.Server | None = None
        self._sandbox: Sandbox | None = None
        self._exit: asyncio.Task[int] | None = None
        self._ns_fd: int | None = None
        self.relay = Relay(api_target) if api_target is not None else None

    @property
    def healthy(self) -> bool:
        exited = self._exit is not None and self._exit.done()
        return not self._failed and not exited and self.state in (EnvState.IDLE, EnvState.BUSY)

    @property
    def alive(self) -> bool:
        """Usable as a standby: spawned and its process still running."""
        return (
            self.state is EnvState.STANDBY and self._exit is not None and not self._exit.done()
        )

    # -- spawn ----------------------------------------------------------------------------------

    async def spawn(self) -> None:
        """Starts the sandbox and its runtime, not yet bound to any function."""
        started = time.perf_counter()
        # task/lib and opt/lib exist from the start: the dynamic loader remembers at process
        # start which LD_LIBRARY_PATH entries are missing and would never look there again.
        for sub in ("task", "opt", "task/lib", "opt/lib"):
            (self.workdir / sub).mkdir(parents=True)
            os.chmod(self.workdir / sub, 0o755)
        os.chmod(self.workdir, 0o711)
        ports = (RUNTIME_API_PORT, RELAY_PORT) if self.relay is not None else (RUNTIME_API_PORT,)
        self._ns_fd, socks = await asyncio.to_thread(netns.create_listeners, ports)
        self._server = await serve(socks[0], self._channel, max_body=RESPONSE_LIMIT)
        if self.relay is not None:
            try:
                await self.relay.start(socks[1])
            except BaseException:
                socks[1].close()
                raise
        read_fd, write_fd = os.pipe()
        try:
            self.logs = LogCapture(read_fd)
            spec = SandboxSpec(
                env_id=f"env-{self.id}",
                argv=(*self.standby.argv, "--lamina-standby"),
                env={**self.standby.env, "AWS_LAMBDA_RUNTIME_API": RUNTIME_API},
                code_dir=self.workdir / "task",
                opt_dir=self.workdir / "opt",
                runtime_binds=self.standby.binds,
                memory_mb=STANDBY_MEMORY_MB,
                tmp_mb=self.standby.tmp_mb,
                stdout_fd=write_fd,
                stderr_fd=write_fd,
                net_ns_fd=self._ns_fd,
            )
            self._sandbox = await self.driver.start(spec)
        finally:
            os.close(write_fd)
        self._exit = asyncio.get_running_loop().create_task(self._sandbox.wait())
        self._channel.on_idle = self._freeze
        self.spans["spawn"] = time.perf_counter() - started

    def _freeze(self) -> None:
        """The runtime asked for its next event: nothing of the function runs until it gets
        one (AWS freezes the environment at this point too)."""
        # Never while BUSY: an invoke may already be on its way to this very poll (it thawed
        # the env and its delivery is scheduled); invoke() freezes on its way back instead.
        if self._sandbox is not None and self.state in (EnvState.STARTING, EnvState.IDLE):
            self._sandbox.freeze()

    async def warm(self, timeout: float) -> bool:
        """Waits until the standby's runtime is loaded and parked; False if it died or hung."""
        assert self._exit is not None
        parked = asyncio.ensure_future(self._channel.wait_standby())
        done, _ = await asyncio.wait({parked, self._exit}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if parked not in done:
            parked.cancel()
            return False
        return parked.exception() is None

    # -- assign ---------------------------------------------------------------------------------

    async def assign(
        self, assignment: Assignment, init_timeout: float, release: Callable[[], None] | None = None,
        revoke: Callable[[], None] | None = None,
    ) -> Failure | None:
        """Binds the env to one function version and runs its init; a Failure if init failed.
        ``release`` runs once when the env is destroyed (it gives back the code tree);
        ``revoke`` once when it leaves service (its credentials stop working)."""
        assert self.state is EnvState.STANDBY and self._sandbox is not None and self._exit is not None
        self.state = EnvState.STARTING
        self.assignment = assignment
        self._on_destroy = release
        self._on_revoke = revoke
        started = time.perf_counter()
        await asyncio.to_thread(self._link, assignment)
        self._sandbox.resize(assignment.memory_mb)
        env = {**assignment.env, "AWS_LAMBDA_RUNTIME_API": RUNTIME_API}
        self._channel.assign(json.dumps({"env": env}).encode())
        ready = asyncio.ensure_future(self._channel.wait_ready())
        done, _ = await asyncio.wait(
            {ready, self._exit}, timeout=init_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        self.init_duration_ms = (time.perf_counter() - started) * 1000
        self.spans["init"] = self.init_duration_ms / 1000
        log.debug("env %s spans (ms): %s", self.id, {k: round(v * 1000, 2) for k, v in self.spans.items()})
        if ready in done and ready.exception() is None:
            self._sandbox.end_init()
            self.state = EnvState.IDLE
            return None
        if not ready.done():
            ready.cancel()
        failure = self._init_failure(ready, done, init_timeout)
        self._failed = True
        self.state = EnvState.DEAD
        return failure

    def _link(self, assignment: Assignment) -> None:
        link_tree(assignment.code_tree, self.workdir / "task")
        for tree in assignment.layer_trees:  # a later layer's file wins, as on AWS
            link_tree(tree, self.workdir / "opt")

    def _init_failure(self, ready: asyncio.Future[None], done: set[Any], timeout: float) -> Failure:
        if ready in done:
            exc = ready.exception()
            if isinstance(exc, InitError):
                return Failure(exc.error_type or "Runtime.Unknown", "init error", exc.body)
        if self._exit is not None and self._exit in done:
            return self._exit_failure(self._exit.result())
        return Failure("Runtime.InitTimeout", f"Init timed out after {timeout:.2f} seconds")

    def _exit_failure(self, status: int) -> Failure:
        stats = self._sandbox.stats() if self._sandbox else None
        if stats is not None and stats.oom_killed:
            return Failure("Runtime.OutOfMemory", "Runtime exited with error: signal: killed")
        if status < 0 or status > 128:  # killed by a signal (bwrap reports 128 + N)
            number = -status if status < 0 else status - 128
            return Failure("Runtime.ExitError", f"Runtime exited with error: signal: {_signame(number)}")
        return Failure("Runtime.ExitError", f"Runtime exited with error: exit status {status}")

    # -- invoke ---------------------------------------------------------------------------------

    async def invoke(self, inv: Invocation, timeout: float) -> InvocationResult | Failure:
        """Runs one invocation; on a Failure the environment is dead and must be destroyed."""
        assert self.state is EnvState.IDLE, f"invoke on a {self.state.value} environment"
        assert self._exit is not None
        self.state = EnvState.BUSY
        assert self._sandbox is not None
        self._sandbox.thaw()
        call = asyncio.ensure_future(self._channel.invoke(inv))
        try:
            done, _ = await asyncio.wait(
                {call, self._exit}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:  # cancelled mid-invoke: the env's state is unknown, never reuse it
            call.cancel()
            self._failed = True
            self.state = EnvState.DEAD
            raise
        if call in done and call.exception() is None:
            result = call.result()
            if result.env_misbehaved:
                self._failed = True
            self.state = EnvState.IDLE
            if self._channel.parked:  # the runtime already asked for its next event
                self._freeze()
            return result
        call.cancel()
        self._failed = True
        self.state = EnvState.DEAD
        if self._exit in done:
            return self._exit_failure(self._exit.result())
        if call in done and isinstance(call.exception(), ChannelClosed):
            return Failure("Runtime.ExitError", "Runtime exited without providing a reason")
        if self._sandbox is not None:
            self._sandbox.kill()  # the whole tree, now: nothing may run on past its deadline
        return Failure("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds")

    def stats_max_memory_mb(self) -> int:
        if self._sandbox is None:
            return 0
        return max(1, self._sandbox.stats().max_memory_bytes // (1024 * 1024))

    # -- destroy --------------------------------------------------------------------------------

    async def destroy(self, grace: float = 0.5) -> None:
        """Ends the environment: SIGTERM then SIGKILL after ``grace`` if it was healthy and idle,
        SIGKILL at once otherwise; then frees every resource. Idempotent. ``release`` (given to
        assign) runs even if a teardown step fails; the credentials are revoked first."""
        self.revoke()
        try:
            await self._teardown(grace)
        finally:
            if self._on_destroy is not None:
                on_destroy, self._on_destroy = self._on_destroy, None
                on_destroy()

    def revoke(self) -> None:
        """The env leaves service: its credentials stop working now, not once it is torn down
        (a deleted function's keys must be dead when DeleteFunction answers). Idempotent."""
        if self._on_revoke is not None:
            on_revoke, self._on_revoke = self._on_revoke, None
            on_revoke()

    async def _teardown(self, grace: float) -> None:
        graceful = self.healthy and self.state is EnvState.IDLE
        self.state = EnvState.DEAD
        self._failed = True
        self._channel.close()
        if self._sandbox is not None:
            if graceful:
                self._sandbox.thaw()  # a frozen process cannot act on SIGTERM
                await self._sandbox.terminate(grace)
            self._sandbox.kill()
            if self._exit is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._exit), timeout=5)
                except TimeoutError:
                    log.warning("environment %s did not exit after SIGKILL", self.id)
            self._sandbox.destroy()
            self._sandbox = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.relay is not None:
            await self.relay.close()
        if self.logs is not None:
            self.logs.close()
            self.logs = None
        if self._ns_fd is not None:
            os.close(self._ns_fd)
            self._ns_fd = None
        await asyncio.to_thread(remove_tree, self.workdir)


def _signame(number: int) -> str:
    """The signal as AWS's (Go) runtime names it: "killed", "segmentation fault", ..."""
    try:
        text = signal.strsignal(number)
    except ValueError:
        text = None
    return text[:1].lower() + text[1:] if text else str(number)
