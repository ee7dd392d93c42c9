"""Lamina's cold start and warm invoke, next to the physical baselines measured in the same run.

    sudo .venv/bin/python bench/bench_invoke.py [--quick] [--json out.json]

Targets (the issue's): cold start p50 <= 2x a bare `python3 -c pass`; warm invoke p50 <= 5x one
loopback HTTP keep-alive round trip; no process spawned by the server on the warm path.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import boto3  # noqa: E402
from _common import (  # noqa: E402
    REGION,
    ForkCount,
    ForkWatcher,
    LeanClient,
    Server,
    bench_cli,
    bwrap_path,
    forked_clients,
    load_baselines,
    loopback_rtt,
    pct,
    start_server,
    stop_process,
    summary,
    time_cmd,
    wait_standby_full,
)
from botocore.config import Config  # noqa: E402

ROLE = "arn:aws:iam::000000000000:role/lambda-role"
PAYLOAD = json.dumps({"key1": "value1", "key2": "value2", "n": 42}).encode()
# Echoes the event, as the baseline's HTTP server does; {"sleep": s} holds the env busy so a
# burst of concurrent invokes is forced onto distinct environments.
HANDLER_CODE = (
    "import time\n"
    "def handler(event, context):\n"
    "    if isinstance(event, dict) and event.get('sleep'):\n"
    "        time.sleep(event['sleep'])\n"
    "    return event\n"
)
RESIGN_AFTER_S = 60.0  # SigV4 allows 5 minutes of skew; re-sign well inside it


@dataclass(frozen=True)
class Plan:
    cold_n: int
    warm_n: int
    duration_s: float
    spawn_n: int
    http_n: int
    sign_n: int


QUICK = Plan(cold_n=5, warm_n=300, duration_s=2.0, spawn_n=10, http_n=300, sign_n=200)
FULL = Plan(cold_n=20, warm_n=2000, duration_s=5.0, spawn_n=30, http_n=2000, sign_n=2000)


def make_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("index.py", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, HANDLER_CODE)
    return buf.getvalue()


def boto_client(server: Server) -> Any:
    session = boto3.session.Session(aws_access_key_id=server.key_id, aws_secret_access_key=server.secret,
                                    region_name=REGION)
    config = Config(retries={"total_max_attempts": 1}, read_timeout=60)
    return session.client("lambda", endpoint_url=server.endpoint, config=config)


def create_function(lam: Any, name: str, memory: int, code: bytes) -> None:
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="index.handler",
                        Code={"ZipFile": code}, MemorySize=memory, Timeout=30)
    deadline = time.monotonic() + 30
    while lam.get_function_configuration(FunctionName=name)["State"] != "Active":
        if time.monotonic() > deadline:
            raise SystemExit(f"function {name} did not become Active")
        time.sleep(0.01)


def invoke_ok(client: LeanClient, function: str, payload: bytes = PAYLOAD, tail: bool = False) -> dict[str, str]:
    reply = client.send(client.sign_invoke(function, payload, tail=tail))
    if reply.status != 200 or "x-amz-function-error" in reply.headers:
        raise SystemExit(f"invoke {function}: {reply.status} {reply.headers} {reply.body[:300]!r}")
    return reply.headers


# -- phases --------------------------------------------------------------------------------


def measure_baselines(plan: Plan, baselines: ModuleType | None) -> dict[str, Any]:
    py = baselines.PY if baselines is not None else sys.executable
    out: dict[str, Any] = {"source": str(baselines.__file__) if baselines else "bench fallback"}
    out["python_c_pass"] = {"argv": f"{py} -c pass", **summary(time_cmd([py, "-c", "pass"], plan.spawn_n, baselines))}
    lamina_py = str(Path(sys.base_prefix) / "bin" / f"python3.{sys.version_info.minor}")
    out["runtime_python_IS"] = {"argv": f"{lamina_py} -I -S -c pass",
                                **summary(time_cmd([lamina_py, "-I", "-S", "-c", "pass"], plan.spawn_n, baselines))}
    bwrap = bwrap_path()
    if bwrap:
        argv = [bwrap, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", py, "-c", "pass"]
        out["bwrap_python_c_pass"] = {"argv": "bwrap --unshare-all ... python3 -c pass",
                                      **summary(time_cmd(argv, plan.spawn_n, baselines))}
    out["loopback_rtt"] = loopback_rtt(plan.http_n, baselines, PAYLOAD)
    return out


def measure_signing(client: LeanClient, n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        client.sign_invoke("bench-sign", PAYLOAD)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return summary(samples)


_INIT = re.compile(r"Init Duration: ([0-9.]+) ms")
_DURATION = re.compile(r"\tDuration: ([0-9.]+) ms")


def timed_cold_invoke(client: LeanClient, name: str) -> tuple[float, float, float]:
    """One first invoke of ``name``: (client end to end, REPORT Init Duration, REPORT Duration) in ms."""
    signed = client.sign_invoke(name, PAYLOAD, tail=True)
    t0 = time.perf_counter_ns()
    reply = client.send(signed)
    elapsed = (time.perf_counter_ns() - t0) / 1e6
    if reply.status != 200 or "x-amz-function-error" in reply.headers:
        raise SystemExit(f"cold invoke {name}: {reply.status} {reply.body[:300]!r}")
    tail = base64.b64decode(reply.headers.get("x-amz-log-result", "")).decode(errors="replace")
    init_match, duration_match = _INIT.search(tail), _DURATION.search(tail)
    if init_match is None or duration_match is None:
        raise SystemExit(f"cold invoke {name}: no REPORT with Init Duration in the log tail:\n{tail}")
    return elapsed, float(init_match.group(1)), float(duration_match.group(1))


def cold_starts(lam: Any, client: LeanClient, memory: int, n: int) -> dict[str, Any]:
    """First invoke of n new functions; one more, untimed, warms the server's own code paths."""
    e2e: list[float] = []
    init: list[float] = []
    duration: list[float] = []
    for i in range(n + 1):
        name = f"bench-cold-{memory}-{i}-{secrets.token_hex(3)}"
        create_function(lam, name, memory, make_zip())
        elapsed, init_ms, duration_ms = timed_cold_invoke(client, name)
        if i == 0:
            continue
        e2e.append(elapsed)
        init.append(init_ms)
        duration.append(duration_ms)
    outside = [a - b - c for a, b, c in zip(e2e, init, duration, strict=True)]
    return {"memory_mb": memory, "end_to_end": summary(e2e), "init_duration": summary(init),
            "invoke_duration": summary(duration), "outside_env": summary(outside)}


def warm_latency(client: LeanClient, function: str, n: int) -> dict[str, Any]:
    for _ in range(50):
        invoke_ok(client, function)
    samples = []
    signed, signed_at = client.sign_invoke(function, PAYLOAD), time.monotonic()
    for _ in range(n):
        if time.monotonic() - signed_at > RESIGN_AFTER_S:
            signed, signed_at = client.sign_invoke(function, PAYLOAD), time.monotonic()
        t0 = time.perf_counter_ns()
        reply = client.send(signed)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        if reply.status != 200:
            raise SystemExit(f"warm invoke: {reply.status} {reply.body[:300]!r}")
    return summary(samples)


def _client_process(server: Server, function: str, duration: float, ready_w: int, go_r: int, out_w: int) -> None:
    """Body of one forked client: warm an env of its own, wait for go, invoke until time is up."""
    try:
        client = LeanClient(server.endpoint, server.key_id, server.secret)
        invoke_ok(client, function, json.dumps({"sleep": 0.5}).encode())  # concurrent: one env each
        signed = client.sign_invoke(function, PAYLOAD)
        os.write(ready_w, b"r")
        os.read(go_r, 1)
        latencies = []
        errors = 0
        start = time.perf_counter()
        end = start + duration
        while (now := time.perf_counter()) < end:
            reply = client.send(signed)
            latencies.append((time.perf_counter() - now) * 1000)
            errors += reply.status != 200
        elapsed = time.perf_counter() - start
        result = {"count": len(latencies), "errors": errors, "elapsed": elapsed,
                  "p50": pct(latencies, 50), "p99": pct(latencies, 99)}
        os.write(out_w, json.dumps(result).encode())
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - a child must never return into the parent's code
        os.write(out_w, json.dumps({"error": repr(exc)}).encode())
        os._exit(1)


def throughput(server: Server, function: str, clients: int, duration: float) -> tuple[dict[str, Any], ForkCount]:
    """invokes/s with ``clients`` forked client processes; forks are counted only once they are all
    connected and warm, so the window holds no client fork and no server cold start."""
    def child(ready_w: int, go_r: int, out_w: int) -> None:
        _client_process(server, function, duration, ready_w, go_r, out_w)

    with forked_clients(clients, child) as release:
        wait_standby_full(server.endpoint)  # the warm-up's cold starts used standbys up
        with ForkWatcher(server.process.pid) as watcher:
            results = release()
        forks = watcher.result()
    failed = [r for r in results if "error" in r or r["errors"]]
    if failed:
        raise SystemExit(f"throughput clients failed: {failed}")
    rate = sum(r["count"] / r["elapsed"] for r in results)
    return {"clients": clients, "invokes_per_s": rate, "invokes": sum(r["count"] for r in results),
            "p50_of_client_p50s": pct([r["p50"] for r in results], 50),
            "max_client_p99": max(r["p99"] for r in results)}, forks


# -- report --------------------------------------------------------------------------------


def report(res: dict[str, Any]) -> str:
    b, lam = res["baselines"], res["lamina"]
    py, rtt = b["python_c_pass"], b["loopback_rtt"]
    rows = [("python3 -c pass (fork+exec+wait)", py["p50"], py["p99"], "ms")]
    rows.append(("runtime interpreter -I -S -c pass", b["runtime_python_IS"]["p50"], b["runtime_python_IS"]["p99"], "ms"))
    if "bwrap_python_c_pass" in b:
        rows.append(("bwrap --unshare-all python3 -c pass", b["bwrap_python_c_pass"]["p50"], b["bwrap_python_c_pass"]["p99"], "ms"))
    rows.append(("loopback HTTP keep-alive round trip", rtt["p50"], rtt["p99"], "ms"))
    rows.append(("client SigV4 signing, per request", lam["signing"]["p50"], lam["signing"]["p99"], "ms"))
    for cold in lam["cold"]:
        m = cold["memory_mb"]
        rows.append((f"Lamina cold start {m} MB, client end to end", cold["end_to_end"]["p50"], cold["end_to_end"]["p99"], "ms"))
        rows.append((f"  REPORT Init Duration ({m} MB)", cold["init_duration"]["p50"], cold["init_duration"]["p99"], "ms"))
        rows.append((f"  REPORT Duration, first invoke ({m} MB)", cold["invoke_duration"]["p50"], cold["invoke_duration"]["p99"], "ms"))
        rows.append((f"  outside the env: API, code, logs ({m} MB)", cold["outside_env"]["p50"], cold["outside_env"]["p99"], "ms"))
    rows.append(("Lamina warm invoke, 1 client (signed ahead)", lam["warm"]["p50"], lam["warm"]["p99"], "ms"))
    lines = [f"{'figure':<50} {'p50':>10} {'p99':>10}"]
    lines += [f"{label:<50} {p50:>10.3f} {p99:>10.3f} {unit}" for label, p50, p99, unit in rows]
    for t in lam["throughput"]:
        lines.append(f"Lamina warm invokes/s, {t['clients']} client(s){'':<18} {t['invokes_per_s']:>10.0f}"
                     f"   (client p50 {t['p50_of_client_p50s']:.3f} ms, worst p99 {t['max_client_p99']:.3f} ms)")
    lines.append("")
    for name, r in res["ratios"].items():
        lines.append(f"{name:<62} {r['value']:7.2f}x  target <= {r['target']}x  {'PASS' if r['ok'] else 'FAIL'}"
                     if r["target"] else f"{name:<62} {r['value']:7.2f}x")
    cold_n = lam["cold"][0]["end_to_end"]["n"] + 1
    for phase, f in lam["forks"].items():
        if "cold" in phase:
            per = f["server_processes"] / cold_n if f["server_processes"] is not None else float("nan")
            lines.append(f"control: processes spawned by the server in the {phase}: {f['server_processes']} "
                         f"({per:.1f} per cold start; {f['method']})")
            continue
        lines.append(f"processes spawned by the server during {phase}: {f['server_processes']} "
                     f"(threads {f['server_threads']}; host-wide forks {f['system_processes']}; {f['method']})")
    return "\n".join(lines)


def ratios(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    b, lam = res["baselines"], res["lamina"]
    py, rtt = b["python_c_pass"]["p50"], b["loopback_rtt"]["p50"]
    out: dict[str, dict[str, Any]] = {}
    for cold in lam["cold"]:
        target = 2 if cold["memory_mb"] == 1769 else None
        value = cold["end_to_end"]["p50"] / py
        out[f"cold p50 ({cold['memory_mb']} MB) / python3 -c pass p50"] = {
            "value": value, "target": target, "ok": target is None or value <= target}
    warm = lam["warm"]["p50"] / rtt
    out["warm p50 / loopback RTT p50"] = {"value": warm, "target": 5, "ok": warm <= 5}
    with_sign = (lam["warm"]["p50"] + lam["signing"]["p50"]) / rtt
    out["warm p50 incl. client signing / loopback RTT p50"] = {"value": with_sign, "target": None, "ok": True}
    return out


def run(plan: Plan, baselines_path: Path | None) -> dict[str, Any]:
    baselines = load_baselines(baselines_path) if baselines_path else load_baselines()
    res: dict[str, Any] = {"plan": asdict(plan), "python": sys.version.split()[0], "kernel": os.uname().release,
                           "cpus": os.cpu_count()}
    res["baselines"] = measure_baselines(plan, baselines)
    tmp = Path(tempfile.mkdtemp(prefix="lamina-bench-"))
    server: Server | None = None
    try:
        server = start_server(tmp / "data", tmp / "server.log")
        lam = boto_client(server)
        client = LeanClient(server.endpoint, server.key_id, server.secret)
        lamina: dict[str, Any] = {"signing": measure_signing(client, plan.sign_n)}
        # The 1769 MB cold phase runs under a ForkWatcher too: a control showing the counter
        # does see the server's spawns, so the warm phases' 0 means something.
        with ForkWatcher(server.process.pid) as cold_watcher:
            lamina["cold"] = [cold_starts(lam, client, 1769, plan.cold_n)]
        cold_forks = cold_watcher.result()
        lamina["cold"].append(cold_starts(lam, client, 128, plan.cold_n))
        create_function(lam, "bench-warm", 1769, make_zip())
        invoke_ok(client, "bench-warm")
        wait_standby_full(server.endpoint)  # standby refills are background work, not the warm path
        with ForkWatcher(server.process.pid) as watcher:
            lamina["warm"] = warm_latency(client, "bench-warm", plan.warm_n)
        forks = {"1769 MB cold phase (control)": asdict(cold_forks),
                 "warm latency loop": asdict(watcher.result())}
        lamina["throughput"] = []
        for clients in (1, 8):
            rate, fork_count = throughput(server, "bench-warm", clients, plan.duration_s)
            lamina["throughput"].append(rate)
            forks[f"{clients}-client throughput"] = asdict(fork_count)
        lamina["forks"] = forks
        client.close()
        res["lamina"] = lamina
    finally:
        if server is not None:
            stop_process(server.process)
        shutil.rmtree(tmp, ignore_errors=True)
    res["ratios"] = ratios(res)
    return res


def main() -> int:
    res = bench_cli("bench_invoke", __doc__, lambda quick, base: run(QUICK if quick else FULL, base), report,
                    baselines_flag=True)
    if res is None:
        return 2
    server_forks = [f["server_processes"] for phase, f in res["lamina"]["forks"].items() if "cold" not in phase]
    ok = all(r["ok"] for r in res["ratios"].values()) and all(f == 0 for f in server_forks)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
