"""Fixtures for real sandboxes: one driver per session on its own cgroup parent."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_helpers import Runner

from lamina.sandbox.bwrap import BwrapDriver


@pytest.fixture(scope="session")
def sandbox_base() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("real sandboxes need root")
    base = Path(tempfile.mkdtemp(prefix="lamina-sbx-", dir="/dev/shm"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def driver(sandbox_base: Path) -> Iterator[BwrapDriver]:
    drv = BwrapDriver(state_dir=sandbox_base / "state", cgroup_name="lamina-test")
    drv.reclaim()
    yield drv
    leftovers = drv.hierarchy.leftovers()
    drv.reclaim()
    drv.close()
    for parent in drv.hierarchy.parents().values():
        parent.rmdir()
    assert leftovers == [], f"tests leaked cgroups: {leftovers}"


@pytest.fixture
def runner(driver: BwrapDriver, sandbox_base: Path) -> Runner:
    return Runner(driver, sandbox_base)
