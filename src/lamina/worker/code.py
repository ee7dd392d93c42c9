"""Decrypted code on the scratch tmpfs, extracted once per version and shared read-only.

Every environment of a version binds the same extracted tree at /var/task (read-only), so a
cold start after the first one costs no decryption or extraction. A tree is removed when the
version it belongs to is retired and no environment uses it any more.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from lamina.control.archives import ArchiveLimits, extract_zip


class CodeCache:
    def __init__(
        self, root: Path, read_zip: Callable[[str], bytes], limits: ArchiveLimits, keep_unused: int = 32
    ) -> None:
        """``read_zip(code_key)`` returns the decrypted zip of an artifact. Up to ``keep_unused``
        trees that no environment uses any more are kept (least recently used go first), so a
        later cold start of the same code or layer does not extract it again."""
        self.root = root
        self.read_zip = read_zip
        self.limits = limits
        self.keep_unused = keep_unused
        self._trees: dict[str, Path] = {}
        self._users: dict[str, int] = {}
        self._unused: OrderedDict[str, None] = OrderedDict()  # trees without users, oldest first
        self._building: dict[str, asyncio.Task[Path]] = {}
        self.extractions = 0

    @staticmethod
    def _dirname(code_key: str) -> str:
        return hashlib.sha256(code_key.encode()).hexdigest()[:32]

    async def acquire(self, code_key: str) -> Path:
        """The extracted tree for ``code_key`` (extracting it if needed); pair with release()."""
        self._users[code_key] = self._users.get(code_key, 0) + 1
        self._unused.pop(code_key, None)
        try:
            tree = self._trees.get(code_key)
            if tree is not None:
                return tree
            # The extraction belongs to no caller: one cancelled acquirer must neither cancel
            # the others nor leave an untracked tree behind when its thread finishes.
            building = self._building.get(code_key)
            if building is None:
                building = asyncio.get_running_loop().create_task(self._build(code_key))
                building.add_done_callback(_retrieve)
                self._building[code_key] = building
            return await asyncio.shield(building)
        except BaseException:
            self.release(code_key)
            raise

    async def _build(self, code_key: str) -> Path:
        try:
            tree = await asyncio.to_thread(self._extract, code_key)
        finally:
            del self._building[code_key]
        if code_key in self._users:
            self._trees[code_key] = tree
        else:  # every acquirer gave up while it was extracted
            shutil.rmtree(tree, ignore_errors=True)
        return tree

    def _extract(self, code_key: str) -> Path:
        self.extractions += 1
        dest = self.root / self._dirname(code_key)
        shutil.rmtree(dest, ignore_errors=True)
        staging = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o755)
        try:
            extract_zip(self.read_zip(code_key), staging, self.limits)
            os.chmod(staging, 0o755)
            os.rename(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return dest

    def release(self, code_key: str) -> None:
        left = self._users.get(code_key, 0) - 1
        if left > 0:
            self._users[code_key] = left
            return
        self._users.pop(code_key, None)
        if code_key in self._trees:
            self._unused[code_key] = None
            while len(self._unused) > self.keep_unused:
                self.forget(next(iter(self._unused)))

    def forget(self, code_key: str) -> None:
        """Removes an unused tree now (its code was deleted, or the cache is over its size)."""
        if self._users.get(code_key):
            return
        self._unused.pop(code_key, None)
        tree = self._trees.pop(code_key, None)
        if tree is not None:
            shutil.rmtree(tree, ignore_errors=True)

    def clear(self) -> None:
        for tree in self._trees.values():
            shutil.rmtree(tree, ignore_errors=True)
        self._trees.clear()
        self._users.clear()
        self._unused.clear()


def link_tree(source: Path, dest: Path) -> int:
    """Recreates ``source`` under the existing dir ``dest`` with hard links (both on the scratch
    tmpfs: no data is copied). Merges into what ``dest`` already holds, a file of ``source``
    replacing one of the same name (so layers linked in order overlay each other as on AWS).
    Returns the number of files linked."""
    count = 0
    for root, dirs, files in os.walk(source):
        rel = os.path.relpath(root, source)
        target = dest if rel == "." else dest / rel
        for name in dirs:
            path = os.path.join(root, name)
            there = target / name
            if os.path.islink(path):
                _replace(there)
                os.symlink(os.readlink(path), there)
            elif there.is_symlink() or (there.exists() and not there.is_dir()):
                _replace(there)
                there.mkdir()
                os.chmod(there, 0o755)
            elif not there.exists():
                there.mkdir()
                os.chmod(there, 0o755)
        for name in files:
            path = os.path.join(root, name)
            there = target / name
            _replace(there)
            if os.path.islink(path):
                os.symlink(os.readlink(path), there)
            else:
                os.link(path, there)
                count += 1
    return count


def _replace(path: Path) -> None:
    """Clears the way for a later layer's entry of the same name."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _retrieve(task: asyncio.Task[Path]) -> None:
    """Waiters see a failed extraction through shield(); when none is left, nobody should be
    warned about an exception never retrieved."""
    if not task.cancelled():
        task.exception()
