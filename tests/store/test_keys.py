"""KeyRing: envelope encryption, fail-closed decryption, rotation, key files on disk."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from lamina.errors import IntegrityError, StoreError
from lamina.store.keys import (
    KEY_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    WRAPPED_BYTES,
    KeyRing,
)

AAD = b"arn:aws:lambda:us-east-1:000000000000:function:f|1|" + b"a" * 64
OTHER_AAD = b"arn:aws:lambda:us-east-1:000000000000:function:g|1|" + b"b" * 64


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _flip(blob: bytes, index: int) -> bytes:
    out = bytearray(blob)
    out[index] ^= 0x01
    return bytes(out)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def ring(keys_dir: Path) -> KeyRing:
    return KeyRing.load_or_create(keys_dir)


def test_round_trip(ring: KeyRing) -> None:
    for plaintext in (b"", b"x", os.urandom(100_000)):
        assert ring.decrypt(ring.encrypt(plaintext, AAD), AAD) == plaintext


def test_blob_layout_is_self_describing(ring: KeyRing) -> None:
    blob = ring.encrypt(b"hello", AAD)
    key_id = ring.current_key_id.encode()
    assert blob[0] == 1
    assert blob[1] == len(key_id)
    assert blob[2 : 2 + len(key_id)] == key_id
    overhead = 2 + len(key_id) + NONCE_BYTES + WRAPPED_BYTES + NONCE_BYTES + TAG_BYTES
    assert len(blob) == overhead + len(b"hello")
    assert ring.key_id_of(blob) == ring.current_key_id


def test_every_call_uses_fresh_data_key_and_nonces(ring: KeyRing) -> None:
    first, second = ring.encrypt(b"same", AAD), ring.encrypt(b"same", AAD)
    id_end = 2 + first[1]
    assert first[id_end:] != second[id_end:]
    wrapped = slice(id_end + NONCE_BYTES, id_end + NONCE_BYTES + WRAPPED_BYTES)
    assert first[wrapped] != second[wrapped]


def test_flipping_any_byte_fails_closed(ring: KeyRing) -> None:
    blob = ring.encrypt(b"secret body bytes", AAD)
    survivors = []
    for index in range(len(blob)):
        try:
            ring.decrypt(_flip(blob, index), AAD)
        except IntegrityError:
            continue
        survivors.append(index)
    assert survivors == []


@pytest.mark.parametrize(
    "region",
    ["version", "id_len", "key_id", "wrap_nonce", "wrapped_key", "data_nonce", "body", "tag"],
)
def test_each_region_tampered_fails_closed(ring: KeyRing, region: str) -> None:
    blob = ring.encrypt(b"secret body bytes", AAD)
    id_end = 2 + blob[1]
    offsets = {
        "version": 0,
        "id_len": 1,
        "key_id": 2,
        "wrap_nonce": id_end,
        "wrapped_key": id_end + NONCE_BYTES,
        "data_nonce": id_end + NONCE_BYTES + WRAPPED_BYTES,
        "body": id_end + 2 * NONCE_BYTES + WRAPPED_BYTES,
        "tag": len(blob) - 1,
    }
    with pytest.raises(IntegrityError):
        ring.decrypt(_flip(blob, offsets[region]), AAD)


def test_truncated_or_extended_blob_fails_closed(ring: KeyRing) -> None:
    blob = ring.encrypt(b"payload", AAD)
    for length in range(len(blob)):
        with pytest.raises(IntegrityError):
            ring.decrypt(blob[:length], AAD)
    with pytest.raises(IntegrityError):
        ring.decrypt(blob + b"\x00", AAD)


def test_wrong_aad_fails_closed(ring: KeyRing) -> None:
    blob = ring.encrypt(b"payload", AAD)
    for aad in (OTHER_AAD, b"", AAD + b"x", AAD[:-1]):
        with pytest.raises(IntegrityError):
            ring.decrypt(blob, aad)


def test_swapped_ciphertexts_fail_closed(ring: KeyRing) -> None:
    blob_f, blob_g = ring.encrypt(b"code of f", AAD), ring.encrypt(b"code of g", OTHER_AAD)
    with pytest.raises(IntegrityError):
        ring.decrypt(blob_g, AAD)
    with pytest.raises(IntegrityError):
        ring.decrypt(blob_f, OTHER_AAD)


def test_grafted_wrapped_key_fails_closed(ring: KeyRing) -> None:
    blob_a, blob_b = ring.encrypt(b"a" * 32, AAD), ring.encrypt(b"b" * 32, AAD)
    header_end = 2 + blob_a[1] + 2 * NONCE_BYTES + WRAPPED_BYTES
    with pytest.raises(IntegrityError):
        ring.decrypt(blob_a[:header_end] + blob_b[header_end:], AAD)


def test_unknown_master_key_fails_closed(tmp_path: Path, ring: KeyRing) -> None:
    stranger = KeyRing.load_or_create(tmp_path / "other-keys")
    with pytest.raises(IntegrityError, match="unknown master key"):
        ring.decrypt(stranger.encrypt(b"payload", AAD), AAD)


def test_rotation_keeps_old_blobs_readable(ring: KeyRing) -> None:
    old_id = ring.current_key_id
    old_blob = ring.encrypt(b"old", AAD)
    new_id = ring.rotate()
    assert new_id == ring.current_key_id != old_id
    assert ring.key_ids == {old_id, new_id}
    new_blob = ring.encrypt(b"new", AAD)
    assert ring.key_id_of(new_blob) == new_id
    assert ring.decrypt(old_blob, AAD) == b"old"
    assert ring.decrypt(new_blob, AAD) == b"new"


def test_rewrap_moves_data_key_and_keeps_ciphertext(ring: KeyRing) -> None:
    old_blob = ring.encrypt(b"payload", AAD)
    new_id = ring.rotate()
    rewrapped = ring.rewrap(old_blob, AAD)
    assert ring.key_id_of(rewrapped) == new_id

    def data_part(blob: bytes) -> bytes:  # data nonce, body and tag: what rewrap must not touch
        return blob[2 + blob[1] + NONCE_BYTES + WRAPPED_BYTES :]

    assert data_part(rewrapped) == data_part(old_blob)
    assert (
        rewrapped[: 2 + rewrapped[1] + NONCE_BYTES + WRAPPED_BYTES]
        != old_blob[: 2 + old_blob[1] + NONCE_BYTES + WRAPPED_BYTES]
    )
    assert ring.decrypt(rewrapped, AAD) == b"payload"
    with pytest.raises(IntegrityError):
        ring.rewrap(old_blob, OTHER_AAD)


def test_rewrapped_blob_survives_deleting_old_key(keys_dir: Path, ring: KeyRing) -> None:
    old_id = ring.current_key_id
    kept, rewrapped = ring.encrypt(b"kept", AAD), ring.encrypt(b"moved", AAD)
    ring.rotate()
    rewrapped = ring.rewrap(rewrapped, AAD)
    (keys_dir / f"{old_id}.key").unlink()
    reloaded = KeyRing.load_or_create(keys_dir)
    assert old_id not in reloaded.key_ids
    assert reloaded.decrypt(rewrapped, AAD) == b"moved"
    with pytest.raises(IntegrityError):
        reloaded.decrypt(kept, AAD)


def test_reload_reads_same_keys_and_current(keys_dir: Path, ring: KeyRing) -> None:
    blob = ring.encrypt(b"payload", AAD)
    ring.rotate()
    reloaded = KeyRing.load_or_create(keys_dir)
    assert reloaded.current_key_id == ring.current_key_id
    assert reloaded.key_ids == ring.key_ids
    assert reloaded.decrypt(blob, AAD) == b"payload"
    assert ring.decrypt(reloaded.encrypt(b"back", AAD), AAD) == b"back"


def test_permissions_even_with_permissive_umask(keys_dir: Path) -> None:
    keys_dir.mkdir(mode=0o755)
    os.chmod(keys_dir, 0o755)
    old_umask = os.umask(0)
    try:
        ring = KeyRing.load_or_create(keys_dir)
        ring.rotate()
    finally:
        os.umask(old_umask)
    assert _mode(keys_dir) == 0o700
    files = list(keys_dir.iterdir())
    assert len(files) == 2
    assert all(_mode(f) == 0o600 for f in files)


def test_loose_key_file_permissions_are_narrowed(keys_dir: Path, ring: KeyRing) -> None:
    key_file = keys_dir / f"{ring.current_key_id}.key"
    os.chmod(key_file, 0o644)
    KeyRing.load_or_create(keys_dir)
    assert _mode(key_file) == 0o600


def test_key_file_is_small_versioned_json(keys_dir: Path, ring: KeyRing) -> None:
    doc = json.loads((keys_dir / f"{ring.current_key_id}.key").read_bytes())
    assert doc["format"] == 1
    assert doc["id"] == ring.current_key_id
    assert doc["generation"] == 1
    assert set(doc) == {"format", "id", "generation", "key", "check"}


def test_partial_and_damaged_key_files_are_skipped(keys_dir: Path, ring: KeyRing) -> None:
    good_id = ring.current_key_id
    blob = ring.encrypt(b"payload", AAD)
    newest = json.loads((keys_dir / f"{good_id}.key").read_bytes())
    newest.update(id="f" * 16, generation=99)
    text = json.dumps(newest).encode()
    (keys_dir / f"{'f' * 16}.key").write_bytes(text[: len(text) // 2])  # half written
    newest.update(id="e" * 16, check="0" * 16)  # bit rot: key no longer matches its check
    (keys_dir / f"{'e' * 16}.key").write_bytes(json.dumps(newest).encode())
    (keys_dir / ".tmp-abc").write_bytes(b"{")
    (keys_dir / "README").write_bytes(b"not a key")
    (keys_dir / f"{'d' * 16}.key").mkdir()
    reloaded = KeyRing.load_or_create(keys_dir)
    assert reloaded.current_key_id == good_id
    assert reloaded.key_ids == {good_id}
    assert reloaded.decrypt(blob, AAD) == b"payload"


def test_only_damaged_key_files_gives_a_fresh_key(keys_dir: Path) -> None:
    keys_dir.mkdir()
    (keys_dir / f"{'a' * 16}.key").write_bytes(b'{"format": 1, "id": "aaaa')
    ring = KeyRing.load_or_create(keys_dir)
    assert ring.current_key_id != "a" * 16
    assert ring.decrypt(ring.encrypt(b"x", AAD), AAD) == b"x"


def test_master_key_never_appears_in_blobs(keys_dir: Path, ring: KeyRing) -> None:
    import base64

    doc = json.loads((keys_dir / f"{ring.current_key_id}.key").read_bytes())
    secret = base64.b64decode(doc["key"])
    assert len(secret) == KEY_BYTES
    assert secret not in ring.encrypt(b"\x00" * 4096, AAD)


def test_unusable_keys_dir_is_a_store_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "keys"
    not_a_dir.write_bytes(b"")
    with pytest.raises(StoreError):
        KeyRing.load_or_create(not_a_dir)


def test_ring_picks_up_a_key_rotated_by_another_process(tmp_path: Path) -> None:
    server_ring = KeyRing.load_or_create(tmp_path / "keys")
    cli_ring = KeyRing.load_or_create(tmp_path / "keys")  # `lamina keys rotate` in another process
    new_id = cli_ring.rotate()
    blob = cli_ring.encrypt(b"rotated", b"aad")
    assert server_ring.decrypt(blob, b"aad") == b"rotated"
    assert server_ring.current_key_id == new_id
