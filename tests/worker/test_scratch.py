"""Scratch: memory-backed, reclaimed after a crash, never deletes through a bind mount."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.worker import scratch
from lamina.worker.scratch import Scratch, is_tmpfs, remove_tree

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root"),
]

MS_BIND = 4096
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def bind(source: Path, target: Path) -> None:
    if _libc.mount(os.fsencode(source), os.fsencode(target), None, MS_BIND, None) != 0:
        raise OSError(ctypes.get_errno(), "bind mount failed", str(target))


def mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(data_dir, base) for one Scratch; anything left mounted is cleaned up."""
    data, base = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    yield data, base
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(str(tmp_path))]
    for point in sorted(points, key=len, reverse=True):
        _libc.umount2(os.fsencode(point), 2)


def test_scratch_is_memory_backed_and_private(instance: tuple[Path, Path]) -> None:
    data, base = instance
    s = Scratch(data, size_mb=16, base=base)
    try:
        assert is_tmpfs(s.root)
        assert not is_tmpfs(data)  # the check really distinguishes
        assert s.root.parent == base and mounted(s.root)
        assert os.stat(base).st_mode & 0o777 == 0o711
        for sub in (s.code, s.envs, s.runtime):
            assert sub.is_dir() and os.stat(sub).st_mode & 0o777 == 0o711
    finally:
        s.close()
    assert not mounted(s.root) and not s.root.exists()


def test_reclaims_a_previous_instances_leftovers(instance: tuple[Path, Path]) -> None:
    data, base = instance
    crashed = Scratch(data, size_mb=16, base=base)  # never closed: the server died
    leftover = crashed.code / "plaintext.py"
    leftover.write_text("secret")
    again = Scratch(data, size_mb=16, base=base)
    try:
        assert again.root == crashed.root
        assert not leftover.exists()
        assert list(again.code.iterdir()) == []
        with open("/proc/self/mountinfo") as f:  # the old tmpfs was unmounted, not stacked
            assert sum(line.split()[4] == str(again.root) for line in f) == 1
    finally:
        again.close()


def test_remove_tree_never_deletes_through_a_bind_mount(
    instance: tuple[Path, Path], tmp_path: Path
) -> None:
    data, base = instance
    host = tmp_path / "host"
    host.mkdir()
    canary = host / "canary"
    canary.write_text("must survive")
    s = Scratch(data, size_mb=16, base=base)
    try:
        env_dir = s.envs / "env-1"
        (env_dir / "task").mkdir(parents=True)
        (env_dir / "task" / "app.py").write_text("x")
        bind(host, env_dir / "task")
        remove_tree(env_dir)
        assert canary.read_text() == "must survive"
        assert not env_dir.exists()
    finally:
        s.close()


def test_remove_tree_skips_a_mount_it_could_not_unmount(
    instance: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, base = instance
    host = tmp_path / "host"
    host.mkdir()
    canary = host / "canary"
    canary.write_text("must survive")
    s = Scratch(data, size_mb=16, base=base)
    target = s.envs / "env-2" / "opt"
    target.mkdir(parents=True)
    bind(host, target)
    try:
        with monkeypatch.context() as m:
            m.setattr(scratch, "_umount", lambda path: None)  # e.g. EBUSY
            remove_tree(s.envs / "env-2")
        assert canary.read_text() == "must survive"
    finally:
        _libc.umount2(os.fsencode(target), 2)
        s.close()
    assert canary.exists()
