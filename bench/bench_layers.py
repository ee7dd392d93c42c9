"""What the per-worker layer cache saves on a cold start with a large layer.

    sudo .venv/bin/python bench/bench_layers.py [--quick] [--json out.json]

Per run: a new version of a large layer (~30 MB unzipped, ~2000 files) is published, then three
new functions get their first invoke: A uses the layer (first use: the layer is decrypted and
extracted), B uses the same layer version while A's env is alive (cache hit: only linked),
C has no layers (reference). p50/p99 over the runs, next to the floors measured in the same
run: extracting the same zip to tmpfs with Python's zipfile, and hard-linking its files.
See bench/README.md.
"""

from __future__ import annotations

import io
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LeanClient, Server, bench_cli, start_server, stop_process, summary, wait_standby_full  # noqa: E402
from bench_invoke import ROLE, boto_client, make_zip, timed_cold_invoke  # noqa: E402


@dataclass(frozen=True)
class Plan:
    runs: int
    files: int
    file_bytes: int
    floor_n: int


QUICK = Plan(runs=3, files=2000, file_bytes=15_000, floor_n=3)
FULL = Plan(runs=10, files=2000, file_bytes=15_000, floor_n=10)


def layer_zip(plan: Plan) -> tuple[bytes, int]:
    """A python-package-like layer: ``files`` modules of hex text (deflates ~2:1, like code).
    Returns the zip and its unzipped size."""
    rng = random.Random(1234)
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for i in range(plan.files):
            body = ("X = '" + rng.randbytes(plan.file_bytes // 2 - 4).hex() + "'\n").encode()
            info = zipfile.ZipInfo(f"python/pkg{i // 100:03d}/mod{i % 100:03d}.py", date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, body)
            total += len(body)
    return buf.getvalue(), total


# -- floors ----------------------------------------------------------------------------------


def floors(data: bytes, n: int) -> dict[str, Any]:
    """Extracting the zip to tmpfs in this process, and hard-linking the extracted files into a
    second dir (what every env of a layer's function costs, cache hit or not)."""
    extract: list[float] = []
    link: list[float] = []
    for _ in range(n):
        root = Path(tempfile.mkdtemp(prefix="lamina-bench-layer-", dir="/dev/shm"))
        try:
            t0 = time.perf_counter_ns()
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.extractall(root / "tree")
            extract.append((time.perf_counter_ns() - t0) / 1e6)
            t0 = time.perf_counter_ns()
            for dirpath, _, names in os.walk(root / "tree"):
                target = root / "linked" / os.path.relpath(dirpath, root / "tree")
                target.mkdir(parents=True, exist_ok=True)
                for name in names:
                    os.link(os.path.join(dirpath, name), target / name)
            link.append((time.perf_counter_ns() - t0) / 1e6)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return {"zipfile_extract_to_tmpfs": summary(extract), "hardlink_tree": summary(link)}


# -- Lamina ----------------------------------------------------------------------------------


def cold_invoke(client: LeanClient, server: Server, name: str) -> dict[str, float]:
    """First invoke of ``name`` with the standby stock full (so no run waits for a sandbox)."""
    wait_standby_full(server.endpoint)
    elapsed, init_ms, duration_ms = timed_cold_invoke(client, name)
    return {"e2e": elapsed, "init": init_ms, "outside": elapsed - init_ms - duration_ms}


def one_run(lam: Any, client: LeanClient, server: Server, data: bytes, tag: str) -> dict[str, dict[str, float]]:
    layer_name = f"bench-layer-{tag}"
    arn = lam.publish_layer_version(LayerName=layer_name, Content={"ZipFile": data})["LayerVersionArn"]
    code = make_zip()
    names = {kind: f"bench-layers-{kind}-{tag}" for kind in ("first", "cached", "none")}
    try:
        out = {}
        for kind in ("first", "cached", "none"):
            layers = [] if kind == "none" else [arn]
            lam.create_function(FunctionName=names[kind], Runtime="python3.11", Role=ROLE, Handler="index.handler",
                                Code={"ZipFile": code}, MemorySize=1769, Timeout=30, Layers=layers)
            wait_active(lam, names[kind])
            out[kind] = cold_invoke(client, server, names[kind])
        return out
    finally:  # frees the envs (and with them the cached tree) before the next run
        for name in names.values():
            lam.delete_function(FunctionName=name)
        lam.delete_layer_version(LayerName=layer_name, VersionNumber=1)


def wait_active(lam: Any, name: str) -> None:
    deadline = time.monotonic() + 30
    while lam.get_function_configuration(FunctionName=name)["State"] != "Active":
        if time.monotonic() > deadline:
            raise SystemExit(f"function {name} did not become Active")
        time.sleep(0.01)


def run(plan: Plan) -> dict[str, Any]:
    data, unzipped = layer_zip(plan)
    res: dict[str, Any] = {"plan": asdict(plan), "layer": {"zip_bytes": len(data), "unzipped_bytes": unzipped,
                                                           "files": plan.files},
                           "kernel": os.uname().release, "cpus": os.cpu_count()}
    res["floors"] = floors(data, plan.floor_n)
    tmp = Path(tempfile.mkdtemp(prefix="lamina-bench-"))
    server: Server | None = None
    try:
        server = start_server(tmp / "data", tmp / "server.log")
        lam = boto_client(server)
        client = LeanClient(server.endpoint, server.key_id, server.secret)
        one_run(lam, client, server, data, "warmup-" + secrets.token_hex(3))  # untimed
        runs = [one_run(lam, client, server, data, f"{i}-{secrets.token_hex(3)}") for i in range(plan.runs)]
        client.close()
    finally:
        if server is not None:
            stop_process(server.process)
        shutil.rmtree(tmp, ignore_errors=True)
    res["lamina"] = {kind: {part: summary([r[kind][part] for r in runs]) for part in ("e2e", "init", "outside")}
                     for kind in ("first", "cached", "none")}
    lam_res = res["lamina"]
    res["saving_ms_p50"] = lam_res["first"]["e2e"]["p50"] - lam_res["cached"]["e2e"]["p50"]
    res["layer_overhead_cached_ms_p50"] = lam_res["cached"]["e2e"]["p50"] - lam_res["none"]["e2e"]["p50"]
    return res


def report(res: dict[str, Any]) -> str:
    layer, fl, lam = res["layer"], res["floors"], res["lamina"]
    lines = [f"layer: {layer['files']} files, {layer['unzipped_bytes'] / 1e6:.1f} MB unzipped, "
             f"{layer['zip_bytes'] / 1e6:.1f} MB zipped; {res['plan']['runs']} runs (+1 untimed), 1769 MB",
             f"{'figure':<68} {'p50':>9} {'p99':>9}"]
    rows = [("floor: zipfile extract of the layer to tmpfs (bench process)", fl["zipfile_extract_to_tmpfs"]),
            ("floor: hard-link its files into another dir", fl["hardlink_tree"])]
    labels = {"first": "A: first use of the layer version (decrypt + extract)",
              "cached": "B: same layer version, cache hit",
              "none": "C: no layers (reference)"}
    for kind, label in labels.items():
        rows.append((f"{label}, end to end", lam[kind]["e2e"]))
        rows.append(("    REPORT Init Duration (link into /opt + runtime init)", lam[kind]["init"]))
        rows.append(("    outside the env (API, decrypt, extract, logs)", lam[kind]["outside"]))
    lines += [f"{label:<68} {s['p50']:>9.2f} {s['p99']:>9.2f} ms" for label, s in rows]
    first, cached = lam["first"]["e2e"]["p50"], lam["cached"]["e2e"]["p50"]
    lines.append("")
    lines.append(f"cache saves {res['saving_ms_p50']:.1f} ms per cold start (p50 A - p50 B; "
                 f"B takes {cached / first:.0%} of A)")
    lines.append(f"a cached layer still costs {res['layer_overhead_cached_ms_p50']:.1f} ms over no layers "
                 f"(p50 B - p50 C: linking {layer['files']} files into the env's /opt)")
    return "\n".join(lines)


def main() -> int:
    res = bench_cli("bench_layers", __doc__, lambda quick, _: run(QUICK if quick else FULL), report)
    return 2 if res is None else 0


if __name__ == "__main__":
    sys.exit(main())
