"""cgroups: v2 logic against a fake tree (this host has no usable v2), v1 on the real host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lamina.errors import SandboxError
from lamina.sandbox import cgroups


def _fake_v2(root: Path) -> Path:
    root.mkdir(exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def _kernel_files(group: Path) -> None:
    """What the kernel would create in a new v2 group."""
    for name in ("memory.swap.max", "cgroup.kill", "memory.peak", "cgroup.procs"):
        (group / name).write_text("")


def test_limits_are_proportional_to_memory() -> None:
    assert cgroups.limits_for(1769, 1024).cpu_quota_us == 100_000
    assert cgroups.limits_for(3538, 1024).cpu_quota_us == 200_000
    assert cgroups.limits_for(128, 64) == cgroups.Limits(128 << 20, 64, 7235)
    assert cgroups.limits_for(1, 64).cpu_quota_us == 1000  # the kernel's minimum


def test_detects_v2_only_with_the_memory_controller(tmp_path: Path) -> None:
    root = _fake_v2(tmp_path / "cg")
    assert cgroups.detect(root).version == 2
    (root / "cgroup.controllers").write_text("cpu pids\n")
    with pytest.raises(SandboxError, match="cgroup detect"):
        cgroups.detect(root)


def test_detects_v1(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cgroups.detect(tmp_path).version == 1


def test_v2_prepare_delegates_controllers_and_create_writes_limits(tmp_path: Path) -> None:
    root = _fake_v2(tmp_path / "cg")
    hierarchy = cgroups.detect(root, "lamina")
    hierarchy.prepare()
    assert (root / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (root / "lamina" / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    # A group that already exists (a stale one, not reclaimed) is an error, never reused.
    (root / "lamina" / "env-1").mkdir()
    group = hierarchy.group("env-1")
    with pytest.raises(SandboxError, match="cgroup create"):
        group.create(cgroups.limits_for(512, 100))


def test_v2_limits_usage_kill_and_reclaim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_v2(tmp_path / "cg")
    hierarchy = cgroups.detect(root, "lamina")
    hierarchy.prepare()
    group = hierarchy.group("env-1")
    path = root / "lamina" / "env-1"
    real_mkdir = Path.mkdir

    def kernel_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        if self == path:
            _kernel_files(path)

    monkeypatch.setattr(Path, "mkdir", kernel_mkdir)
    group.create(cgroups.limits_for(512, 100))
    files = {p.name: p.read_text() for p in path.iterdir()}
    assert files["memory.max"] == str(512 << 20)
    assert files["memory.swap.max"] == "0"
    assert files["memory.oom.group"] == "1"
    assert files["pids.max"] == "100"
    assert files["cpu.max"] == "28942 100000"

    group.add(4242)
    assert (path / "cgroup.procs").read_text() == "4242"

    (path / "cgroup.procs").write_text("")
    (path / "memory.peak").write_text("123456\n")
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (path / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
    assert group.usage() == cgroups.Usage(123456, True, 2_500_000)

    group.kill_all()
    assert (path / "cgroup.kill").read_text() == "1"

    assert hierarchy.leftovers() == ["env-1"]
    # On cgroupfs the interface files vanish with the rmdir.
    real_rmdir = os.rmdir

    def cgroupfs_rmdir(target: Path) -> None:
        for f in Path(target).iterdir():
            f.unlink()
        real_rmdir(target)

    monkeypatch.setattr(os, "rmdir", cgroupfs_rmdir)
    assert hierarchy.reclaim() == 1
    assert not path.exists()
    assert hierarchy.leftovers() == []


def test_v2_freezes_when_cgroup_kill_is_missing(tmp_path: Path) -> None:
    group = cgroups.CgroupV2({"unified": tmp_path})
    (tmp_path / "cgroup.procs").write_text("")
    group.kill_all()
    assert (tmp_path / "cgroup.freeze").read_text() == "0"


@pytest.mark.root
def test_v1_on_this_host(tmp_path: Path) -> None:
    if not Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() or os.geteuid():
        pytest.skip("needs root and cgroup v1")
    hierarchy = cgroups.detect(name="lamina-unit")
    hierarchy.prepare()
    group = hierarchy.group("v1-check")
    group.create(cgroups.limits_for(100, 10))
    try:
        mem = hierarchy.parents()["memory"] / "v1-check"
        assert int((mem / "memory.limit_in_bytes").read_text()) == 100 << 20
        pids = hierarchy.parents()["pids"] / "v1-check"
        assert (pids / "pids.max").read_text().strip() == "10"
        assert group.usage().oom_killed is False
    finally:
        group.remove()
    assert hierarchy.leftovers() == []
    for parent in hierarchy.parents().values():
        parent.rmdir()
