"""The Lamina API relay: bytes piped untouched both ways, bounded, closed with its env.

Most tests serve the relay on a host loopback listener (the relay does not care where its
listener lives); one runs it inside a fresh network namespace as environments do (root).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from lamina.iam.tls import ensure_server_certificate
from lamina.sandbox import netns
from lamina.worker.relay import Relay, RelayTarget


def aio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 10))

    return run


class Target:
    """A host-side stand-in for the Lamina API: echoes, or reads to EOF then answers."""

    def __init__(self, mode: str = "echo") -> None:
        self.mode = mode
        self.received = bytearray()
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=tls)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.mode == "echo":
                while data := await reader.read(65536):
                    self.received += data
                    writer.write(data)
                    await writer.drain()
            else:  # "answer-at-eof"
                data = await reader.read()
                self.received += data
                writer.write(b"got %d bytes" % len(data))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


def host_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def relay_on_host(target: RelayTarget, **kwargs: Any) -> tuple[Relay, int]:
    listener = host_listener()
    port: int = listener.getsockname()[1]
    relay = Relay(target, **kwargs)
    await relay.start(listener)
    return relay, port


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


@aio
async def test_pipes_bytes_both_ways_untouched() -> None:
    target = Target()
    relay, port = await relay_on_host(RelayTarget("127.0.0.1", await target.start()))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # Every byte value, and far more than one chunk, so back-pressure is exercised.
    payload = bytes(range(256)) * 8192
    writer.write(payload)
    await writer.drain()
    echoed = await reader.readexactly(len(payload))
    assert echoed == payload
    assert bytes(target.received) == payload
    writer.close()
    await relay.close()
    await target.close()


@aio
async def test_half_close_reaches_the_target_and_its_answer_comes_back() -> None:
    target = Target("answer-at-eof")
    relay, port = await relay_on_host(RelayTarget("127.0.0.1", await target.start()))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9002\r\n\r\n"
    writer.write(request)
    writer.write_eof()
    assert await reader.read() == b"got %d bytes" % len(request)
    await until(lambda: relay.active == 0)
    writer.close()
    await relay.close()
    await target.close()


@aio
async def test_close_drops_open_connections_and_the_listener() -> None:
    target = Target()
    relay, port = await relay_on_host(RelayTarget("127.0.0.1", await target.start()))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    assert relay.active == 1
    await relay.close()
    assert await reader.read() == b""  # EOF: the relay closed the connection
    assert relay.active == 0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await relay.close()  # idempotent
    writer.close()
    await target.close()


@aio
async def test_connections_beyond_the_limit_are_closed_at_once() -> None:
    target = Target()
    relay, port = await relay_on_host(RelayTarget("127.0.0.1", await target.start()), max_connections=2)
    streams = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        streams.append(writer)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await reader.read() == b""
    assert relay.refused == 1 and relay.active == 2
    assert target.connections == 2
    streams[0].close()
    await until(lambda: relay.active == 1)  # a slot freed: the next connection is relayed
    reader, writer2 = await asyncio.open_connection("127.0.0.1", port)
    writer2.write(b"y")
    assert await reader.readexactly(1) == b"y"
    for w in (streams[1], writer, writer2):
        w.close()
    await relay.close()
    await target.close()


@aio
async def test_unreachable_target_closes_the_connection_fast() -> None:
    with host_listener() as probe:
        dead_port = probe.getsockname()[1]  # closed when the block ends: nothing listens
    relay, port = await relay_on_host(RelayTarget("127.0.0.1", dead_port))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello")
    assert await asyncio.wait_for(reader.read(), 2) == b""
    await until(lambda: relay.active == 0)
    writer.close()
    await relay.close()


@aio
async def test_tls_target_is_wrapped_and_verified(tmp_path: Path) -> None:
    files = ensure_server_certificate(tmp_path / "tls", "localhost")
    assert files.ca is not None
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(files.cert, files.key)
    target = Target()
    target_port = await target.start(server_tls)
    client_tls = ssl.create_default_context(cafile=str(files.ca))
    relay, port = await relay_on_host(RelayTarget("127.0.0.1", target_port, client_tls, "localhost"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # plain on the sandbox side
    writer.write(b"over tls")
    assert await reader.readexactly(8) == b"over tls"
    assert bytes(target.received) == b"over tls"
    writer.close()
    await relay.close()
    # A certificate that does not match the name is refused: nothing reaches the target.
    wrong = RelayTarget("127.0.0.1", target_port, client_tls, "not-lamina.example")
    relay, port = await relay_on_host(wrong)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"secret")
    assert await reader.read() == b""
    assert bytes(target.received) == b"over tls"
    writer.close()
    await relay.close()
    await target.close()


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
@aio
async def test_listener_inside_a_namespace_reaches_a_host_target() -> None:
    target = Target()
    target_port = await target.start()
    ns_fd, (first, second) = await asyncio.to_thread(netns.create_listeners, (0, 0))
    try:
        relay = Relay(RelayTarget("127.0.0.1", target_port))
        await relay.start(second)
        relay_port = second.getsockname()[1]

        def connect_inside(port: int) -> socket.socket:
            with netns.entered(ns_fd):
                return socket.create_connection(("127.0.0.1", port), timeout=5)

        # The host's target port is not reachable from inside the namespace; the relay is.
        with pytest.raises(ConnectionRefusedError):
            await asyncio.to_thread(connect_inside, target_port)
        sock = await asyncio.to_thread(connect_inside, relay_port)
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"from the sandbox")
        assert await reader.readexactly(16) == b"from the sandbox"
        await relay.close()
        assert await reader.read() == b""
        writer.close()
    finally:
        first.close()
        os.close(ns_fd)
        await target.close()
