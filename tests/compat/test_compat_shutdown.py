"""A graceful stop (SIGTERM) stops every sandbox and wipes the decrypted code from tmpfs."""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from test_compat_support import Server, client_for, make_zip, wait_active

pytestmark = pytest.mark.root


def _scratch(data_dir: Path) -> list[Path]:
    instance = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return [p for p in (Path("/run/lamina") / instance, Path("/dev/shm") / f"lamina-{instance}") if p.exists()]


def _mounted_below(path: Path) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return [line.split()[4] for line in text.splitlines() if line.split()[4].startswith(str(path))]


def test_sigterm_cleans_up_sandboxes_and_plaintext(server_factory: Callable[..., Server], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = server_factory(data_dir)
    lam = client_for(server)
    lam.create_function(FunctionName="bye", Runtime="python3.11", Handler="index.handler",
                        Role="arn:aws:iam::000000000000:role/lambda-role", MemorySize=512,
                        Code={"ZipFile": make_zip({"index.py": "def handler(e, c):\n    return 'hi'\n"})})
    wait_active(lam, "bye")
    assert lam.invoke(FunctionName="bye")["Payload"].read() == b'"hi"'
    (scratch,) = _scratch(data_dir)
    assert any((scratch / "code").iterdir()), "the extracted code is on the scratch tmpfs while running"
    cgroups = list(Path("/sys/fs/cgroup/memory").glob(f"lamina-{scratch.name.removeprefix('lamina-')}"))
    assert cgroups, "the instance's cgroup parent exists while running"

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0, server.log_tail()
    assert _scratch(data_dir) == [], "decrypted code and env dirs are gone after a graceful stop"
    assert _mounted_below(scratch) == [] and _mounted_below(scratch.parent / scratch.name) == []
    assert not any(p.exists() for p in cgroups), "the instance's cgroups are removed"
