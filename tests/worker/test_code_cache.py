"""CodeCache with a fake read_zip: shared extraction, reference counting, failure cleanup."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.control.archives import ArchiveLimits
from lamina.errors import ArchiveError
from lamina.worker.code import CodeCache

SECRET = b"def handler(event, context):\n    return 'plaintext'\n"


def aio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop, with a hard deadline."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 10))

    return run


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


class Zips:
    """A fake artifact store: counts reads, can block or fail them."""

    def __init__(self) -> None:
        self.reads: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None

    def __call__(self, code_key: str) -> bytes:
        self.reads.append(code_key)
        assert self.gate.wait(5)
        if self.fail is not None:
            raise self.fail
        return make_zip({"app.py": SECRET, "lib/util.py": b"X = 1\n"})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "code"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path: Path) -> Iterator[Path]:
    """Any temp file the cache made would land here, outside its root."""
    path = tmp_path / "tempfiles"
    path.mkdir()
    saved = tempfile.tempdir
    tempfile.tempdir = str(path)
    yield path
    tempfile.tempdir = saved


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


@aio
async def test_concurrent_acquires_extract_once(root: Path, private_tempdir: Path) -> None:
    zips = Zips()
    zips.gate.clear()
    cache = CodeCache(root, zips, ArchiveLimits(), keep_unused=0)
    tasks = [asyncio.create_task(cache.acquire("k1")) for _ in range(5)]
    await asyncio.sleep(0.01)
    zips.gate.set()
    trees = await asyncio.gather(*tasks)
    assert len(set(trees)) == 1 and zips.reads == ["k1"]
    tree = trees[0]
    assert (tree / "app.py").read_bytes() == SECRET
    assert tree.parent == root
    assert files_under(root) == [tree / "app.py", tree / "lib" / "util.py"]
    assert os.stat(tree).st_mode & 0o777 == 0o755  # sandboxes (another uid) must read it
    assert list(private_tempdir.iterdir()) == []  # no plaintext anywhere but under root
    again = await cache.acquire("k1")
    assert again == tree and zips.reads == ["k1"]


@aio
async def test_release_removes_tree_after_last_user(root: Path) -> None:
    cache = CodeCache(root, Zips(), ArchiveLimits(), keep_unused=0)
    a = await cache.acquire("k1")
    b = await cache.acquire("k2")
    await cache.acquire("k1")
    cache.release("k1")
    assert a.exists()
    cache.release("k1")
    assert not a.exists() and b.exists()
    cache.clear()
    assert list(root.iterdir()) == []


@aio
async def test_failed_extraction_leaves_nothing_and_reaches_every_waiter(root: Path) -> None:
    zips = Zips()
    zips.gate.clear()
    zips.fail = OSError("artifact unreadable")
    cache = CodeCache(root, zips, ArchiveLimits(), keep_unused=0)
    tasks = [asyncio.create_task(cache.acquire("k1")) for _ in range(3)]
    await asyncio.sleep(0.01)
    zips.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert list(root.iterdir()) == []
    zips.fail = None  # the next acquire tries again, from scratch
    tree = await cache.acquire("k1")
    assert (tree / "app.py").read_bytes() == SECRET
    cache.release("k1")
    assert list(root.iterdir()) == []


@aio
async def test_corrupt_zip_leaves_no_staging(root: Path) -> None:
    good = make_zip({"a.py": SECRET, "b.py": b"y" * 10_000})
    corrupt = good.replace(b"y" * 100, b"z" * 100, 1)  # CRC mismatch while streaming
    cache = CodeCache(root, lambda key: corrupt, ArchiveLimits(), keep_unused=0)
    with pytest.raises(ArchiveError):
        await cache.acquire("k1")
    assert list(root.iterdir()) == []


@aio
async def test_cancelled_first_acquirer_does_not_cancel_others(root: Path) -> None:
    zips = Zips()
    zips.gate.clear()
    cache = CodeCache(root, zips, ArchiveLimits(), keep_unused=0)
    first = asyncio.create_task(cache.acquire("k1"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.acquire("k1"))
    await asyncio.sleep(0.01)
    first.cancel()  # the client of the cold start that began extracting went away
    await asyncio.sleep(0.01)
    zips.gate.set()
    tree = await second
    assert (tree / "app.py").read_bytes() == SECRET
    assert first.cancelled()
    cache.release("k1")
    assert list(root.iterdir()) == []


@aio
async def test_extraction_nobody_waits_for_any_more_is_removed(root: Path) -> None:
    zips = Zips()
    zips.gate.clear()
    cache = CodeCache(root, zips, ArchiveLimits(), keep_unused=0)
    only = asyncio.create_task(cache.acquire("k1"))
    await asyncio.sleep(0.01)
    only.cancel()
    await asyncio.sleep(0.01)
    zips.gate.set()
    for _ in range(200):  # the extraction thread finishes on its own
        await asyncio.sleep(0.005)
        if zips.reads and not list(root.iterdir()):
            break
    assert list(root.iterdir()) == []  # no orphaned plaintext tree


@aio
async def test_unused_trees_are_kept_least_recently_used_first(root: Path) -> None:
    cache = CodeCache(root, Zips(), ArchiveLimits(), keep_unused=2)
    trees = {}
    for key in ("k1", "k2", "k3"):
        trees[key] = await cache.acquire(key)
        cache.release(key)
    assert not trees["k1"].exists(), "over the limit: the least recently used tree goes"
    assert trees["k2"].exists() and trees["k3"].exists()
    extracted = cache.extractions
    assert await cache.acquire("k2") == trees["k2"]
    assert cache.extractions == extracted, "a kept tree is reused without extracting again"
    cache.release("k2")
    cache.forget("k3")
    assert not trees["k3"].exists()
