"""The Runtime API's HTTP surface, driven with raw sockets: RIE's statuses and bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from conftest import ARN, Runner, listener, make_invocation
from lamina.runtime import RESPONSE_SIZE_TOO_LARGE, InitError, RuntimeChannel, serve

Run = Runner
P = "/2018-06-01/runtime"


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(head.encode() + b"\r\n" + body)
        return await self.response()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode().split("\r\n")
        hdrs = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
        body = await self.reader.readexactly(int(hdrs.get("content-length", "0")))
        return int(lines[0].split()[1]), hdrs, body


async def _with_server(body: Callable[[RuntimeChannel, Conn], Awaitable[None]],
                       max_body: int = 1000) -> None:
    sock = listener()
    channel = RuntimeChannel()
    server = await serve(sock, channel, max_body=max_body)
    reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
    try:
        await body(channel, Conn(reader, writer))
    finally:
        writer.close()
        channel.close()
        server.close()
        await server.wait_closed()


def test_next_headers_and_response(run: Run) -> None:
    async def body(channel: RuntimeChannel, conn: Conn) -> None:
        inv = make_invocation(b'{"k": 1}', trace_id="Root=1-a", cognito_identity='{"a":1}')
        task = asyncio.create_task(channel.invoke(inv))
        status, hdrs, payload = await conn.request("GET", f"{P}/invocation/next")
        assert status == 200 and payload == b'{"k": 1}'
        assert hdrs["lambda-runtime-aws-request-id"] == inv.request_id
        assert hdrs["lambda-runtime-deadline-ms"] == str(inv.deadline_ms)
        assert hdrs["lambda-runtime-invoked-function-arn"] == ARN
        assert hdrs["lambda-runtime-trace-id"] == "Root=1-a"
        assert hdrs["lambda-runtime-cognito-identity"] == '{"a":1}'
        assert "lambda-runtime-client-context" not in hdrs
        status, _, reply = await conn.request("POST", f"{P}/invocation/{inv.request_id}/response", b'"r"')
        assert (status, reply) == (202, b'{"status":"OK"}\n')
        result = await task
        assert result.ok and result.body == b'"r"' and result.request_id == inv.request_id
        # answered twice: RIE's state machine refuses with 403
        status, _, reply = await conn.request("POST", f"{P}/invocation/{inv.request_id}/error", b"{}")
        assert status == 403 and json.loads(reply)["errorType"] == "InvalidStateTransition"
        status, _, reply = await conn.request("POST", f"{P}/invocation/{inv.request_id}/response", b"1")
        assert json.loads(reply)["errorMessage"] == ("State transition from RuntimeResponseSentState to "
            "InvocationResponse failed for runtime. Error: State transition is not allowed")

    run(_with_server(body))


def test_wrong_request_id_and_error_post(run: Run) -> None:
    async def body(channel: RuntimeChannel, conn: Conn) -> None:
        inv = make_invocation()
        task = asyncio.create_task(channel.invoke(inv))
        await conn.request("GET", f"{P}/invocation/next")
        status, _, reply = await conn.request("POST", f"{P}/invocation/other-id/response", b"1")
        assert (status, reply) == (400, b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}\n')
        assert not task.done()
        status, _, _ = await conn.request("POST", f"{P}/invocation/{inv.request_id}/error", b'{"e":1}',
                                          {"Lambda-Runtime-Function-Error-Type": "Custom.Err"})
        assert status == 202
        result = await task
        assert (result.ok, result.body, result.error_type) == (False, b'{"e":1}', "Custom.Err")
        # the old id is no longer current once the runtime asks for the next event
        conn.writer.write(f"GET {P}/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await asyncio.sleep(0.05)
        other = Conn(*await asyncio.open_connection(*conn.writer.get_extra_info("peername")[:2]))
        status, _, _ = await other.request("POST", f"{P}/invocation/{inv.request_id}/response", b"1")
        assert status == 400
        other.writer.close()

    run(_with_server(body))


def test_oversize_body_is_413_and_ends_invocation(run: Run) -> None:
    async def body(channel: RuntimeChannel, conn: Conn) -> None:
        inv = make_invocation()
        task = asyncio.create_task(channel.invoke(inv))
        await conn.request("GET", f"{P}/invocation/next")
        status, _, reply = await conn.request(
            "POST", f"{P}/invocation/{inv.request_id}/response", b"x" * 1001)
        assert status == 413
        assert json.loads(reply) == {"errorMessage": "Exceeded maximum allowed payload size (1000 bytes).",
                                     "errorType": "RequestEntityTooLarge"}
        result = await task
        assert not result.ok and result.error_type == RESPONSE_SIZE_TOO_LARGE and result.env_misbehaved
        # at the limit exactly is fine for the next invocation
        inv2 = make_invocation()
        task2 = asyncio.create_task(channel.invoke(inv2))
        await conn.request("GET", f"{P}/invocation/next")
        status, _, _ = await conn.request("POST", f"{P}/invocation/{inv2.request_id}/response", b"y" * 1000)
        assert status == 202 and (await task2).body == b"y" * 1000

    run(_with_server(body))


def test_unknown_path_and_method(run: Run) -> None:
    async def body(channel: RuntimeChannel, conn: Conn) -> None:
        status, _, reply = await conn.request("GET", "/2018-06-01/runtime/nope")
        assert (status, reply) == (404, b"404 page not found\n")
        status, _, _ = await conn.request("GET", "/")
        assert status == 404
        status, _, _ = await conn.request("POST", f"{P}/invocation/next")
        assert status == 405

    run(_with_server(body))


def test_malformed_http_closes_connection(run: Run) -> None:
    async def body(channel: RuntimeChannel, conn: Conn) -> None:
        conn.writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        assert await asyncio.wait_for(conn.reader.read(), 5) == b""

    run(_with_server(body))


def test_init_error_before_ready(run: Run) -> None:
    async def body(channel: RuntimeChannel, conn: Conn) -> None:
        ready = asyncio.create_task(channel.wait_ready())
        status, _, _ = await conn.request("POST", f"{P}/init/error", b'{"errorType":"X"}',
                                          {"Lambda-Runtime-Function-Error-Type": "Runtime.X"})
        assert status == 202
        try:
            await ready
        except InitError as err:
            assert (err.error_type, err.body) == ("Runtime.X", b'{"errorType":"X"}')
        else:
            raise AssertionError("wait_ready did not raise")

    run(_with_server(body))


def test_expect_continue_and_close_fails_waiters(run: Run) -> None:
    async def body(channel: RuntimeChannel, conn: Conn) -> None:
        inv = make_invocation()
        task = asyncio.create_task(channel.invoke(inv))
        await conn.request("GET", f"{P}/invocation/next")
        conn.writer.write(f"POST {P}/invocation/{inv.request_id}/response HTTP/1.1\r\nHost: x\r\n"
                          f"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n".encode())
        status, _, _ = await conn.response()
        assert status == 100
        conn.writer.write(b"ok")
        status, _, _ = await conn.response()
        assert status == 202 and (await task).body == b"ok"
        pending = asyncio.create_task(channel.invoke(make_invocation()))
        await asyncio.sleep(0)
        channel.close()
        try:
            await pending
        except Exception as exc:
            assert type(exc).__name__ == "ChannelClosed"
        else:
            raise AssertionError("invoke survived close()")

    run(_with_server(body))
