"""One execution environment: a sandbox running one function version, and its Runtime API.

States (an explicit machine; every other transition is a bug):

    STARTING ──ready──▶ IDLE ──invoke──▶ BUSY ──result──▶ IDLE
        │                 │                │
        └──init failed────┴──destroy───────┴──timeout / crash / OOM / misbehaved──▶ DEAD

An environment that failed in any way is never reused: ``healthy`` turns False and the pool
destroys it. The Runtime API listener is created inside the environment's own network
namespace (127.0.0.1:9001 there) and served from this process, so the sandbox needs no
extra process and can reach nothing else.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
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
from lamina.worker.logcapture import LogCapture

log = logging.getLogger(__name__)

RUNTIME_API_PORT = 9001
RESPONSE_LIMIT = 6_291_456  # AWS's synchronous response payload limit


class EnvState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


@dataclass(frozen=True)
class EnvConfig:
    """What the worker decided for this environment (the sandbox spec minus per-env plumbing)."""

    function: str
    version: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    code_dir: Path
    opt_dir: Path | None
    binds: tuple[tuple[Path, str], ...]
    memory_mb: int
    tmp_mb: int
    log_stream: str


@dataclass(frozen=True)
class Failure:
    """A platform-side end of an invoke or init, in AWS's terms."""

    error_type: str  # Sandbox.Timedout, Runtime.ExitError, Runtime.OutOfMemory, ...
    message: str
    body: bytes | None = None  # the runtime's own error document, when it sent one


class Environment:
    def __init__(
        self, config: EnvConfig, driver: SandboxDriver, on_destroy: Callable[[], None] | None = None
    ) -> None:
        self.id = uuid.uuid4().hex
        self._on_destroy = on_destroy
        self.config = config
        self.driver = driver
        self.created = time.monotonic()
        self.state = EnvState.STARTING
        self.init_duration_ms = 0.0
        self._failed = False
        self._channel = RuntimeChannel()
        self._server: asyncio.Server | None = None
        self._sandbox: Sandbox | None = None
        self._exit: asyncio.Task[int] | None = None
        self._ns_fd: int | None = None
        self.logs: LogCapture | None = None

    @property
    def healthy(self) -> bool:
        return not self._failed and self.state in (EnvState.IDLE, EnvState.BUSY)

    async def start(self, init_timeout: float) -> Failure | None:
        """Creates the sandbox and waits for the runtime's first /next; a Failure if init failed."""
        started = time.perf_counter()
        self._ns_fd, sock = await asyncio.to_thread(netns.create, RUNTIME_API_PORT)
        self._server = await serve(sock, self._channel, max_body=RESPONSE_LIMIT)
        read_fd, write_fd = os.pipe()
        try:
            self.logs = LogCapture(read_fd)
            env = dict(self.config.env)
            env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{RUNTIME_API_PORT}"
            spec = SandboxSpec(
                env_id=f"env-{self.id}",
                argv=self.config.argv,
                env=env,
                code_dir=self.config.code_dir,
                opt_dir=self.config.opt_dir,
                runtime_binds=self.config.binds,
                memory_mb=self.config.memory_mb,
                tmp_mb=self.config.tmp_mb,
                stdout_fd=write_fd,
                stderr_fd=write_fd,
                net_ns_fd=self._ns_fd,
            )
            self._sandbox = await self.driver.start(spec)
        finally:
            os.close(write_fd)
        self._exit = asyncio.get_running_loop().create_task(self._sandbox.wait())
        ready = asyncio.ensure_future(self._channel.wait_ready())
        done, _ = await asyncio.wait({ready, self._exit}, timeout=init_timeout, return_when=asyncio.FIRST_COMPLETED)
        self.init_duration_ms = (time.perf_counter() - started) * 1000
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

    def _init_failure(self, ready: asyncio.Future[None], done: set[Any], timeout: float) -> Failure:
        if ready in done:
            exc = ready.exception()
            if isinstance(exc, InitError):
                return Failure(exc.error_type or "Runtime.Unknown", "init error", exc.body)
        if self._exit is not None and self._exit in done:
            return self._exit_failure(self._exit.result())
        return Failure("Runtime.InitTimeout", f"Init timed out after {timeout:.2f} seconds")  # noqa: E501

    def _exit_failure(self, status: int) -> Failure:
        stats = self._sandbox.stats() if self._sandbox else None
        if stats is not None and stats.oom_killed:
            return Failure("Runtime.OutOfMemory", "Runtime exited with error: signal: killed")
        if status < 0 or status > 128:  # killed by a signal (bwrap reports 128 + N)
            number = -status if status < 0 else status - 128
            return Failure("Runtime.ExitError", f"Runtime exited with error: signal: {_signame(number)}")
        return Failure("Runtime.ExitError", f"Runtime exited with error: exit status {status}")

    async def invoke(self, inv: Invocation, timeout: float) -> InvocationResult | Failure:
        """Runs one invocation; on a Failure the environment is dead and must be destroyed."""
        assert self.state is EnvState.IDLE, f"invoke on a {self.state.value} environment"
        assert self._exit is not None
        self.state = EnvState.BUSY
        call = asyncio.ensure_future(self._channel.invoke(inv))
        done, _ = await asyncio.wait({call, self._exit}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if call in done and call.exception() is None:
            result = call.result()
            if result.env_misbehaved:
                self._failed = True
            self.state = EnvState.IDLE
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

    async def destroy(self, grace: float = 0.5) -> None:
        """Ends the environment: SIGTERM then SIGKILL after ``grace`` if it was healthy and idle,
        SIGKILL at once otherwise; then frees every resource. Idempotent."""
        graceful = self.healthy and self.state is EnvState.IDLE
        self.state = EnvState.DEAD
        self._failed = True
        self._channel.close()
        if self._sandbox is not None:
            if graceful:
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
        if self.logs is not None:
            self.logs.close()
            self.logs = None
        if self._ns_fd is not None:
            os.close(self._ns_fd)
            self._ns_fd = None
        if self._on_destroy is not None:
            on_destroy, self._on_destroy = self._on_destroy, None
            on_destroy()


def _signame(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name.removeprefix("SIG").lower()
    except ValueError:
        return str(number)
