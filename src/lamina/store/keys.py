"""Master keys on disk and envelope encryption under them.

Every ``encrypt`` call draws a fresh 256-bit data key, seals the plaintext with it (AES-256-GCM)
and wraps the data key under the current master key (AES-256-GCM again). The caller's ``aad``
names what the plaintext *is* (function ARN, version, sha256); it is bound into both layers, so
a blob moved to another identity, or a wrapped key grafted onto another blob, fails closed.

Rotation adds a master key and makes it current; older keys stay for decryption until every
blob has been re-wrapped (``rewrap``), which touches only the small wrapped key, never the body.

Blob layout (format 1), all lengths fixed except the key id::

    version(1) | id_len(1) | key_id | wrap_nonce(12) | wrapped_key(32+16) | data_nonce(12) | body+tag

Key file layout: ``<keys_dir>/<key_id>.key``, mode 0600, one JSON object
``{"format": 1, "id", "generation", "key": base64, "check": hex}``. ``check`` is an HMAC of a
fixed label under the key, so a damaged or half-written file is recognised and skipped rather
than used. The key with the highest generation is current. One process owns the directory:
rotation in another process is not seen until the next load.

Every OS error is translated to ``StoreError`` and every decryption failure to
``IntegrityError`` here, at this module's seam.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lamina.errors import IntegrityError, StoreError

log = logging.getLogger(__name__)

BLOB_VERSION = 1
KEY_FILE_FORMAT = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
WRAPPED_BYTES = KEY_BYTES + TAG_BYTES
KEY_SUFFIX = ".key"
TMP_PREFIX = ".tmp-"
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_CHECK_LABEL = b"lamina master key check v1"
_WRAP_LABEL = b"lamina/keys/wrap/v1\x00"
_DATA_LABEL = b"lamina/keys/data/v1\x00"


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    generation: int
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class Sealed:
    """A blob kept in two parts so a large body is never copied just to prepend its header."""

    header: bytes
    body: bytes


@dataclass(frozen=True)
class _Header:
    key_id: str
    wrap_nonce: bytes
    wrapped_key: bytes
    data_nonce: bytes
    size: int


# --- filesystem helpers (also used by the artifact store) -------------------------------------


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and force mode 0700: a umask may only narrow, never fix."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, chunks: Iterable[bytes | memoryview], mode: int = 0o600) -> None:
    """Write ``chunks`` to ``path`` so readers see the old file or the whole new one, never part.

    Temp file in the same directory, fsync, rename over the target, fsync the directory. Raises
    OSError; callers translate it at their own seam.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


# --- key files ----------------------------------------------------------------------------------


def _check_value(secret: bytes) -> str:
    return hmac.new(secret, _CHECK_LABEL, hashlib.sha256).hexdigest()[:16]


def _new_key(generation: int) -> MasterKey:
    return MasterKey(secrets.token_hex(8), generation, secrets.token_bytes(KEY_BYTES))


def _encode_key_file(key: MasterKey) -> bytes:
    doc = {
        "format": KEY_FILE_FORMAT,
        "id": key.key_id,
        "generation": key.generation,
        "key": base64.b64encode(key.secret).decode("ascii"),
        "check": _check_value(key.secret),
    }
    return json.dumps(doc, sort_keys=True).encode("ascii") + b"\n"


def _decode_key_file(path: Path, raw: bytes) -> MasterKey:
    """Parse one key file; ValueError for anything damaged, truncated or inconsistent."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("format") != KEY_FILE_FORMAT:
            raise ValueError("unknown key file format")
        key_id, generation = doc["id"], doc["generation"]
        secret = base64.b64decode(doc["key"], validate=True)
        check = doc["check"]
    except (KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed key file: {exc!r}") from exc
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id) or path.stem != key_id:
        raise ValueError("key id does not match the file name")
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
        raise ValueError("bad generation")
    if len(secret) != KEY_BYTES or not isinstance(check, str):
        raise ValueError("bad key length")
    if not hmac.compare_digest(check, _check_value(secret)):
        raise ValueError("key check value mismatch")
    return MasterKey(key_id, generation, secret)


def _read_keys(keys_dir: Path) -> dict[str, MasterKey]:
    """Every usable key in ``keys_dir``; half-written or damaged files are logged and skipped."""
    keys: dict[str, MasterKey] = {}
    for path in sorted(keys_dir.iterdir()):
        if path.name.startswith(TMP_PREFIX) or path.suffix != KEY_SUFFIX or not path.is_file():
            continue
        if path.stat().st_mode & 0o077:
            log.warning("key file %s was readable by others; narrowing to 0600", path)
            os.chmod(path, 0o600)
        try:
            key = _decode_key_file(path, path.read_bytes())
        except ValueError as exc:
            log.warning("skipping unusable master key file %s: %s", path, exc)
            continue
        keys[key.key_id] = key
    return keys


def _newest(keys: dict[str, MasterKey]) -> MasterKey:
    return max(keys.values(), key=lambda k: (k.generation, k.key_id))


# --- blob format --------------------------------------------------------------------------------


def _wrap_aad(key_id: str, aad: bytes) -> bytes:
    kid = key_id.encode("ascii")
    return _WRAP_LABEL + bytes([BLOB_VERSION, len(kid)]) + kid + aad


def _data_aad(aad: bytes) -> bytes:
    return _DATA_LABEL + bytes([BLOB_VERSION]) + aad


def _header_bytes(key_id: str, wrap_nonce: bytes, wrapped: bytes, data_nonce: bytes) -> bytes:
    kid = key_id.encode("ascii")
    return bytes([BLOB_VERSION, len(kid)]) + kid + wrap_nonce + wrapped + data_nonce


def _parse_header(blob: memoryview) -> _Header:
    if len(blob) < 2 or blob[0] != BLOB_VERSION:
        raise IntegrityError("unsupported or truncated encrypted blob")
    id_end = 2 + blob[1]
    end = id_end + NONCE_BYTES + WRAPPED_BYTES + NONCE_BYTES
    if len(blob) < end + TAG_BYTES:
        raise IntegrityError("truncated encrypted blob")
    try:
        key_id = bytes(blob[2:id_end]).decode("ascii")
    except UnicodeDecodeError as exc:
        raise IntegrityError("malformed master key id in blob") from exc
    wrapped_at = id_end + NONCE_BYTES
    nonce_at = wrapped_at + WRAPPED_BYTES
    return _Header(
        key_id=key_id,
        wrap_nonce=bytes(blob[id_end:wrapped_at]),
        wrapped_key=bytes(blob[wrapped_at:nonce_at]),
        data_nonce=bytes(blob[nonce_at:end]),
        size=end,
    )


class KeyRing:
    """Master keys in a directory (0700, each key file 0600): one current, older ones kept to decrypt.

    Thread-safe: rotation swaps the current key under a lock; encrypt/decrypt read a snapshot.
    """

    def __init__(self, keys_dir: Path, keys: dict[str, MasterKey]) -> None:
        if not keys:
            raise StoreError("a key ring needs at least one master key")
        self._dir = keys_dir
        self._keys = dict(keys)
        self._current = _newest(self._keys)
        self._lock = threading.Lock()

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> KeyRing:
        """Read every usable key in ``keys_dir``; create the directory and a first key if none."""
        try:
            make_private_dir(keys_dir)
            keys = _read_keys(keys_dir)
            if not keys:
                first = _new_key(generation=1)
                write_atomically(
                    keys_dir / f"{first.key_id}{KEY_SUFFIX}", [_encode_key_file(first)]
                )
                keys = {first.key_id: first}
        except OSError as exc:
            raise StoreError(f"cannot load master keys from {keys_dir}: {exc}") from exc
        return cls(keys_dir, keys)

    @property
    def current_key_id(self) -> str:
        return self._current.key_id

    @property
    def key_ids(self) -> frozenset[str]:
        """Ids of every key this ring can decrypt with."""
        return frozenset(self._keys)

    def rotate(self) -> str:
        """Create a new current master key on disk and return its id; old keys stay usable."""
        with self._lock:
            key = _new_key(generation=self._current.generation + 1)
            try:
                write_atomically(self._dir / f"{key.key_id}{KEY_SUFFIX}", [_encode_key_file(key)])
            except OSError as exc:
                raise StoreError(f"cannot write master key to {self._dir}: {exc}") from exc
            self._keys = {**self._keys, key.key_id: key}
            self._current = key
            return key.key_id

    def seal(self, plaintext: bytes, aad: bytes) -> Sealed:
        """Encrypt under a fresh data key; header and body apart, so writers need no join."""
        master = self._current
        data_key = secrets.token_bytes(KEY_BYTES)
        wrap_nonce = secrets.token_bytes(NONCE_BYTES)
        data_nonce = secrets.token_bytes(NONCE_BYTES)
        wrapped = AESGCM(master.secret).encrypt(wrap_nonce, data_key, _wrap_aad(master.key_id, aad))
        body = AESGCM(data_key).encrypt(data_nonce, plaintext, _data_aad(aad))
        return Sealed(_header_bytes(master.key_id, wrap_nonce, wrapped, data_nonce), body)

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """One self-describing blob: header (version, key id, wrapped key, nonces) + body + tag."""
        sealed = self.seal(plaintext, aad)
        return sealed.header + sealed.body

    def decrypt(self, blob: bytes | memoryview, aad: bytes) -> bytes:
        """Plaintext of ``blob``; IntegrityError on any failure (key, truncation, tag, aad)."""
        view = memoryview(blob)
        header = _parse_header(view)
        data_key = self._unwrap(header, aad)
        try:
            return AESGCM(data_key).decrypt(header.data_nonce, view[header.size :], _data_aad(aad))
        except (InvalidTag, ValueError, OverflowError) as exc:
            raise IntegrityError("encrypted blob failed authentication") from exc

    def key_id_of(self, blob: bytes | memoryview) -> str:
        """The master key id a blob's data key is wrapped under (unauthenticated until opened)."""
        return _parse_header(memoryview(blob)).key_id

    def rewrap_header(self, blob: bytes | memoryview, aad: bytes) -> tuple[bytes, int]:
        """A new header wrapping the blob's data key under the current key, and the body offset.

        The body is not decrypted: re-wrapping cannot reveal or change it, and a tampered body
        still fails at ``decrypt``.
        """
        header = _parse_header(memoryview(blob))
        data_key = self._unwrap(header, aad)
        master = self._current
        wrap_nonce = secrets.token_bytes(NONCE_BYTES)
        wrapped = AESGCM(master.secret).encrypt(wrap_nonce, data_key, _wrap_aad(master.key_id, aad))
        return _header_bytes(master.key_id, wrap_nonce, wrapped, header.data_nonce), header.size

    def rewrap(self, blob: bytes, aad: bytes) -> bytes:
        """The same ciphertext with its data key re-wrapped under the current master key."""
        new_header, offset = self.rewrap_header(blob, aad)
        return new_header + blob[offset:]

    def _reload(self, key_id: str) -> MasterKey | None:
        """Picks up keys another process (``lamina keys rotate``) added since this ring loaded."""
        try:
            found = _read_keys(self._dir)
        except OSError:
            return None
        with self._lock:
            self._keys = {**found, **self._keys}
            newest = _newest(self._keys)
            if newest.generation > self._current.generation:
                self._current = newest
        return self._keys.get(key_id)

    def _unwrap(self, header: _Header, aad: bytes) -> bytes:
        master = self._keys.get(header.key_id) or self._reload(header.key_id)
        if master is None:
            raise IntegrityError(f"blob names unknown master key {header.key_id!r}")
        try:
            data_key = AESGCM(master.secret).decrypt(
                header.wrap_nonce, header.wrapped_key, _wrap_aad(master.key_id, aad)
            )
        except (InvalidTag, ValueError) as exc:
            raise IntegrityError("wrapped data key failed authentication") from exc
        if len(data_key) != KEY_BYTES:
            raise IntegrityError("wrapped data key has the wrong length")
        return data_key
