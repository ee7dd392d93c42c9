"""Encrypted artifact store: function code and layer archives at rest.

Artifact keys look like ``code/<function-arn>/<version>/<sha256>`` or ``layer/<arn>/<sha256>``.
They are never used as paths: a key maps to ``<root>/<h[:2]>/<h>.af`` with ``h`` the sha256 of
the key, so no key can climb out of the root or name a special file.

File layout (format 1)::

    magic "LAF1" | u16 key_len | key (utf-8) | u32 aad_len | aad | KeyRing blob

The key and ``aad`` are kept in clear beside the ciphertext so ``rewrap_all`` can re-wrap data
keys without the caller; they are identities (ARN, version, sha256), never secrets, and callers
must not put secrets in ``aad``. Both are bound into the encryption (the key ring sees
``label | key | aad`` as its associated data) and ``get`` also compares them with what the caller
asked for, so every byte of the file is covered: a swapped, moved or edited file fails closed
with ``IntegrityError``.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from pathlib import Path
from typing import Protocol

from lamina.errors import IntegrityError, StoreError
from lamina.store.keys import TMP_PREFIX, KeyRing, fsync_dir, make_private_dir, write_atomically

MAGIC = b"LAF1"
SUFFIX = ".af"
MAX_KEY_BYTES = 4096
MAX_AAD_BYTES = 64 * 1024
_BIND_LABEL = b"lamina/artifact/v1\x00"


class ArtifactStore(Protocol):
    """Immutable-by-key encrypted blobs. Methods block (call them via ``asyncio.to_thread``).

    After a failure: a failed ``put`` leaves the previous artifact under that key (or none) in
    place, never a mixture; a failed ``get``, ``exists`` or ``delete`` changes nothing. Missing
    artifacts raise ``StoreError``; tampered or misbound ones ``IntegrityError``; an invalid key
    (empty, too long, not UTF-8) ``StoreError``.

    After ``close`` (idempotent) every other method raises ``StoreError``; data stays on disk.
    """

    def put(self, key: str, data: bytes, aad: bytes) -> None:
        """Store ``data`` under ``key``, bound to ``aad``; atomic, replaces any previous one."""
        ...

    def get(self, key: str, aad: bytes) -> bytes:
        """The plaintext stored under ``key``; the same ``aad`` as at ``put`` is required."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error."""
        ...

    def exists(self, key: str) -> bool: ...

    def close(self) -> None: ...


def _key_bytes(key: str) -> bytes:
    """Validate an artifact key once, the same way for every implementation."""
    try:
        raw = key.encode("utf-8")
    except (UnicodeEncodeError, AttributeError) as exc:
        raise StoreError("artifact key must be a UTF-8 string") from exc
    if not raw or len(raw) > MAX_KEY_BYTES:
        raise StoreError(f"artifact key must be 1..{MAX_KEY_BYTES} bytes")
    return raw


def _bound_aad(raw_key: bytes, aad: bytes) -> bytes:
    return _BIND_LABEL + struct.pack(">H", len(raw_key)) + raw_key + aad


def _file_header(raw_key: bytes, aad: bytes) -> bytes:
    return MAGIC + struct.pack(">H", len(raw_key)) + raw_key + struct.pack(">I", len(aad)) + aad


def _parse_file(raw: memoryview) -> tuple[bytes, bytes, int]:
    """(key, aad, offset of the key ring blob); IntegrityError if the header is damaged."""
    if bytes(raw[:4]) != MAGIC or len(raw) < 6:
        raise IntegrityError("artifact file has an unknown format")
    (key_len,) = struct.unpack_from(">H", raw, 4)
    aad_len_at = 6 + key_len
    if len(raw) < aad_len_at + 4:
        raise IntegrityError("artifact file is truncated")
    (aad_len,) = struct.unpack_from(">I", raw, aad_len_at)
    blob_at = aad_len_at + 4 + aad_len
    if len(raw) < blob_at:
        raise IntegrityError("artifact file is truncated")
    return bytes(raw[6:aad_len_at]), bytes(raw[aad_len_at + 4 : blob_at]), blob_at


class LocalArtifactStore:
    """``ArtifactStore`` on local disk under ``root`` (dirs 0700, files 0600).

    One process owns ``root``. Writers in that process serialise only the final rename (and
    ``rewrap_all`` its read-modify-write per file), so a re-wrap never resurrects an artifact
    that a concurrent ``put`` or ``delete`` replaced.
    """

    def __init__(self, root: Path, keys: KeyRing) -> None:
        self._root = root
        self._keys = keys
        self._lock = threading.Lock()
        self._closed = False
        try:
            make_private_dir(root)
            self._sweep_temp_files()
        except OSError as exc:
            raise StoreError(f"cannot open artifact store at {root}: {exc}") from exc

    def put(self, key: str, data: bytes, aad: bytes) -> None:
        raw_key = self._check(key)
        if len(aad) > MAX_AAD_BYTES:
            raise StoreError(f"artifact aad must be at most {MAX_AAD_BYTES} bytes")
        sealed = self._keys.seal(data, _bound_aad(raw_key, aad))
        path = self._path(raw_key)
        try:
            make_private_dir(path.parent)
            with self._lock:
                write_atomically(path, [_file_header(raw_key, aad), sealed.header, sealed.body])
        except OSError as exc:
            raise StoreError(f"cannot write artifact {key!r}: {exc}") from exc

    def get(self, key: str, aad: bytes) -> bytes:
        raw_key = self._check(key)
        raw = memoryview(self._read(key, self._path(raw_key)))
        stored_key, stored_aad, blob_at = _parse_file(raw)
        if stored_key != raw_key or stored_aad != aad:
            raise IntegrityError(f"artifact file for {key!r} is bound to another identity")
        return self._keys.decrypt(raw[blob_at:], _bound_aad(raw_key, aad))

    def delete(self, key: str) -> None:
        path = self._path(self._check(key))
        try:
            with self._lock:
                path.unlink(missing_ok=True)
            if path.parent.exists():
                fsync_dir(path.parent)
        except OSError as exc:
            raise StoreError(f"cannot delete artifact {key!r}: {exc}") from exc

    def exists(self, key: str) -> bool:
        path = self._path(self._check(key))
        try:
            path.stat()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot stat artifact {key!r}: {exc}") from exc
        return True

    def close(self) -> None:
        self._closed = True

    def rewrap_all(self) -> int:
        """Re-wrap every artifact's data key under the current master key; returns how many.

        Artifacts already under the current key are skipped, so a run that stopped on an error
        can simply be repeated. The first artifact that fails to open raises (``IntegrityError``
        or ``StoreError``) and the old master key must then be kept.
        """
        self._check_open()
        count = 0
        try:
            paths = sorted(self._root.glob(f"??/*{SUFFIX}"))
        except OSError as exc:
            raise StoreError(f"cannot list artifacts under {self._root}: {exc}") from exc
        for path in paths:
            if self._rewrap_one(path):
                count += 1
        return count

    def _rewrap_one(self, path: Path) -> bool:
        with self._lock:
            try:
                raw = memoryview(path.read_bytes())
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise StoreError(f"cannot read artifact file {path.name}: {exc}") from exc
            stored_key, stored_aad, blob_at = _parse_file(raw)
            if self._path(stored_key) != path:
                raise IntegrityError(f"artifact file {path.name} is stored under another key")
            blob = raw[blob_at:]
            if self._keys.key_id_of(blob) == self._keys.current_key_id:
                return False
            header, body_at = self._keys.rewrap_header(blob, _bound_aad(stored_key, stored_aad))
            try:
                write_atomically(path, [raw[:blob_at], header, blob[body_at:]])
            except OSError as exc:
                raise StoreError(f"cannot rewrite artifact file {path.name}: {exc}") from exc
            return True

    def _check(self, key: str) -> bytes:
        self._check_open()
        return _key_bytes(key)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("artifact store is closed")

    def _path(self, raw_key: bytes) -> Path:
        digest = hashlib.sha256(raw_key).hexdigest()
        return self._root / digest[:2] / f"{digest}{SUFFIX}"

    @staticmethod
    def _read(key: str, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(f"artifact not found: {key!r}") from exc
        except OSError as exc:
            raise StoreError(f"cannot read artifact {key!r}: {exc}") from exc

    def _sweep_temp_files(self) -> None:
        """Remove temp files a crash left mid-write; they were never visible as artifacts."""
        for tmp in self._root.glob(f"??/{TMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)


class MemoryArtifactStore:
    """In-memory ``ArtifactStore`` with the same semantics, for other components' unit tests.

    Nothing is encrypted; a wrong ``aad`` still raises ``IntegrityError``, and ``tamper`` makes
    an artifact fail the way a damaged file would, so callers can test their fail-closed paths.
    """

    def __init__(self) -> None:
        self._items: dict[str, tuple[bytes, bytes]] = {}
        self._tampered: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    def put(self, key: str, data: bytes, aad: bytes) -> None:
        self._check(key)
        if len(aad) > MAX_AAD_BYTES:
            raise StoreError(f"artifact aad must be at most {MAX_AAD_BYTES} bytes")
        with self._lock:
            self._items[key] = (bytes(data), bytes(aad))
            self._tampered.discard(key)

    def get(self, key: str, aad: bytes) -> bytes:
        self._check(key)
        with self._lock:
            item = self._items.get(key)
            tampered = key in self._tampered
        if item is None:
            raise StoreError(f"artifact not found: {key!r}")
        if tampered or item[1] != aad:
            raise IntegrityError(f"artifact {key!r} failed authentication")
        return item[0]

    def delete(self, key: str) -> None:
        self._check(key)
        with self._lock:
            self._items.pop(key, None)
            self._tampered.discard(key)

    def exists(self, key: str) -> bool:
        self._check(key)
        return key in self._items

    def close(self) -> None:
        self._closed = True

    def tamper(self, key: str) -> None:
        """Make the next ``get`` of ``key`` fail as if its ciphertext had been altered."""
        with self._lock:
            if key not in self._items:
                raise StoreError(f"artifact not found: {key!r}")
            self._tampered.add(key)

    def _check(self, key: str) -> None:
        if self._closed:
            raise StoreError("artifact store is closed")
        _key_bytes(key)
