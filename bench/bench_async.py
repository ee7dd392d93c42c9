"""Event (asynchronous) invokes: enqueue throughput and event latency, next to the floors
measured in the same run.

    sudo .venv/bin/python bench/bench_async.py [--quick] [--json out.json]

- enqueue throughput: 202s per second with 8 forked clients, each on its own keep-alive
  connection (the lean signed client of _common.py), while the server also runs the events;
  then how long the backlog takes to drain (events.db empty).
- event latency: one client sends events one at a time; the handler prints time.time() at its
  start; the bench reads those lines from logs.db and subtracts the client's clock at the 202
  (and at the send). Same host, same clock.
- floors: loopback HTTP keep-alive round trip; fsync of a small write in the data dir's
  filesystem (the queue acknowledges an event only once it is on disk); a synchronous warm
  invoke of the same function.
See bench/README.md.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    LeanClient,
    Server,
    Signed,
    _proc_tree,
    bench_cli,
    forked_clients,
    load_baselines,
    loopback_rtt,
    pct,
    start_server,
    stop_process,
    summary,
)
from bench_invoke import boto_client, create_function, invoke_ok  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402

CLIENTS = 8
HANDLER = (
    "import json, time\n"
    "def handler(event, context):\n"
    "    t = time.time()\n"
    "    if 'id' in event:\n"
    "        print('BENCH_T', event['id'], repr(t))\n"
    "    return None\n"
)
RESIGN_AFTER_S = 60.0


@dataclass(frozen=True)
class Plan:
    latency_n: int
    gap_s: float
    duration_s: float
    drain_timeout_s: float
    http_n: int
    fsync_n: int
    sync_n: int


QUICK = Plan(latency_n=150, gap_s=0.02, duration_s=2.0, drain_timeout_s=25.0, http_n=300, fsync_n=50, sync_n=200)
FULL = Plan(latency_n=1000, gap_s=0.02, duration_s=5.0, drain_timeout_s=120.0, http_n=2000, fsync_n=200,
            sync_n=1000)


class EventClient(LeanClient):
    """The lean client, plus Event invokes (X-Amz-Invocation-Type: Event)."""

    def sign_event(self, function: str, payload: bytes) -> Signed:
        path = f"/2015-03-31/functions/{function}/invocations"
        headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event"}
        request = AWSRequest(method="POST", url=self.endpoint + path, data=payload, headers=headers)
        self._signer.add_auth(request)
        return Signed(path, payload, dict(request.headers.items()))


# -- floors ----------------------------------------------------------------------------------


def fsync_floor(directory: Path, n: int) -> dict[str, float]:
    """write(200 bytes) + fsync in ``directory``'s filesystem, in ms: what one durable commit
    costs at least (SQLite's WAL commit with synchronous=FULL does one or two of these)."""
    samples = []
    fd = os.open(directory / "fsync-probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n + 5):
            t0 = time.perf_counter_ns()
            os.write(fd, b"x" * 200)
            os.fsync(fd)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        os.close(fd)
        os.unlink(directory / "fsync-probe")
    return summary(samples[5:])


def sync_warm(client: EventClient, function: str, n: int) -> dict[str, float]:
    for _ in range(20):
        invoke_ok(client, function)
    signed = client.sign_invoke(function, b"{}")
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        reply = client.send(signed)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        if reply.status != 200:
            raise SystemExit(f"sync invoke: {reply.status} {reply.body[:300]!r}")
    return summary(samples)


# -- event latency ---------------------------------------------------------------------------


def handler_starts(data_dir: Path, function: str) -> dict[str, float]:
    """id -> the handler's time.time() at start, from the BENCH_T lines in logs.db."""
    db = sqlite3.connect(f"file:{data_dir / 'logs.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT message FROM events WHERE grp = ? AND message LIKE 'BENCH_T %'",
                          (f"/aws/lambda/{function}",)).fetchall()
    finally:
        db.close()
    out = {}
    for (message,) in rows:
        _, event_id, stamp = message.split()
        out[event_id] = float(stamp)
    return out


def event_latency(client: EventClient, server: Server, function: str, plan: Plan) -> dict[str, Any]:
    """Events sent one at a time, ``gap_s`` apart (so each finds a warm env idle)."""
    sent: dict[str, tuple[float, float]] = {}
    ack_ms: list[float] = []
    signed_at = 0.0
    batch: list[tuple[str, Signed]] = []
    for i in range(plan.latency_n):
        if not batch or time.monotonic() - signed_at > RESIGN_AFTER_S:
            ids = [f"e{j}" for j in range(i, min(i + 200, plan.latency_n))]
            batch = [(eid, client.sign_event(function, json.dumps({"id": eid}).encode())) for eid in ids]
            signed_at = time.monotonic()
        event_id, signed = batch.pop(0)
        t_send = time.time()
        t0 = time.perf_counter_ns()
        reply = client.send(signed)
        ack_ms.append((time.perf_counter_ns() - t0) / 1e6)
        t_ack = time.time()
        if reply.status != 202:
            raise SystemExit(f"event invoke: {reply.status} {reply.body[:300]!r}")
        sent[event_id] = (t_send, t_ack)
        time.sleep(plan.gap_s)
    deadline = time.monotonic() + 30
    while len(starts := handler_starts(server.data_dir, function)) < len(sent):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(starts)} of {len(sent)} events ran within 30 s")
        time.sleep(0.2)
    from_ack = [(starts[k] - ack) * 1000 for k, (_, ack) in sent.items()]
    from_send = [(starts[k] - send) * 1000 for k, (send, _) in sent.items()]
    return {"ack": summary(ack_ms), "ack_to_start": summary(from_ack), "send_to_start": summary(from_send),
            "started_before_ack": sum(1 for v in from_ack if v < 0)}


# -- enqueue throughput ----------------------------------------------------------------------


def _client_process(server: Server, function: str, duration: float, ready_w: int, go_r: int, out_w: int) -> None:
    try:
        client = EventClient(server.endpoint, server.key_id, server.secret)
        signed = client.sign_event(function, b'{"tp": 1}')
        os.write(ready_w, b"r")
        os.read(go_r, 1)
        latencies = []
        errors = 0
        start = time.perf_counter()
        end = start + duration
        while (now := time.perf_counter()) < end:
            reply = client.send(signed)
            latencies.append((time.perf_counter() - now) * 1000)
            errors += reply.status != 202
        elapsed = time.perf_counter() - start
        os.write(out_w, json.dumps({"count": len(latencies), "errors": errors, "elapsed": elapsed,
                                    "p50": pct(latencies, 50), "p99": pct(latencies, 99)}).encode())
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - a child must never return into the parent's code
        os.write(out_w, json.dumps({"error": repr(exc)}).encode())
        os._exit(1)


def pending_events(data_dir: Path) -> tuple[int, int]:
    """(events not yet done, dead letters) in events.db."""
    db = sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True)
    try:
        rows = dict(db.execute("SELECT state = 'dead', count(*) FROM events GROUP BY state = 'dead'").fetchall())
    finally:
        db.close()
    return rows.get(0, 0), rows.get(1, 0)


def sandboxes(server_pid: int) -> int:
    """Sandboxes (environments and standbys) in the server's tree: bwrap processes whose parent
    is not itself a bwrap (with --unshare-pid each sandbox has two)."""
    comms: dict[int, tuple[str, int]] = {}
    for pid in _proc_tree(server_pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        comms[pid] = (comm, int(stat.rsplit(")", 1)[1].split()[1]))
    return sum(1 for comm, ppid in comms.values()
               if comm == "bwrap" and comms.get(ppid, ("", 0))[0] != "bwrap")


def enqueue_throughput(server: Server, function: str, plan: Plan) -> dict[str, Any]:
    def child(ready_w: int, go_r: int, out_w: int) -> None:
        _client_process(server, function, plan.duration_s, ready_w, go_r, out_w)

    with forked_clients(CLIENTS, child) as release:
        started = time.monotonic()
        results = release()
        sent_done = time.monotonic()
    failed = [r for r in results if "error" in r or r["errors"]]
    if failed:
        raise SystemExit(f"throughput clients failed: {failed}")
    acked = sum(r["count"] for r in results)
    pending_at_end, _ = pending_events(server.data_dir)
    drained_at = None
    while time.monotonic() - sent_done < plan.drain_timeout_s:
        pending, dead = pending_events(server.data_dir)
        if pending == 0:
            drained_at = time.monotonic()
            break
        time.sleep(0.1)
    pending, dead = pending_events(server.data_dir)
    return {"sandboxes_after": sandboxes(server.process.pid), "clients": CLIENTS, "acked": acked,
            "acked_per_s": sum(r["count"] / r["elapsed"] for r in results),
            "p50_of_client_p50s": pct([r["p50"] for r in results], 50),
            "max_client_p99": max(r["p99"] for r in results),
            "pending_when_sending_stopped": pending_at_end,
            "drain_s": None if drained_at is None else drained_at - sent_done,
            "processed_per_s": None if drained_at is None else acked / (drained_at - started),
            "still_pending": pending, "dead": dead}


# -- report ----------------------------------------------------------------------------------


def run(plan: Plan, baselines_path: Path | None) -> dict[str, Any]:
    baselines = load_baselines(baselines_path) if baselines_path else load_baselines()
    res: dict[str, Any] = {"plan": asdict(plan), "kernel": os.uname().release, "cpus": os.cpu_count()}
    res["loopback_rtt"] = loopback_rtt(plan.http_n, baselines, b'{"id": "e0"}')
    tmp = Path(tempfile.mkdtemp(prefix="lamina-bench-"))
    server: Server | None = None
    try:
        res["fsync"] = fsync_floor(tmp, plan.fsync_n)
        server = start_server(tmp / "data", tmp / "server.log")
        lam = boto_client(server)
        for name in ("bench-async", "bench-async-tp"):
            create_function(lam, name, 1769, _zip())
        client = EventClient(server.endpoint, server.key_id, server.secret)
        for name in ("bench-async", "bench-async-tp"):
            invoke_ok(client, name)  # Active, and a warm env each
        res["sandboxes_before"] = sandboxes(server.process.pid)
        res["sync_warm"] = sync_warm(client, "bench-async", plan.sync_n)
        res["latency"] = event_latency(client, server, "bench-async", plan)
        client.close()
        res["throughput"] = enqueue_throughput(server, "bench-async-tp", plan)
    finally:
        if server is not None:
            stop_process(server.process)
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def _zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("index.py", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, HANDLER)
    return buf.getvalue()


def report(res: dict[str, Any]) -> str:
    rtt, lat, tp = res["loopback_rtt"], res["latency"], res["throughput"]
    rows = [("loopback HTTP keep-alive round trip", rtt["p50"], rtt["p99"]),
            ("fsync of a 200-byte append in the data dir's filesystem", res["fsync"]["p50"], res["fsync"]["p99"]),
            ("sync warm invoke, same function, 1 client", res["sync_warm"]["p50"], res["sync_warm"]["p99"]),
            ("Event invoke: send -> 202, 1 client", lat["ack"]["p50"], lat["ack"]["p99"]),
            ("event latency: 202 -> handler start", lat["ack_to_start"]["p50"], lat["ack_to_start"]["p99"]),
            ("event latency: send -> handler start", lat["send_to_start"]["p50"], lat["send_to_start"]["p99"])]
    lines = [f"{'figure':<58} {'p50':>9} {'p99':>9}"]
    lines += [f"{label:<58} {p50:>9.3f} {p99:>9.3f} ms" for label, p50, p99 in rows]
    lines.append(f"  ({lat['started_before_ack']} of {lat['ack']['n']} events started before the client saw the 202)")
    lines.append(f"Event invokes acknowledged/s, {tp['clients']} clients{'':<22} {tp['acked_per_s']:>9.0f}"
                 f"   (client p50 {tp['p50_of_client_p50s']:.3f} ms, worst p99 {tp['max_client_p99']:.3f} ms)")
    if tp["drain_s"] is not None:
        lines.append(f"  {tp['acked']} events acked; {tp['pending_when_sending_stopped']} still queued when sending "
                     f"stopped, drained {tp['drain_s']:.1f} s later: {tp['processed_per_s']:.0f} events/s "
                     f"run end to end; dead letters {tp['dead']}; sandboxes afterwards {tp['sandboxes_after']}")
    else:
        lines.append(f"  {tp['acked']} events acked; {tp['still_pending']} still queued after "
                     f"{res['plan']['drain_timeout_s']:.0f} s of draining; dead letters {tp['dead']}")
    lines.append("")
    lines.append(f"Event send->202 p50 / loopback RTT p50: {lat['ack']['p50'] / rtt['p50']:.2f}x; "
                 f"202->handler start p50 / loopback RTT p50: {lat['ack_to_start']['p50'] / rtt['p50']:.2f}x; "
                 f"send->202 p50 / sync warm invoke p50: {lat['ack']['p50'] / res['sync_warm']['p50']:.2f}x")
    return "\n".join(lines)


def main() -> int:
    res = bench_cli("bench_async", __doc__, lambda quick, base: run(QUICK if quick else FULL, base), report,
                    baselines_flag=True)
    return 2 if res is None else 0


if __name__ == "__main__":
    sys.exit(main())
