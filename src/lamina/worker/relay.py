"""The Lamina API relay: how code inside a sandbox reaches the Lamina API, and nothing else.

An environment's network namespace holds only loopback. Next to the Runtime API (9001) the
worker puts a second listener there, 127.0.0.1:9002 (``AWS_ENDPOINT_URL`` points boto3 at it),
and serves it from the host process: each connection accepted in the namespace is joined to
a fresh connection from the host to the Lamina API (TLS-wrapped when the API serves TLS) and
bytes are copied both ways untouched. Nothing is parsed, so a request signed with SigV4 inside
the sandbox (Host ``127.0.0.1:9002``) arrives exactly as signed; the API authenticates it like
any other caller, as the function's role.

Bounds: at most ``max_connections`` relayed connections per environment at once (more are
closed at once, a fast failure rather than a queue); an exchange ends when the API closes or
when one side closes and the end cannot be passed on (TLS has no half-close); ``close()``
(the environment's destroy) drops the listener and every open connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

RELAY_PORT = 9002
RELAY_ENDPOINT = f"http://127.0.0.1:{RELAY_PORT}"
MAX_CONNECTIONS = 32
CHUNK = 65536


class RelayedPeers:
    """The local addresses ``(host, port)`` of the relays' connections to the API right now.

    The API asks it whether a request arrived through a relay, i.e. from inside a sandbox, and
    then keeps the platform's own routes (metrics, history, traces) from it. An address is
    added before the first relayed byte is written and removed when the connection ends, so
    the answer holds for IPv4, IPv6 and any host the API listens on."""

    def __init__(self) -> None:
        self._peers: set[tuple[str, int]] = set()

    def add(self, peer: tuple[str, int]) -> None:
        self._peers.add(peer)

    def discard(self, peer: tuple[str, int]) -> None:
        self._peers.discard(peer)

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def __len__(self) -> int:
        return len(self._peers)


@dataclass(frozen=True)
class RelayTarget:
    """Where relayed connections go: the Lamina API as the host reaches it."""

    host: str
    port: int
    ssl: ssl.SSLContext | None = None  # None: plain TCP (the API listens on loopback)
    server_hostname: str | None = None  # the name checked against the API's certificate
    # Where the relays register their upstream connections' addresses for the API to check.
    peers: RelayedPeers | None = field(default=None, compare=False)


class Relay:
    """One environment's relay: serves its listener until :meth:`close`."""

    def __init__(
        self, target: RelayTarget, *, max_connections: int = MAX_CONNECTIONS, connect_timeout: float = 5.0
    ) -> None:
        self.target = target
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.refused = 0  # connections closed because the limit was reached
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def active(self) -> int:
        """Relayed connections open now."""
        return len(self._tasks)

    async def start(self, listener: socket.socket) -> None:
        """Serves ``listener`` (a listening socket, usually inside an env's namespace); the
        relay owns it from now on."""
        listener.setblocking(False)
        self._server = await asyncio.start_server(self._accepted, sock=listener)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._closed or task is None or len(self._tasks) >= self.max_connections:
            self.refused += 1
            writer.close()
            return
        self._tasks.add(task)
        peer: tuple[str, int] | None = None
        peers = self.target.peers
        try:
            upstream = await self._connect()
            if upstream is not None:
                if peers is not None:
                    sockname = upstream[1].get_extra_info("sockname")
                    peer = (str(sockname[0]), int(sockname[1]))
                    peers.add(peer)
                await self._pipe(reader, writer, *upstream)
        finally:
            if peers is not None and peer is not None:
                peers.discard(peer)
            self._tasks.discard(task)
            writer.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        t = self.target
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(
                    t.host, t.port, ssl=t.ssl, server_hostname=t.server_hostname if t.ssl else None,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            # The sandbox sees its connection closed; the API being down is the platform's
            # problem, logged here, not the function's.
            log.warning("relay to %s:%d failed: %s", t.host, t.port, exc)
            return None

    @staticmethod
    async def _pipe(
        client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
        api_r: asyncio.StreamReader, api_w: asyncio.StreamWriter,
    ) -> None:
        """Copies both ways until the exchange is over, then closes the API side."""
        up = asyncio.ensure_future(_copy(client_r, api_w))
        down = asyncio.ensure_future(_copy(api_r, client_w))
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            # The client finished sending and the API saw the end (plain TCP): its answer
            # may still be on its way. Any other end is the end of the exchange.
            if down not in done and up.result() and api_w.can_write_eof():
                await down
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            api_w.close()

    async def close(self) -> None:
        """Stops accepting and drops every open connection; idempotent."""
        self._closed = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> bool:
    """Copies until end of stream; passes the end on when the transport can. True when the
    source ended cleanly, False when a side failed (reset, broken pipe)."""
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
        return True
    except (ConnectionError, OSError):
        return False
