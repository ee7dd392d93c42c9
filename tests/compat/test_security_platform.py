"""SECURITY.md classes A, B, D and E through the whole platform (boto3 → server → sandbox).

tests/sandbox checks each limit on a bare sandbox. Here the same attacks arrive as function
code through Invoke, so what is asserted is what the platform makes of them: the error the
caller gets, what is left on the host afterwards, whether the server's own memory and its
other functions are disturbed, and whether the next invoke starts clean.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from test_compat_support import Functions, Server, make_zip

pytestmark = pytest.mark.root

MEMORY = 512
SANDBOX_UID = 993
OK_CODE = "def handler(event, context):\n    return {'ok': event}\n"


def invoke(lam: Any, name: str, event: object = None, **params: Any) -> tuple[dict[str, Any], Any]:
    resp: dict[str, Any] = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}), **params)
    body = resp["Payload"].read()
    return resp, json.loads(body) if body else None


def create(functions: Functions, name: str, code: str, **params: Any) -> None:
    params.setdefault("MemorySize", MEMORY)
    params.setdefault("Timeout", 10)
    functions.create(name, code=make_zip({"index.py": code}), **params)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def sandbox_pids_with(marker: str) -> list[int]:
    """Host pids of uid 993 whose command line carries ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uid = int(Path(f"/proc/{pid}/status").read_text().split("\nUid:")[1].split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if uid == SANDBOX_UID and marker.encode() in cmdline:
            found.append(int(pid))
    return found


def wait_no_survivors(marker: str, timeout: float = 3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := sandbox_pids_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# -- A: resource exhaustion -------------------------------------------------------------------

FLOOD = """
import os
def handler(event, context):
    line = b"x" * 1023 + b"\\n"
    chunk = line * 64
    for _ in range((1 << 30) // len(chunk)):
        os.write(1, chunk)
    return "wrote 1 GiB"
"""


def test_a_gigabyte_of_stdout_is_bounded(server: Server, lam: Any, functions: Functions,
                                         fn_name: str) -> None:
    create(functions, fn_name, FLOOD, MemorySize=1769, Timeout=6)
    before = rss_kb(server.process.pid)
    started = time.monotonic()
    resp, payload = invoke(lam, fn_name, LogType="Tail")
    assert time.monotonic() - started < 20
    if resp.get("FunctionError"):
        assert payload["errorType"] == "Sandbox.Timedout", payload
    else:
        assert payload == "wrote 1 GiB"
    assert len(base64.b64decode(resp["LogResult"])) <= 4096
    time.sleep(0.5)  # the log store flushes every 0.2 s
    with sqlite3.connect(server.data_dir / "logs.db") as db:
        (stored,) = db.execute("SELECT COALESCE(SUM(LENGTH(message)), 0) FROM events WHERE grp = ?",
                               (f"/aws/lambda/{fn_name}",)).fetchone()
    assert 0 < stored <= 1 << 20, f"{stored} bytes of log stored for one invoke"
    grown_mb = (rss_kb(server.process.pid) - before) / 1024
    assert grown_mb < 150, f"the server grew by {grown_mb:.0f} MB"
    assert invoke(lam, fn_name, LogType="None")[0]["StatusCode"] == 200


HOG = """
import os, time
def handler(event, context):
    if event["kind"] == "forks":
        refused = 0
        for _ in range(5000):
            try:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
            except OSError:
                refused += 1
                if refused > 50:
                    break
        return {"refused": refused}
    hoard = []
    while True:
        hoard.append(bytearray(64 << 20))
"""


def test_fork_bomb_and_memory_balloon_do_not_disturb_another_function(
        lam: Any, functions: Functions, fn_name: str) -> None:
    victim = fn_name + "-ok"
    create(functions, fn_name, HOG, Timeout=8)
    create(functions, victim, OK_CODE)
    invoke(lam, victim, 0)  # warm, so the timings below measure interference, not a cold start
    with ThreadPoolExecutor(2) as pool:
        forks = pool.submit(invoke, lam, fn_name, {"kind": "forks"})
        balloon = pool.submit(invoke, lam, fn_name, {"kind": "memory"})
        slowest = 0.0
        while not (forks.done() and balloon.done()):
            started = time.monotonic()
            resp, payload = invoke(lam, victim, 1)
            slowest = max(slowest, time.monotonic() - started)
            assert "FunctionError" not in resp and payload == {"ok": 1}
            time.sleep(0.1)
    assert slowest < 3.0, f"the other function took {slowest:.1f} s meanwhile"
    resp, payload = forks.result()
    if not resp.get("FunctionError"):
        assert payload["refused"] > 0, "the pids limit never refused a fork"
    else:
        assert payload["errorType"] in ("Sandbox.Timedout", "Runtime.ExitError"), payload
    resp, payload = balloon.result()
    assert resp.get("FunctionError") == "Unhandled"
    assert payload["errorType"] in ("Runtime.OutOfMemory", "Runtime.ExitError", "MemoryError"), payload
    assert invoke(lam, victim, 2)[1] == {"ok": 2}
    assert invoke(lam, fn_name, {"kind": "forks"})[0]["StatusCode"] == 200


# -- B: time and the process tree -------------------------------------------------------------

ESCAPER = """
import os, time, uuid
ENV = uuid.uuid4().hex
def handler(event, context):
    if "check" in event:
        return {"env": ENV, "exists": os.path.exists(event["check"])}
    marker, path = event["marker"], event["path"]
    for _ in range(3):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sh", ["sh", "-c", 'while :; do echo x >> "$1"; sleep 0.05; done',
                                     marker, path])
            os._exit(0)
    time.sleep(0.3)
    assert os.path.getsize(path) > 0
    time.sleep(100)
"""


def test_timeout_kills_setsid_and_double_forked_children(lam: Any, functions: Functions,
                                                         fn_name: str) -> None:
    create(functions, fn_name, ESCAPER, Timeout=2)
    marker = f"lamina-escaper-{uuid.uuid4().hex}"
    path = f"/tmp/{marker}"
    started = time.monotonic()
    resp, payload = invoke(lam, fn_name, {"marker": marker, "path": path})
    elapsed = time.monotonic() - started
    assert resp.get("FunctionError") == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout", payload
    assert elapsed < 2 + 3, f"timed out after {elapsed:.1f} s"
    assert wait_no_survivors(marker) == [], "escaped children survived the timeout"
    resp, after = invoke(lam, fn_name, {"check": path})
    assert "FunctionError" not in resp
    assert after["exists"] is False, "the next invoke saw the timed-out env's /tmp"


HANGING_INIT = """
import subprocess, time
subprocess.Popen(["/bin/sh", "-c", "while :; do sleep 1; done", {marker!r}])
time.sleep(20)
def handler(event, context):
    return "unreachable"
"""
RAISING_INIT = "raise RuntimeError('init blew up')\ndef handler(event, context):\n    return 1\n"
EXITING_INIT = "import os\nos._exit(3)\ndef handler(event, context):\n    return 1\n"


def test_init_that_hangs_or_crashes_fails_and_the_platform_serves(
        lam: Any, functions: Functions, fn_name: str) -> None:
    marker = f"lamina-init-{uuid.uuid4().hex}"
    healthy = fn_name + "-ok"
    create(functions, fn_name + "-hang", HANGING_INIT.format(marker=marker), Timeout=30)
    create(functions, fn_name + "-raise", RAISING_INIT)
    create(functions, fn_name + "-exit", EXITING_INIT)
    create(functions, healthy, OK_CODE)
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        hang = pool.submit(invoke, lam, fn_name + "-hang")
        deadline = time.monotonic() + 5
        while not sandbox_pids_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sandbox_pids_with(marker), "the hanging init's child never started"
        # While one init hangs, crashing inits fail cleanly and other functions are served.
        resp, payload = invoke(lam, fn_name + "-raise")
        assert resp.get("FunctionError") == "Unhandled"
        assert payload["errorType"] == "RuntimeError" and "init blew up" in payload["errorMessage"]
        resp, payload = invoke(lam, fn_name + "-exit")
        assert resp.get("FunctionError") == "Unhandled"
        assert payload["errorType"] == "Runtime.ExitError", payload
        assert invoke(lam, healthy, 1)[1] == {"ok": 1}
        resp, payload = hang.result()
        elapsed = time.monotonic() - started
    assert resp.get("FunctionError") == "Unhandled"
    assert payload["errorType"] in ("Runtime.InitTimeout", "Sandbox.Timedout"), payload
    assert 9 < elapsed < 10 + 5, f"the hanging init ended after {elapsed:.1f} s"
    assert wait_no_survivors(marker) == [], "the hanging init's child survived"
    assert invoke(lam, healthy, 2)[1] == {"ok": 2}


# -- E: network -------------------------------------------------------------------------------

NETWORK = """
import errno, socket, time
def attempt(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    started = time.monotonic()
    try:
        s.connect(addr)
        result = "connected"
    except OSError as exc:
        result = errno.errorcode.get(exc.errno, str(exc))
    finally:
        s.close()
    return [result, time.monotonic() - started]
def handler(event, context):
    port = event["port"]
    out = {
        "api_v4": attempt(socket.AF_INET, ("127.0.0.1", port)),
        "api_v6": attempt(socket.AF_INET6, ("::1", port)),
        "metadata": attempt(socket.AF_INET, ("169.254.169.254", 80)),
    }
    for name, kind in (("raw", socket.SOCK_RAW), ("packet", None)):
        try:
            if kind is None:
                socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
            else:
                socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
            out[name] = "created"
        except OSError as exc:
            out[name] = errno.errorcode.get(exc.errno, str(exc))
    return out
"""


def test_network_from_a_function_fails_fast(server: Server, lam: Any, functions: Functions,
                                            fn_name: str) -> None:
    create(functions, fn_name, NETWORK)
    port = urlparse(server.endpoint).port
    resp, out = invoke(lam, fn_name, {"port": port})
    assert "FunctionError" not in resp, out
    for target in ("api_v4", "api_v6", "metadata"):
        result, seconds = out[target]
        assert result != "connected", f"{target} reachable from a function"
        assert seconds < 1.0, f"{target} took {seconds:.2f} s to fail"
    assert out["raw"] == "EPERM" and out["packet"] == "EPERM", out


# -- D: filesystem and leaks ------------------------------------------------------------------

SNOOP = """
import os, time
# /proc and /dev are the sandbox's own; /usr is the host's /usr, read-only, which holds no
# scratch space (code is unpacked on a tmpfs under /run or /dev/shm) and is too big to walk.
SKIP = ("/proc", "/sys", "/dev", "/usr")
def handler(event, context):
    if event.get("marker_only"):
        return "has marker"
    with open("/proc/1/environ", "rb") as f:
        init_env = f.read().decode("latin-1")
    with open("/proc/1/cmdline", "rb") as f:
        init_cmd = f.read().decode("latin-1")
    visible = {p: os.path.exists(p) for p in event["paths"]}
    found, seen, stack = [], 0, ["/"]
    deadline = time.monotonic() + 4
    while stack and seen < 200000 and time.monotonic() < deadline:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if entry.name == event["needle"]:
                found.append(entry.path)
            if entry.is_dir(follow_symlinks=False) and entry.path not in SKIP:
                stack.append(entry.path)
    return {"init_env": init_env, "init_cmd": init_cmd, "env": dict(os.environ),
            "visible": visible, "found": found, "seen": seen, "complete": not stack}
"""


def test_host_data_dir_and_other_functions_are_invisible(server: Server, lam: Any,
                                                         functions: Functions, fn_name: str) -> None:
    needle = f"marker-{uuid.uuid4().hex}.txt"
    other = fn_name + "-other"
    functions.create(other, code=make_zip({"index.py": SNOOP, needle: "private"}), MemorySize=MEMORY)
    assert invoke(lam, other, {"marker_only": True})[1] == "has marker"  # its code is unpacked now
    create(functions, fn_name, SNOOP)
    data = server.data_dir
    paths = [str(data), str(data / "credentials"), str(data / "keys"), str(data / "logs.db"),
             str(data.parent), "/run/lamina", "/root", "/work"]
    resp, out = invoke(lam, fn_name, {"paths": paths, "needle": needle})
    assert "FunctionError" not in resp, out
    assert not any(out["visible"].values()), out["visible"]
    assert out["found"] == [], f"another function's code is visible at {out['found']}"
    assert out["complete"], f"walk of / did not finish ({out['seen']} entries)"
    host_init = Path("/proc/1/cmdline").read_bytes().decode("latin-1")
    assert out["init_cmd"] != host_init, "the sandbox sees the host's pid 1"
    mine = {f"{k}={v}" for k, v in out["env"].items()}
    extra = {e for e in out["init_env"].split("\0") if e} - mine
    assert not {e.split("=", 1)[0] for e in extra} - {"PWD", "LC_CTYPE"}, extra
    try:  # root in a container may itself lack the right to read the host init's environ
        host_env = Path("/proc/1/environ").read_bytes().decode("latin-1")
    except PermissionError:
        host_env = ""
    leaked = [e for e in filter(None, host_env.split("\0")) if e in out["init_env"].split("\0")]
    assert not [e for e in leaked if e not in mine], "the host init's environment is visible"
