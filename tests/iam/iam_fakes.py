"""Fakes shared by the IAM tests in this folder: a plaintext cipher, a settable clock and a store.

An importable module rather than conftest.py, like tests/sandbox/sandbox_helpers.py: test folders
are not packages, so ``from conftest import ...`` would pick whichever conftest was loaded last.
Only tests in tests/iam can import it (pytest puts a test file's own folder on sys.path). This
module holds no tests.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from lamina.store.sqlite import SqliteMetadataStore

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class PlainCipher:
    """Stores plaintext: these tests are about IAM's rules, not encryption at rest."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return plaintext

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        return blob


class Clock:
    """A clock that stands still at T0 until a test moves ``now``, so expiry is deterministic."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def open_store(folder: Path) -> SqliteMetadataStore:
    """The SQLite metadata store in `folder` (created empty on first open), with PlainCipher."""
    return SqliteMetadataStore(folder / "db", PlainCipher())
