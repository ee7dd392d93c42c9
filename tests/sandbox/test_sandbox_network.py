"""SECURITY.md class E, and netns.py: only loopback, only the listener Lamina put there."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sandbox_helpers import Runner

from lamina.sandbox import netns
from lamina.sandbox.bwrap import BwrapSandbox

pytestmark = pytest.mark.root

PROBE = """
import errno, json, socket, sys, time
def connect(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    start = time.monotonic()
    try:
        s.connect(addr)
        data = s.recv(16).decode()
        result = "ok:" + data
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e))
    return [result, time.monotonic() - start]
host_port, ns_port = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps({
    "host_v4": connect(socket.AF_INET, ("127.0.0.1", host_port)),
    "host_v6": connect(socket.AF_INET6, ("::1", host_port)),
    "metadata": connect(socket.AF_INET, ("169.254.169.254", 80)),
    "lamina": connect(socket.AF_INET, ("127.0.0.1", ns_port)) if ns_port else None,
}))
"""


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A port the host process listens on at 127.0.0.1 (as the Lamina API would)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _serve_once(listener: socket.socket) -> threading.Thread:
    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"hello")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _run(
    runner: Runner, host_port: int, ns_port: int, net_ns_fd: int | None
) -> dict[str, list[object]]:
    spec = runner.spec(PROBE, net_ns_fd=net_ns_fd)
    spec = replace(spec, argv=[*spec.argv, str(host_port), str(ns_port)])

    async def body(sandbox: BwrapSandbox) -> int:
        return await sandbox.wait()

    try:
        assert runner.started(spec, body) == 0
        out = runner.output(spec)[0]
    finally:
        runner.close(spec)
    result: dict[str, list[object]] = json.loads(out)
    return result


def _assert_host_unreachable(seen: dict[str, list[object]]) -> None:
    assert seen["host_v4"][0] == "ECONNREFUSED"
    assert seen["host_v6"][0] in ("ECONNREFUSED", "EADDRNOTAVAIL", "ENETUNREACH")
    assert seen["metadata"][0] in ("ENETUNREACH", "EHOSTUNREACH")
    for name in ("host_v4", "host_v6", "metadata"):
        assert float(seen[name][1]) < 1.0  # type: ignore[arg-type]


def test_fresh_namespace_has_loopback_only(runner: Runner, host_listener: int) -> None:
    _assert_host_unreachable(_run(runner, host_listener, 0, None))


def test_prepared_namespace_reaches_only_the_listener_lamina_put_there(
    runner: Runner, host_listener: int
) -> None:
    ns_fd, listener = netns.create(port=0)
    try:
        port = listener.getsockname()[1]
        server = _serve_once(listener)
        seen = _run(runner, host_listener, port, ns_fd)
        server.join(5)
    finally:
        listener.close()
        os.close(ns_fd)
    assert seen["lamina"][0] == "ok:hello"
    _assert_host_unreachable(seen)


def test_netns_create_leaves_the_caller_in_its_namespace() -> None:
    before = os.readlink("/proc/thread-self/ns/net")
    started = time.perf_counter()
    ns_fd, listener = netns.create(port=0)
    took = time.perf_counter() - started
    try:
        assert os.readlink("/proc/thread-self/ns/net") == before
        assert os.readlink(f"/proc/self/fd/{ns_fd}") != before
        assert listener.getsockname()[0] == "127.0.0.1"
    finally:
        listener.close()
        os.close(ns_fd)
    assert took < 0.5
