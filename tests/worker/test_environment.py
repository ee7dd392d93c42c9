"""The environment state machine on a FakeDriver, with a scripted runtime speaking HTTP.

Each environment gets its real network namespace and Runtime API listener (root); the fake
"runtime" connects into that namespace from a helper thread and then talks HTTP from the
event loop, exactly as a runtime inside the sandbox would.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from lamina.runtime import Invocation, InvocationResult
from lamina.sandbox import netns
from lamina.sandbox.driver import SandboxSpec, SandboxStats
from lamina.sandbox.fake import FakeDriver, FakeSandbox
from lamina.worker.environment import (
    RESPONSE_LIMIT,
    Assignment,
    Environment,
    EnvState,
    Failure,
    StandbyConfig,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

P = "/2018-06-01/runtime"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


def aio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop, with a hard deadline."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 10))

    return run


class Runtime:
    """A minimal runtime client on one keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, ns_fd: int) -> Runtime:
        def inside() -> socket.socket:
            with netns.entered(ns_fd):
                return socket.create_connection(("127.0.0.1", 9001), timeout=5)

        sock = await asyncio.to_thread(inside)
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {P}{path} HTTP/1.1\r\nHost: rt\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(head.encode() + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode().split("\r\n")
        hdrs = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        data = await self.reader.readexactly(int(hdrs.get("content-length", "0")))
        return int(lines[0].split()[1]), hdrs, data

    async def assignment(self) -> dict[str, Any]:
        status, _, body = await self.request("GET", "/lamina/assignment")
        assert status == 200
        doc: dict[str, Any] = json.loads(body)
        return doc

    async def next(self) -> tuple[str, bytes]:
        status, hdrs, body = await self.request("GET", "/invocation/next")
        assert status == 200
        return hdrs["lambda-runtime-aws-request-id"], body

    async def respond(self, request_id: str, body: bytes) -> int:
        return (await self.request("POST", f"/invocation/{request_id}/response", body))[0]


Script = Callable[[Runtime, FakeSandbox], Awaitable[None]]


class ScriptedDriver(FakeDriver):
    """A FakeDriver whose every sandbox runs ``script`` as its runtime."""

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, spec: SandboxSpec) -> FakeSandbox:
        sandbox = await super().start(spec)
        assert spec.net_ns_fd is not None
        self.tasks.append(asyncio.create_task(self._run(spec.net_ns_fd, sandbox)))
        return sandbox

    async def _run(self, ns_fd: int, sandbox: FakeSandbox) -> None:
        rt = await Runtime.connect(ns_fd)
        try:
            await rt.assignment()  # a standby parks here until its function is chosen
            await self.script(rt, sandbox)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the env closed the Runtime API under us, as destroy() does
        finally:
            rt.writer.close()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def forever(rt: Runtime, sandbox: FakeSandbox) -> None:
    await asyncio.Event().wait()


async def echo(rt: Runtime, sandbox: FakeSandbox) -> None:
    while True:
        request_id, payload = await rt.next()
        assert await rt.respond(request_id, b'{"echo": ' + payload + b"}") == 202


class Harness:
    def __init__(self, tmp: Path, script: Script) -> None:
        self.driver = ScriptedDriver(script)
        self.tree = tmp / "code"
        self.tree.mkdir()
        (self.tree / "app.py").write_text("print('hi')\n")
        self.workdir = tmp / "envs"
        self.workdir.mkdir()
        self.released = 0
        self.env = Environment(
            StandbyConfig("python3.11", ("/bin/true",), {"LANG": "C"}, (), 512),
            self.driver,
            self.workdir,
        )

    @property
    def sandbox(self) -> FakeSandbox:
        return self.driver.started[0]

    def release(self) -> None:
        self.released += 1

    async def start(self, timeout: float = 2.0) -> Failure | None:
        await self.env.spawn()
        assignment = Assignment("fn", "$LATEST", {"A": "1"}, self.tree, 256, "stream")
        return await self.env.assign(assignment, timeout, release=self.release)

    async def close(self) -> None:
        await self.env.destroy()
        await self.driver.stop()


def state(h: Harness) -> EnvState:
    return h.env.state  # read through a call: mypy must not narrow it across awaits


def invocation(payload: bytes = b"1") -> Invocation:
    return Invocation("req-1", payload, deadline_ms=0, function_arn=ARN)


async def with_env(tmp: Path, script: Script, body: Callable[[Harness], Awaitable[None]]) -> None:
    h = Harness(tmp, script)
    try:
        await body(h)
    finally:
        await h.close()


@aio
async def test_ready_on_first_next_then_invokes(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        assert state(h) is EnvState.STANDBY and not h.env.healthy
        assert await h.start() is None
        assert state(h) is EnvState.IDLE and h.env.healthy
        assert h.sandbox.init_ended and h.sandbox.memory_mb == 256
        assert (h.workdir / h.env.id / "task" / "app.py").exists()
        for n in (b"1", b"2"):
            result = await h.env.invoke(invocation(n), 2.0)
            assert isinstance(result, InvocationResult) and result.ok
            assert result.body == b'{"echo": ' + n + b"}"
            assert h.env.state is EnvState.IDLE and h.env.healthy

    await with_env(tmp_path, echo, body)


@aio
async def test_init_error_returns_the_runtimes_document(tmp_path: Path) -> None:
    doc = b'{"errorMessage": "No module named app", "errorType": "Runtime.ImportModuleError"}'

    async def init_fails(rt: Runtime, sandbox: FakeSandbox) -> None:
        headers = {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}
        assert (await rt.request("POST", "/init/error", doc, headers))[0] == 202
        await asyncio.Event().wait()

    async def body(h: Harness) -> None:
        failure = await h.start()
        assert failure == Failure("Runtime.ImportModuleError", "init error", doc)
        assert h.env.state is EnvState.DEAD and not h.env.healthy

    await with_env(tmp_path, init_fails, body)


@aio
async def test_exit_before_ready_is_an_exit_error(tmp_path: Path) -> None:
    async def crashes(rt: Runtime, sandbox: FakeSandbox) -> None:
        sandbox.exit(1)

    async def body(h: Harness) -> None:
        failure = await h.start()
        assert failure is not None and failure.error_type == "Runtime.ExitError"
        assert failure.message == "Runtime exited with error: exit status 1"
        assert not h.env.healthy

    await with_env(tmp_path, crashes, body)


@aio
async def test_init_timeout(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        failure = await h.start(timeout=0.1)
        assert failure is not None and failure.error_type == "Runtime.InitTimeout"
        assert "0.10 seconds" in failure.message
        assert h.env.state is EnvState.DEAD

    await with_env(tmp_path, forever, body)


@aio
async def test_invoke_timeout_kills_the_sandbox(tmp_path: Path) -> None:
    async def hangs(rt: Runtime, sandbox: FakeSandbox) -> None:
        await rt.next()
        await asyncio.Event().wait()

    async def body(h: Harness) -> None:
        assert await h.start() is None
        failure = await h.env.invoke(invocation(), 0.1)
        assert failure == Failure("Sandbox.Timedout", "Task timed out after 0.10 seconds")
        assert h.env.state is EnvState.DEAD and not h.env.healthy
        assert h.sandbox.killed

    await with_env(tmp_path, hangs, body)


@aio
@pytest.mark.parametrize(
    ("status", "oom", "error_type", "message"),
    [
        (2, False, "Runtime.ExitError", "Runtime exited with error: exit status 2"),
        (137, False, "Runtime.ExitError", "Runtime exited with error: signal: killed"),
        (139, False, "Runtime.ExitError", "Runtime exited with error: signal: segmentation fault"),
        (137, True, "Runtime.OutOfMemory", "Runtime exited with error: signal: killed"),
    ],
)
async def test_exit_during_invoke(
    tmp_path: Path, status: int, oom: bool, error_type: str, message: str
) -> None:
    async def dies(rt: Runtime, sandbox: FakeSandbox) -> None:
        await rt.next()
        sandbox.stats_value = SandboxStats(256 << 20, oom, 0)
        sandbox.exit(status)

    async def body(h: Harness) -> None:
        assert await h.start() is None
        failure = await h.env.invoke(invocation(), 2.0)
        assert failure == Failure(error_type, message)
        assert not h.env.healthy

    await with_env(tmp_path, dies, body)


@aio
async def test_oversize_response_marks_env_unhealthy(tmp_path: Path) -> None:
    async def floods(rt: Runtime, sandbox: FakeSandbox) -> None:
        request_id, _ = await rt.next()
        await rt.respond(request_id, b"x" * (RESPONSE_LIMIT + 1))
        await asyncio.Event().wait()

    async def body(h: Harness) -> None:
        assert await h.start() is None
        result = await h.env.invoke(invocation(), 5.0)
        assert isinstance(result, InvocationResult) and not result.ok
        assert result.env_misbehaved and not h.env.healthy

    await with_env(tmp_path, floods, body)


@aio
async def test_destroy_idle_is_graceful_idempotent_and_releases_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, echo)
    try:
        assert await h.start() is None
        await h.env.destroy()
        await h.env.destroy()
        assert h.sandbox.terminated and h.sandbox.destroyed
        assert h.released == 1
        assert h.env.state is EnvState.DEAD and not h.env.healthy
        assert not (h.workdir / h.env.id).exists()
        assert (h.tree / "app.py").exists()  # the shared code tree is not the env's to delete
    finally:
        await h.close()


@aio
async def test_destroy_after_failure_kills_without_sigterm(tmp_path: Path) -> None:
    h = Harness(tmp_path, forever)
    try:
        assert await h.start(timeout=0.05) is not None
        await h.env.destroy()
        assert not h.sandbox.terminated and h.sandbox.killed and h.sandbox.destroyed
        assert h.released == 1
    finally:
        await h.close()


@aio
async def test_cancelled_invoke_leaves_env_unhealthy(tmp_path: Path) -> None:
    async def hangs(rt: Runtime, sandbox: FakeSandbox) -> None:
        await rt.next()
        await asyncio.Event().wait()

    async def body(h: Harness) -> None:
        assert await h.start() is None
        task = asyncio.create_task(h.env.invoke(invocation(), 5.0))
        await asyncio.sleep(0.05)
        task.cancel()  # the caller went away mid-invoke
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not h.env.healthy

    await with_env(tmp_path, hangs, body)


@aio
async def test_frozen_while_idle_but_never_when_an_event_is_delivered(tmp_path: Path) -> None:
    """AWS freezes an environment once its runtime asks for the next event; an event must
    never reach a frozen runtime (a real one would hang until the timeout)."""
    seen_frozen: list[bool] = []

    async def recording(rt: Runtime, sandbox: FakeSandbox) -> None:
        while True:
            request_id, payload = await rt.next()
            seen_frozen.append(sandbox.frozen)
            assert await rt.respond(request_id, payload) == 202

    async def body(h: Harness) -> None:
        assert await h.start() is None
        for n in range(50):  # back to back: the next invoke races the runtime's next poll
            result = await h.env.invoke(invocation(str(n).encode()), 2.0)
            assert isinstance(result, InvocationResult) and result.ok
        await asyncio.sleep(0.05)  # the runtime parks on GET /next again
        assert seen_frozen == [False] * 50
        assert h.sandbox.frozen, "an idle environment whose runtime waits is frozen"

    await with_env(tmp_path, recording, body)
