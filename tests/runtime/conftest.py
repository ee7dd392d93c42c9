"""Shared harness: serve() on 127.0.0.1:0 in the test's loop, the bootstrap as a subprocess."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from lamina.runtime import Invocation, RuntimeChannel, python_bootstrap, serve

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def make_invocation(payload: bytes = b"{}", timeout_s: float = 30.0, **kw: Any) -> Invocation:
    return Invocation(
        request_id=str(uuid.uuid4()),
        payload=payload,
        deadline_ms=int((time.time() + timeout_s) * 1000),
        function_arn=ARN,
        **kw,
    )


class Env:
    """A running bootstrap process bound to a channel; ``output()`` is its stdout+stderr."""

    def __init__(self, channel: RuntimeChannel, proc: asyncio.subprocess.Process) -> None:
        self.channel = channel
        self.proc = proc

    async def output(self) -> str:
        self.channel.close()
        try:
            out, _ = await asyncio.wait_for(self.proc.communicate(), 10)
        except TimeoutError:
            self.proc.kill()
            out, _ = await self.proc.communicate()
        return out.decode("utf-8", "replace")


@asynccontextmanager
async def start_env(
    task_root: Path,
    files: dict[str, str],
    handler: str,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    max_body: int | None = None,
) -> AsyncIterator[Env]:
    for name, text in files.items():
        path = task_root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    sock = listener()
    port = sock.getsockname()[1]
    channel = RuntimeChannel()
    kwargs = {} if max_body is None else {"max_body": max_body}
    server = await serve(sock, channel, **kwargs)
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]abc",
        "LAMBDA_RUNTIME_DIR": str(task_root / "_no_runtime_dir"),
        **(env or {}),
    }
    cmd = argv or [sys.executable, "-I", "-S", str(python_bootstrap())]
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=full_env, cwd=str(task_root),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield Env(channel, proc)
    finally:
        channel.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.close()
        await server.wait_closed()


T = TypeVar("T")


class Runner(Protocol):
    def __call__(self, coro: Coroutine[Any, Any, T], timeout: float = ...) -> T: ...


def _run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    async def guarded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(guarded())


@pytest.fixture
def run() -> Runner:
    """Run a coroutine to completion with a hard timeout, so a hang fails instead of stalling."""
    return _run
