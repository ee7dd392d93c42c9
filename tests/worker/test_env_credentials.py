"""Execution-role credentials per environment and the Lamina API relay, on real sandboxes.

A real python runtime runs a small handler that reports its AWS_* variables and, when asked,
calls $AWS_ENDPOINT_URL (plain HTTP, and boto3 as a function would); a host-side HTTP server
stands in for the Lamina API and records what reached it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import tempfile
import time
import uuid
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.control.archives import ArchiveLimits
from lamina.control.model import FunctionVersion
from lamina.runtime import Invocation, InvocationResult
from lamina.sandbox.bwrap import BwrapDriver
from lamina.telemetry.logs import LogStore
from lamina.worker.code import CodeCache
from lamina.worker.credentials import FakeCredentialIssuer
from lamina.worker.environment import Environment, Failure
from lamina.worker.pool import Pool
from lamina.worker.relay import RelayTarget
from lamina.worker.runtimes import Runtimes
from lamina.worker.worker import Worker

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="real sandboxes need root"),
]

ROLE = "arn:aws:iam::000000000000:role/fn-role"
HANDLER = """
import json, os, urllib.request

KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")

def handler(event, context):
    out = {k: os.environ.get(k) for k in KEYS}
    if event.get("http"):
        with urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL"] + "/ping", timeout=5) as r:
            out["http"] = r.read().decode()
    if event.get("boto3"):
        import boto3
        out["functions"] = boto3.client("lambda").list_functions()["Functions"]
    if event.get("crash"):
        os._exit(3)
    return out
"""


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", source)
    return buf.getvalue()


class ApiStandIn:
    """A minimal HTTP/1.1 server on host loopback: records each request, answers JSON."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> RelayTarget:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return RelayTarget("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                self.requests.append(head + await reader.readexactly(length))
                body = b'{"Functions": []}' if b"/functions" in head.split(b"\r\n")[0] else b"pong"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-amzn-RequestId: r1\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lamina-creds-", dir="/dev/shm"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def driver(base: Path) -> Iterator[BwrapDriver]:
    drv = BwrapDriver(state_dir=base / "state", cgroup_name="lamina-test-creds")
    drv.reclaim()
    yield drv
    leftovers = drv.hierarchy.leftovers()
    drv.reclaim()
    drv.close()
    for parent in drv.hierarchy.parents().values():
        parent.rmdir()
    assert leftovers == [], f"tests leaked cgroups: {leftovers}"


class Harness:
    """A Worker on the real driver, with one function ("fn") whose code is HANDLER."""

    def __init__(self, base: Path, driver: BwrapDriver, **worker_args: Any) -> None:
        root = base / uuid.uuid4().hex[:8]
        for sub in ("code", "envs"):
            (root / sub).mkdir(parents=True)
            os.chmod(root / sub, 0o711)
        self.logs = LogStore(root / "logs.db")
        self.pool = Pool(idle_timeout=0.0, max_lifetime=3600)  # idle envs go at the next reap()
        runtimes = Runtimes()
        self.worker = Worker(
            region="us-east-1", driver=driver, runtimes=runtimes,
            code=CodeCache(root / "code", lambda key: _zip(HANDLER), ArchiveLimits()),
            logs=self.logs, pool=self.pool, envs_dir=root / "envs", standby_stock=0, **worker_args,
        )
        self.version = FunctionVersion(
            name="fn", version="$LATEST", arn="arn:aws:lambda:us-east-1:000000000000:function:fn",
            runtime=runtimes.python, role=ROLE, handler="index.handler", code_sha256="-", code_size=0,
            code_key="code/fn", revision_id="r1", last_modified="2024-01-01T00:00:00.000+0000",
            timeout=10,
        )
        self.envs: list[Environment] = []
        make = self.worker._make

        async def spy(v: FunctionVersion) -> tuple[Environment, Failure | None]:
            env, failure = await make(v)
            self.envs.append(env)
            return env, failure

        self.worker._make = spy  # type: ignore[method-assign]

    async def invoke(self, event: dict[str, Any]) -> dict[str, Any] | Failure:
        inv = Invocation(str(uuid.uuid4()), json.dumps(event).encode(), int(time.time() * 1000) + 10_000,
                         self.version.arn)
        outcome = (await self.worker.run(self.version, inv)).outcome
        if isinstance(outcome, Failure):
            return outcome
        assert isinstance(outcome, InvocationResult) and outcome.ok, outcome
        result: dict[str, Any] = json.loads(outcome.body)
        return result

    async def close(self) -> None:
        await self.worker.close()
        self.logs.close()


def run(base: Path, driver: BwrapDriver, test: Callable[[Harness, ApiStandIn], Awaitable[None]],
        **worker_args: Any) -> None:
    async def main() -> None:
        api = ApiStandIn()
        args = dict(worker_args)
        if args.pop("relay", False):
            args["api_target"] = await api.start()
        harness = Harness(base, driver, **args)
        try:
            await asyncio.wait_for(test(harness, api), 60)
        finally:
            await harness.close()
            api.close()

    asyncio.run(main())


async def until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_function_gets_its_roles_credentials_and_reaches_the_api_through_the_relay(
    base: Path, driver: BwrapDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A platform key in the server's own environment must never reach a function.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAADMINADMINADMIN0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "admin-secret")
    issuer = FakeCredentialIssuer()

    async def test(h: Harness, api: ApiStandIn) -> None:
        out = await h.invoke({"http": True, "boto3": True})
        assert isinstance(out, dict)
        [(role, session, creds)] = issuer.issued
        assert (role, session) == (ROLE, "fn")
        assert out["AWS_ACCESS_KEY_ID"] == creds.access_key_id
        assert out["AWS_SECRET_ACCESS_KEY"] == creds.secret_access_key
        assert out["AWS_SESSION_TOKEN"] == creds.session_token
        assert "admin" not in json.dumps(out).lower()
        assert out["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9002"
        assert out["http"] == "pong"
        assert out["functions"] == []
        ping, listing = api.requests
        assert ping.startswith(b"GET /ping HTTP/1.1\r\n")
        assert listing.startswith(b"GET /2015-03-31/functions")
        # Signed inside the sandbox with the role's key, for the host it saw: untouched by the relay.
        assert b"Host: 127.0.0.1:9002\r\n" in listing
        assert f"Credential={creds.access_key_id}/".encode() in listing
        assert f"X-Amz-Security-Token: {creds.session_token}\r\n".encode() in listing
        # The warm env keeps its credentials: no second issue.
        await h.invoke({})
        assert len(issuer.issued) == 1

    run(base, driver, test, credentials=issuer, relay=True)


def test_without_issuer_or_target_placeholders_and_no_endpoint(base: Path, driver: BwrapDriver) -> None:
    async def test(h: Harness, api: ApiStandIn) -> None:
        first = await h.invoke({})
        assert isinstance(first, dict)
        assert first["AWS_ACCESS_KEY_ID"].startswith("ASIA") and len(first["AWS_ACCESS_KEY_ID"]) == 20
        assert first["AWS_SECRET_ACCESS_KEY"] and first["AWS_SESSION_TOKEN"]
        assert first["AWS_ENDPOINT_URL"] is None
        assert h.envs[0].relay is None

    run(base, driver, test)


@pytest.mark.parametrize("reason", ["retired", "reaped", "failed", "shutdown"])
def test_credentials_revoked_and_relay_closed_when_the_env_ends(
    base: Path, driver: BwrapDriver, reason: str
) -> None:
    issuer = FakeCredentialIssuer()

    async def test(h: Harness, api: ApiStandIn) -> None:
        outcome = await h.invoke({"crash": reason == "failed"})
        [(_, _, creds)] = issuer.issued
        if reason == "failed":
            assert isinstance(outcome, Failure) and outcome.error_type == "Runtime.ExitError"
        else:
            assert issuer.revoked == []
            assert h.worker.credentials is not None and h.worker.credentials.live == {creds.access_key_id}
        if reason == "retired":
            h.worker.retire("fn")
        elif reason == "reaped":
            assert h.pool.reap() == 1
        elif reason == "shutdown":
            await h.worker.close()
        await until(lambda: issuer.revoked == [creds.access_key_id])
        assert h.worker.credentials is not None and h.worker.credentials.live == frozenset()
        [env] = h.envs
        await until(lambda: env.relay is not None and env.relay.active == 0 and env.relay._server is None)

    run(base, driver, test, credentials=issuer, relay=True)


def test_refresh_loop_refreshes_live_envs_only(base: Path, driver: BwrapDriver) -> None:
    issuer = FakeCredentialIssuer()

    async def test(h: Harness, api: ApiStandIn) -> None:
        h.worker.start()
        await h.invoke({})
        [(_, _, creds)] = issuer.issued
        await until(lambda: issuer.refreshed.count(creds.access_key_id) >= 2)
        h.worker.retire("fn")
        await until(lambda: issuer.revoked == [creds.access_key_id])
        count = len(issuer.refreshed)
        await asyncio.sleep(0.2)  # several intervals: a revoked key is never refreshed again
        assert len(issuer.refreshed) == count

    run(base, driver, test, credentials=issuer, refresh_interval=0.03)
