"""Warm invoke round trip through Lamina's Runtime API server and Python bootstrap.

Prints p50/p99 of RuntimeChannel.invoke() (GET /next answered -> handler -> POST /response ->
202) over N warm invokes, next to a loopback HTTP/1.1 keep-alive round trip between two Python
processes (http.client -> http.server) measured in the same run, and their ratio. One invoke is
at least one HTTP exchange each way, so ~2x the baseline is the physical floor.

    .venv/bin/python bench/runtime_roundtrip.py [--n 2000] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

from lamina.runtime import Invocation, RuntimeChannel, python_bootstrap, serve

_HTTP_SERVER = textwrap.dedent("""
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        def log_message(self, *a):
            pass
    s = http.server.HTTPServer(("127.0.0.1", 0), H)
    print(s.server_address[1], flush=True)
    s.serve_forever()
""")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round((len(s) - 1) * p / 100)))]


def http_baseline(n: int) -> list[float]:
    proc = subprocess.Popen([sys.executable, "-c", _HTTP_SERVER], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples = []
        for i in range(n + 50):
            t0 = time.perf_counter_ns()
            conn.request("GET", "/")
            conn.getresponse().read()
            if i >= 50:
                samples.append((time.perf_counter_ns() - t0) / 1e6)
        conn.close()
        return samples
    finally:
        proc.kill()
        proc.wait()


async def runtime_roundtrip(n: int) -> list[float]:
    task_root = Path(tempfile.mkdtemp(prefix="lamina-bench-"))
    (task_root / "app.py").write_text("def handler(event, context):\n    return event\n")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    channel = RuntimeChannel()
    server = await serve(sock, channel)
    env = {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:%d" % sock.getsockname()[1],
           "_HANDLER": "app.handler", "LAMBDA_TASK_ROOT": str(task_root)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", str(python_bootstrap()), env=env)
    try:
        await asyncio.wait_for(channel.wait_ready(), 10)
        samples = []
        payload = b'{"key": "value", "n": 1}'
        for i in range(n + 50):
            inv = Invocation(str(uuid.uuid4()), payload, int(time.time() * 1000) + 30_000,
                             "arn:aws:lambda:us-east-1:000000000000:function:bench")
            t0 = time.perf_counter_ns()
            result = await channel.invoke(inv)
            if i >= 50:
                samples.append((time.perf_counter_ns() - t0) / 1e6)
            assert result.ok and result.body == payload, result
        return samples
    finally:
        channel.close()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        server.close()
        await server.wait_closed()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    base = http_baseline(args.n)
    rt = asyncio.run(runtime_roundtrip(args.n))
    loop_name = "uvloop" if args.uvloop else "asyncio"
    for label, s in (("loopback HTTP keep-alive round trip (baseline)", base),
                     (f"warm invoke round trip via Runtime API ({loop_name})", rt)):
        print(f"{label:<58} p50 {pct(s, 50):7.3f} ms  p99 {pct(s, 99):7.3f} ms  "
              f"mean {statistics.fmean(s):7.3f} ms  (n={len(s)})")
    print(f"ratio p50 invoke/baseline: {pct(rt, 50) / pct(base, 50):.2f}x "
          f"(one invoke = two HTTP exchanges)")


if __name__ == "__main__":
    os.environ.pop("PYTHONPATH", None)
    main()
