"""Artifact stores: the shared contract on both implementations, then the on-disk specifics."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.errors import IntegrityError, StoreError
from lamina.store.artifacts import ArtifactStore, LocalArtifactStore, MemoryArtifactStore
from lamina.store.keys import KeyRing

ARN_F = "arn:aws:lambda:us-east-1:000000000000:function:f"
ARN_G = "arn:aws:lambda:us-east-1:000000000000:function:g"
KEY_F = f"code/{ARN_F}/1/{'a' * 64}"
KEY_G = f"code/{ARN_G}/1/{'b' * 64}"
AAD_F = f"{ARN_F}|1|{'a' * 64}".encode()
AAD_G = f"{ARN_G}|1|{'b' * 64}".encode()
MARKER = b"LAMINA-PLAINTEXT-MARKER-7f3c"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    return KeyRing.load_or_create(tmp_path / "keys")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def local(root: Path, keys: KeyRing) -> LocalArtifactStore:
    return LocalArtifactStore(root, keys)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    impl: ArtifactStore
    if request.param == "local":
        impl = LocalArtifactStore(tmp_path / "artifacts", KeyRing.load_or_create(tmp_path / "k"))
    else:
        impl = MemoryArtifactStore()
    yield impl
    impl.close()


# --- the contract, on both implementations --------------------------------------------------


def test_round_trip_and_replace(store: ArtifactStore) -> None:
    assert not store.exists(KEY_F)
    store.put(KEY_F, b"v1", AAD_F)
    assert store.exists(KEY_F)
    assert store.get(KEY_F, AAD_F) == b"v1"
    store.put(KEY_F, b"", AAD_F)
    assert store.get(KEY_F, AAD_F) == b""


def test_missing_artifact_is_store_error(store: ArtifactStore) -> None:
    with pytest.raises(StoreError) as info:
        store.get(KEY_F, AAD_F)
    assert not isinstance(info.value, IntegrityError)


def test_wrong_aad_is_integrity_error(store: ArtifactStore) -> None:
    store.put(KEY_F, b"code", AAD_F)
    for aad in (AAD_G, b"", AAD_F + b"x"):
        with pytest.raises(IntegrityError):
            store.get(KEY_F, aad)


def test_delete_is_idempotent(store: ArtifactStore) -> None:
    store.put(KEY_F, b"code", AAD_F)
    store.put(KEY_G, b"other", AAD_G)
    store.delete(KEY_F)
    store.delete(KEY_F)
    assert not store.exists(KEY_F)
    assert store.get(KEY_G, AAD_G) == b"other"
    with pytest.raises(StoreError):
        store.get(KEY_F, AAD_F)


@pytest.mark.parametrize("bad_key", ["", "\ud800", "x" * 5000])
def test_invalid_keys_are_store_errors(store: ArtifactStore, bad_key: str) -> None:
    with pytest.raises(StoreError):
        store.put(bad_key, b"x", AAD_F)
    with pytest.raises(StoreError):
        store.exists(bad_key)


def test_closed_store_refuses_everything(store: ArtifactStore) -> None:
    store.put(KEY_F, b"code", AAD_F)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get(KEY_F, AAD_F)
    with pytest.raises(StoreError, match="closed"):
        store.put(KEY_G, b"x", AAD_G)
    with pytest.raises(StoreError, match="closed"):
        store.exists(KEY_F)
    with pytest.raises(StoreError, match="closed"):
        store.delete(KEY_F)


def test_memory_store_tamper_fails_closed() -> None:
    fake = MemoryArtifactStore()
    fake.put(KEY_F, b"code", AAD_F)
    fake.tamper(KEY_F)
    with pytest.raises(IntegrityError):
        fake.get(KEY_F, AAD_F)
    fake.put(KEY_F, b"fresh", AAD_F)
    assert fake.get(KEY_F, AAD_F) == b"fresh"


# --- on disk ------------------------------------------------------------------------------------


def test_swapped_files_fail_closed(local: LocalArtifactStore, root: Path) -> None:
    local.put(KEY_F, b"code of f", AAD_F)
    local.put(KEY_G, b"code of g", AAD_G)
    path_f, path_g = _files(root)
    data_f, data_g = path_f.read_bytes(), path_g.read_bytes()
    path_f.write_bytes(data_g)
    path_g.write_bytes(data_f)
    with pytest.raises(IntegrityError):
        local.get(KEY_F, AAD_F)
    with pytest.raises(IntegrityError):
        local.get(KEY_G, AAD_G)


def _artifact_path(root: Path, key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return root / digest[:2] / f"{digest}.af"


def test_swap_with_forged_clear_header_fails_closed(local: LocalArtifactStore, root: Path) -> None:
    # The attacker also rewrites the clear key/aad header: only the crypto binding stands.
    local.put(KEY_F, b"code of f", b"same")
    local.put(KEY_G, b"code of g", b"same")
    path_f, path_g = _artifact_path(root, KEY_F), _artifact_path(root, KEY_G)
    header_f = 4 + 2 + len(KEY_F.encode()) + 4 + len(b"same")
    header_g = 4 + 2 + len(KEY_G.encode()) + 4 + len(b"same")
    path_f.write_bytes(path_f.read_bytes()[:header_f] + path_g.read_bytes()[header_g:])
    with pytest.raises(IntegrityError, match="authentication"):
        local.get(KEY_F, b"same")


def test_flipping_any_byte_of_the_file_fails_closed(local: LocalArtifactStore, root: Path) -> None:
    local.put(KEY_F, b"function code", AAD_F)
    (path,) = _files(root)
    original = path.read_bytes()
    survivors = []
    for index in range(len(original)):
        damaged = bytearray(original)
        damaged[index] ^= 0x01
        path.write_bytes(damaged)
        try:
            local.get(KEY_F, AAD_F)
        except IntegrityError:
            continue
        survivors.append(index)
    assert survivors == []
    path.write_bytes(original)
    assert local.get(KEY_F, AAD_F) == b"function code"


def test_truncated_file_fails_closed(local: LocalArtifactStore, root: Path) -> None:
    local.put(KEY_F, b"function code", AAD_F)
    (path,) = _files(root)
    original = path.read_bytes()
    for length in range(len(original)):
        path.write_bytes(original[:length])
        with pytest.raises(IntegrityError):
            local.get(KEY_F, AAD_F)


def test_plaintext_never_on_disk(tmp_path: Path, local: LocalArtifactStore, keys: KeyRing) -> None:
    body = MARKER * 4096
    local.put(KEY_F, body, AAD_F)
    local.put(f"layer/{ARN_G}/{'c' * 64}", MARKER, AAD_G)
    keys.rotate()
    assert local.rewrap_all() == 2
    local.put(KEY_G, body, AAD_G)
    files = _files(tmp_path)
    assert len(files) == 5  # three artifacts and two master keys
    for path in files:
        assert MARKER not in path.read_bytes(), path
    assert local.get(KEY_F, AAD_F) == body


def test_permissions_and_safe_names(tmp_path: Path, root: Path, local: LocalArtifactStore) -> None:
    old_umask = os.umask(0)
    try:
        local.put(KEY_F, b"x", AAD_F)
        local.put("../../../escape", b"y", AAD_G)
        local.put("/etc/passwd", b"z", AAD_G)
    finally:
        os.umask(old_umask)
    assert _mode(root) == 0o700
    files = _files(root)
    assert len(files) == 3
    for path in files:
        assert _mode(path) == 0o600
        assert _mode(path.parent) == 0o700
        assert path.parent.parent == root
        assert re.fullmatch(r"[0-9a-f]{64}\.af", path.name)
        assert path.name.startswith(path.parent.name)
    assert not (tmp_path / "escape").exists()
    assert local.get("../../../escape", AAD_G) == b"y"


def test_rotation_rewrap_all_and_old_key_removal(
    tmp_path: Path, root: Path, local: LocalArtifactStore, keys: KeyRing
) -> None:
    old_id = keys.current_key_id
    local.put(KEY_F, b"before rotation", AAD_F)
    keys.rotate()
    local.put(KEY_G, b"after rotation", AAD_G)
    assert local.get(KEY_F, AAD_F) == b"before rotation"
    assert local.rewrap_all() == 1
    assert local.rewrap_all() == 0
    (tmp_path / "keys" / f"{old_id}.key").unlink()
    reopened = LocalArtifactStore(root, KeyRing.load_or_create(tmp_path / "keys"))
    assert reopened.get(KEY_F, AAD_F) == b"before rotation"
    assert reopened.get(KEY_G, AAD_G) == b"after rotation"


def test_deleting_old_key_without_rewrap_fails_closed(
    tmp_path: Path, root: Path, local: LocalArtifactStore, keys: KeyRing
) -> None:
    old_id = keys.current_key_id
    local.put(KEY_F, b"before rotation", AAD_F)
    keys.rotate()
    (tmp_path / "keys" / f"{old_id}.key").unlink()
    reopened = LocalArtifactStore(root, KeyRing.load_or_create(tmp_path / "keys"))
    with pytest.raises(IntegrityError):
        reopened.get(KEY_F, AAD_F)


def test_rewrap_all_stops_on_tampered_artifact(
    root: Path, local: LocalArtifactStore, keys: KeyRing
) -> None:
    local.put(KEY_F, b"code", AAD_F)
    keys.rotate()
    (path,) = _files(root)
    damaged = bytearray(path.read_bytes())
    damaged[-40] ^= 0x01  # inside the wrapped data key region of the key ring blob
    path.write_bytes(damaged)
    with pytest.raises(IntegrityError):
        local.rewrap_all()


def test_reload_from_disk(tmp_path: Path, root: Path, local: LocalArtifactStore) -> None:
    local.put(KEY_F, b"persisted", AAD_F)
    reopened = LocalArtifactStore(root, KeyRing.load_or_create(tmp_path / "keys"))
    assert reopened.exists(KEY_F)
    assert reopened.get(KEY_F, AAD_F) == b"persisted"


def test_failed_put_keeps_previous_artifact(
    monkeypatch: pytest.MonkeyPatch, root: Path, local: LocalArtifactStore
) -> None:
    local.put(KEY_F, b"old", AAD_F)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(StoreError, match="cannot write"):
        local.put(KEY_F, b"new", AAD_F)
    monkeypatch.undo()
    assert local.get(KEY_F, AAD_F) == b"old"
    assert len(_files(root)) == 1


def test_leftover_temp_files_are_swept(
    root: Path, keys: KeyRing, local: LocalArtifactStore
) -> None:
    local.put(KEY_F, b"code", AAD_F)
    (path,) = _files(root)
    leftover = path.parent / ".tmp-crashed"
    leftover.write_bytes(b"partial")
    LocalArtifactStore(root, keys)
    assert not leftover.exists()
    assert _files(root) == [path]


def test_large_body_round_trip(local: LocalArtifactStore) -> None:
    body = os.urandom(1024) * (70 * 1024)  # 70 MiB, the largest control-plane body
    local.put(KEY_F, body, AAD_F)
    assert local.get(KEY_F, AAD_F) == body
