"""SECURITY.md class B, last row: ``kill -9`` of the platform while environments run.

A server killed with SIGKILL runs no cleanup at all. What must hold anyway: its sandboxes die
with it (bwrap's --die-with-parent), and the next server on the same data dir reclaims what
the dead one left (env cgroups, the instance's scratch tmpfs) before it serves.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from test_compat_support import Server, client_for, make_zip, wait_active

pytestmark = pytest.mark.root

SANDBOX_UID = 993
CGROUP_ROOT = Path("/sys/fs/cgroup")

SLOW = """
import os, time
def handler(event, context):
    if event.get("quick"):
        return "quick"
    if os.fork() == 0:
        os.setsid()
        os.execv("/bin/sh", ["sh", "-c", "while :; do sleep 1; done", event["marker"]])
    time.sleep(60)
"""


def instance_names(data_dir: Path) -> tuple[str, ...]:
    """The scratch dir's name for this data dir (worker/scratch.py), in both of its places."""
    instance = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return instance, f"lamina-{instance}"


def env_groups(data_dir: Path) -> dict[str, list[str]]:
    """Env cgroups under every hierarchy's ``lamina-<scratch name>`` parent (server.py)."""
    found: dict[str, list[str]] = {}
    for scratch_name in instance_names(data_dir):
        for parent in CGROUP_ROOT.glob(f"*/lamina-{scratch_name}"):
            children = sorted(p.name for p in parent.iterdir() if p.is_dir())
            if children:
                found[str(parent)] = children
    return found


def scratch_dirs(data_dir: Path) -> list[Path]:
    instance, fallback = instance_names(data_dir)
    return [p for p in (Path("/run/lamina") / instance, Path("/dev/shm") / fallback) if p.exists()]


def sandbox_pids_with(marker: str) -> list[int]:
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


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_kill_9_while_envs_run_then_restart_reclaims(server_factory: Callable[..., Server],
                                                     tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = server_factory(data_dir)
    lam = client_for(first)  # 30 s read timeout; the server is killed long before
    name = f"restart-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="index.handler",
                        Role="arn:aws:iam::000000000000:role/lambda-role", MemorySize=512,
                        Timeout=60, Code={"ZipFile": make_zip({"index.py": SLOW})})
    wait_active(lam, name)
    marker = f"lamina-restart-{uuid.uuid4().hex}"
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            lam.invoke(FunctionName=name, Payload=json.dumps({"marker": marker}))
        except Exception as exc:  # the server dies under this call; that is the point
            errors.append(exc)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: len(sandbox_pids_with(marker)) >= 2, 20, "two running sandboxes")
    old_groups = wait_for(lambda: env_groups(data_dir), 5, "env cgroups of the first server")
    (scratch,) = scratch_dirs(data_dir)
    old_envs = {p.name for p in (scratch / "envs").iterdir()}
    canaries = [d / f"canary-{uuid.uuid4().hex}" for d in (scratch, scratch / "code", scratch / "envs")]
    for canary in canaries:
        canary.write_text("left by the killed server's instance")

    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    for t in threads:
        t.join(timeout=30)
    assert len(errors) == 2, "the invokes must have lost their server"

    second = server_factory(data_dir)
    with urllib.request.urlopen(f"{second.endpoint}/_lamina/health", timeout=5) as health:
        assert health.status == 200
    # Reclaimed before serving: none of the old env groups, no sandbox process of the old run.
    old = {g for groups in old_groups.values() for g in groups}
    # The new server may already have started envs of its own; none of the old may remain.
    remaining = {g for groups in env_groups(data_dir).values() for g in groups} & old
    assert not remaining, f"env cgroups of the killed server remain: {sorted(remaining)}"
    assert sandbox_pids_with(marker) == [], "sandbox processes of the killed server survive"
    assert not [c for c in canaries if c.exists()], "the instance's scratch tmpfs was not wiped"
    for scratch in scratch_dirs(data_dir):  # the new run's own envs may be there already
        assert not old_envs & {p.name for p in (scratch / "envs").iterdir()}

    lam2 = client_for(second)
    resp = lam2.invoke(FunctionName=name, Payload=json.dumps({"quick": True}))
    assert "FunctionError" not in resp
    assert json.loads(resp["Payload"].read()) == "quick"
    new_groups = [g for groups in env_groups(data_dir).values() for g in groups]
    assert new_groups and not old & set(new_groups)
