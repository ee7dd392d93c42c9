"""The bind list, checked as data (no sandbox needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.errors import SandboxError
from lamina.sandbox import rootfs
from lamina.sandbox.driver import SandboxSpec


def _spec(tmp_path: Path, **kw: object) -> SandboxSpec:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    values: dict[str, object] = dict(
        env_id="e", argv=["/bin/true"], env={}, code_dir=code, opt_dir=None, runtime_binds=[],
        memory_mb=128, tmp_mb=7, stdout_fd=1, stderr_fd=2,
    )  # fmt: skip
    values.update(kw)
    return SandboxSpec(**values)  # type: ignore[arg-type]


def _pairs(args: list[str]) -> list[tuple[str, ...]]:
    """Split bwrap arguments into (option, operands...) tuples."""
    arity = {"--ro-bind": 2, "--ro-bind-try": 2, "--dev-bind": 2, "--symlink": 2, "--dir": 1,
             "--proc": 1, "--tmpfs": 1, "--remount-ro": 1, "--perms": 1, "--size": 1,
             "--chdir": 1}  # fmt: skip
    out, i = [], 0
    while i < len(args):
        n = arity[args[i]]
        out.append(tuple(args[i : i + n + 1]))
        i += n + 1
    return out


@pytest.fixture
def reachable_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(rootfs, "reachable", lambda path, uid, gid: True)
    return tmp_path


def test_bind_list_order_and_content(reachable_tmp: Path) -> None:
    spec = _spec(reachable_tmp)
    ops = _pairs(rootfs.mount_args(spec, Path("/state/etc"), [(Path("/py"), "/var/lang")]))
    assert ops[0] == ("--ro-bind", "/usr", "/usr")
    assert ("--ro-bind", "/py", "/var/lang") in ops
    assert ("--ro-bind", str(spec.code_dir), "/var/task") in ops
    assert ("--dir", "/opt") in ops
    assert ("--ro-bind", "/state/etc/passwd", "/etc/passwd") in ops
    devs = [op[2] for op in ops if op[0] == "--dev-bind"]
    assert devs == [f"/dev/{d}" for d in ("null", "zero", "full", "random", "urandom")]
    tmp_at = ops.index(("--tmpfs", "/tmp"))
    assert ops[tmp_at - 2 : tmp_at] == [("--perms", "1777"), ("--size", str(7 << 20))]
    assert ops[-2:] == [("--remount-ro", "/"), ("--chdir", "/var/task")]
    # Only host paths named here: nothing of /root, /home, the data dir or /etc/shadow.
    sources = {op[1] for op in ops if op[0].startswith(("--ro-bind", "--dev-bind"))}
    assert not any(s.startswith(("/root", "/home", "/var/lib", "/etc/shadow")) for s in sources)


def test_opt_dir_is_bound_when_given(reachable_tmp: Path) -> None:
    layers = reachable_tmp / "layers"
    ops = _pairs(rootfs.mount_args(_spec(reachable_tmp, opt_dir=layers), Path("/e"), []))
    assert ("--ro-bind", str(layers), "/opt") in ops


def test_unreachable_code_dir_is_refused(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "code").mkdir()
    spec = _spec(tmp_path, code_dir=private / "code")
    with pytest.raises(SandboxError, match="not reachable by uid 993"):
        rootfs.mount_args(spec, Path("/e"), [])


def test_reachable_checks_every_ancestor(tmp_path: Path) -> None:
    outer = tmp_path / "a"
    (outer / "b").mkdir(parents=True)
    tmp_path.chmod(0o755)
    outer.chmod(0o711)
    assert rootfs.reachable(outer / "b", 993, 990) == rootfs.reachable(tmp_path, 993, 990)
    outer.chmod(0o700)
    assert not rootfs.reachable(outer / "b", 993, 990)
    assert not rootfs.reachable(Path("/root/.pyenv"), 993, 990)
    assert rootfs.reachable(Path("/usr/bin"), 993, 990)


def test_etc_files_name_the_sandbox_user(tmp_path: Path) -> None:
    etc = rootfs.write_etc(tmp_path, 993, 990)
    assert (etc / "passwd").read_text().startswith("sbx_user1051:x:993:990:")
    assert "sbx_user1051:x:990:" in (etc / "group").read_text()
    assert not (etc / "shadow").exists()
