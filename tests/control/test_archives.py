"""Class F of SECURITY.md: hostile zips are refused with AWS's text and leave nothing behind.

Every archive is built here, with zipfile or by hand (``raw_zip``) when zipfile refuses to
write the attack; no binary fixtures.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import time
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lamina.control import archives
from lamina.control.archives import (
    UNZIP_FAILED,
    ArchiveLimits,
    ArchiveSummary,
    extract_zip,
    inspect_zip,
)
from lamina.errors import ArchiveError, InternalError

LIMITS = ArchiveLimits()
TOO_LARGE = "Unzipped size must be smaller than 262144000 bytes"


def make_zip(*entries: tuple[str, bytes] | tuple[str, bytes, int],
             compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """(name, content[, unix mode]) -> zip bytes; a mode of 0 means 'made on MS-DOS'."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on the duplicate names we write on purpose
        with zipfile.ZipFile(buf, "w", compression) as zf:
            for name, content, *rest in entries:
                info = zipfile.ZipInfo(name)
                mode = rest[0] if rest else (0o40755 if name.endswith("/") else 0o100644)
                info.create_system = 3 if mode else 0
                info.external_attr = mode << 16
                info.compress_type = compression
                zf.writestr(info, content)
    return buf.getvalue()


@dataclass
class Raw:
    """One entry for ``raw_zip``; ``payload`` is already compressed with ``method``."""

    name: bytes
    payload: bytes = b""
    method: int = 0
    size: int | None = None
    crc: int | None = None
    flags: int = 0
    mode: int = 0o100644


def raw_zip(entries: list[Raw], *, shared_local: bool = False) -> bytes:
    """Write local records and a central directory by hand. With ``shared_local`` every
    central entry points at the first local record (the overlapping-entries bomb)."""
    local, central = bytearray(), bytearray()
    first_offset = 0
    for e in entries:
        size = len(e.payload) if e.size is None else e.size
        crc = zlib.crc32(e.payload) if e.crc is None else e.crc
        offset = first_offset if shared_local and central else len(local)
        if not (shared_local and central):
            local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, e.flags, e.method, 0, 0x21,
                                 crc, len(e.payload), size, len(e.name), 0) + e.name + e.payload
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 0x314, 20, e.flags, e.method, 0,
                               0x21, crc, len(e.payload), size, len(e.name), 0, 0, 0, 0,
                               e.mode << 16, offset) + e.name
    count = min(len(entries), 0xFFFF)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(local), 0)
    return bytes(local + central + eocd)


def deflate(content: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(content) + c.flush()


def zeros_stream(megabytes: int) -> bytes:
    """Raw deflate of ``megabytes`` MiB of zeros, built from one repeated full-flush segment."""
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return segment * megabytes + c.compress(b"") + c.flush()


def zeros_crc(megabytes: int) -> int:
    crc, chunk = 0, bytes(1 << 20)
    for _ in range(megabytes):
        crc = zlib.crc32(chunk, crc)
    return crc


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """An empty extraction dir with a canary dir beside it that no attack may touch."""
    (tmp_path / "canary").mkdir()
    (tmp_path / "canary" / "keep").write_text("intact")
    (tmp_path / "dest").mkdir()
    return tmp_path / "dest"


def assert_refused(data: bytes, dest: Path, reason: str = UNZIP_FAILED, note: str = "",
                   limits: ArchiveLimits = LIMITS, budget: int | None = None) -> None:
    calls: list[Callable[[], ArchiveSummary]] = [
        lambda: inspect_zip(data, limits, budget=budget),
        lambda: extract_zip(data, dest, limits, budget=budget),
    ]
    for call in calls:
        with pytest.raises(ArchiveError) as info:
            call()
        assert info.value.reason == reason
        assert note in " ".join(getattr(info.value, "__notes__", []))
    assert os.listdir(dest) == []
    assert sorted(os.listdir(dest.parent)) == ["canary", "dest"]
    assert os.listdir(dest.parent / "canary") == ["keep"]
    assert (dest.parent / "canary" / "keep").read_text() == "intact"


# -- hostile names ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "note"), [
    ("../canary/pwned", "parent reference"),
    ("a/../../canary/pwned", "parent reference"),
    ("..\\canary\\pwned", "parent reference"),
    ("a\\..\\..\\canary\\pwned", "parent reference"),
    ("/tmp/pwned", "absolute"),
    ("\\tmp\\pwned", "absolute"),
    ("\\\\server\\share\\pwned", "absolute"),
    ("C:\\pwned", "drive-letter"),
    ("c:pwned", "drive-letter"),
    ("D:/pwned", "drive-letter"),
    ("x" * 1025, "longer than 1024"),
    ("/".join(["d"] * 64) + "/f", "deeper than 64"),
    ("a/" + "n" * 256, "component longer"),
])
def test_hostile_names_are_refused(dest: Path, name: str, note: str) -> None:
    assert_refused(make_zip(("ok.py", b"x"), (name, b"pwned")), dest, note=note)


def test_absolute_name_pointing_at_canary_is_refused(dest: Path) -> None:
    assert_refused(make_zip((str(dest.parent / "canary" / "pwned"), b"x")), dest, note="absolute")


def test_nul_in_name_is_refused(dest: Path) -> None:
    data = make_zip(("evilX.py", b"x")).replace(b"evilX", b"evil\x00")
    assert_refused(data, dest, note="NUL")


def test_invalid_utf8_name_flagged_utf8_is_refused(dest: Path) -> None:
    assert_refused(raw_zip([Raw(b"bad\xff", b"x", flags=0x800)]), dest, note="UTF-8")


@pytest.mark.parametrize("names", [
    ("a.py", "a.py"),
    ("a/b.py", "a\\b.py"),
    ("a.py", "./a.py"),
    ("a/b.py", "a//b.py"),
    ("d/", "d/"),
])
def test_duplicate_and_colliding_names_are_refused(dest: Path, names: tuple[str, str]) -> None:
    assert_refused(make_zip(*((n, b"" if n.endswith("/") else b"x") for n in names)), dest,
                   note="duplicate")


@pytest.mark.parametrize("order", [("a", "a/b"), ("a/b", "a")])
def test_file_used_as_directory_is_refused(dest: Path, order: tuple[str, str]) -> None:
    assert_refused(make_zip(*((n, b"x") for n in order)), dest, note="under a file")


def test_too_many_entries_is_refused(dest: Path) -> None:
    data = make_zip(*((f"f{i}", b"") for i in range(11)))
    assert_refused(data, dest, limits=ArchiveLimits(max_entries=10), note="11 entries")


def test_hundred_thousand_entries_are_refused_quickly(dest: Path) -> None:
    data = raw_zip([Raw(str(i).encode()) for i in range(100_000)])
    start = time.monotonic()
    assert_refused(data, dest, note="entries")
    assert time.monotonic() - start < 1.0


# -- hostile types and encodings -------------------------------------------------------------

@pytest.mark.parametrize("mode", [stat.S_IFCHR | 0o666, stat.S_IFBLK | 0o660,
                                  stat.S_IFIFO | 0o644, stat.S_IFSOCK | 0o755])
def test_device_fifo_and_socket_entries_are_refused(dest: Path, mode: int) -> None:
    assert_refused(make_zip(("dev", b"", mode)), dest, note="special file")


def test_encrypted_entry_is_refused(dest: Path) -> None:
    assert_refused(raw_zip([Raw(b"secret.py", b"\x00" * 24, flags=0x1, size=12)]), dest,
                   note="encrypted")


@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_unsupported_compression_is_refused(dest: Path, compression: int) -> None:
    assert_refused(make_zip(("a.py", b"x" * 100), compression=compression), dest,
                   note="compression method")


@pytest.mark.parametrize("data", [b"", b"hello world", b"\x1f\x8b\x08\x00" + bytes(100),
                                  b"PK\x05\x06" + bytes(10)])
def test_non_zip_data_is_refused(dest: Path, data: bytes) -> None:
    assert_refused(data, dest)


def test_truncated_archives_are_refused(dest: Path) -> None:
    data = make_zip(("a.py", os.urandom(4000)), ("b.py", b"y"))
    for cut in (1, 30, len(data) // 2, len(data) - 10):
        assert_refused(data[:-cut], dest)
    short = raw_zip([Raw(b"a.py", b"abc")]).replace(
        struct.pack("<2L", 3, 3), struct.pack("<2L", 3000, 3000))
    assert_refused(short, dest, note="runs past")


def test_corrupt_crc_is_refused(dest: Path) -> None:
    data = make_zip(("a.py", b"print('hello')\n"), compression=zipfile.ZIP_STORED)
    assert_refused(data.replace(b"hello", b"jello"), dest, note="CRC")


def test_corrupt_deflate_data_is_refused(dest: Path) -> None:
    assert_refused(raw_zip([Raw(b"a.py", b"\xff" * 64, method=8, size=10)]), dest,
                   note="deflate")


def test_too_large_zip_is_refused(dest: Path) -> None:
    data = make_zip(("a.py", os.urandom(300)))
    assert_refused(data, dest, "Zipped size must be smaller than 200 bytes",
                   limits=ArchiveLimits(max_zip_bytes=200))


# -- bombs -----------------------------------------------------------------------------------

def test_gigabyte_bomb_is_refused_in_bounded_memory_and_time(dest: Path) -> None:
    data = raw_zip([Raw(b"zeros", zeros_stream(1024), method=8, size=1 << 30,
                        crc=zeros_crc(1024))])
    assert len(data) < 1_100_000
    tracemalloc.start()
    try:
        start = time.monotonic()
        with pytest.raises(ArchiveError) as info:
            inspect_zip(data, LIMITS)
        elapsed = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.reason == TOO_LARGE
    assert elapsed < 2.0
    assert peak < 4 * 1024 * 1024


def test_bomb_is_refused_during_extraction_and_cleaned_up(dest: Path) -> None:
    data = raw_zip([Raw(b"ok.py", b"x"),
                    Raw(b"zeros", zeros_stream(16), method=8, size=16 << 20, crc=zeros_crc(16))])
    assert_refused(data, dest, "Unzipped size must be smaller than 4194304 bytes",
                   budget=4 << 20)


def test_bomb_lying_about_its_size_is_stopped_at_the_declared_size(dest: Path) -> None:
    data = raw_zip([Raw(b"zeros", zeros_stream(256), method=8, size=1000, crc=0)])
    start = time.monotonic()
    assert_refused(data, dest, note="past its declared size")
    assert time.monotonic() - start < 0.5


def test_overlapping_entries_bomb_is_refused(dest: Path) -> None:
    payload = zeros_stream(8)
    crc = zeros_crc(8)
    entries = [Raw(f"f{i}".encode(), payload, method=8, size=8 << 20, crc=crc)
               for i in range(100)]
    assert_refused(raw_zip(entries, shared_local=True), dest, note="overlapping")


def test_real_bytes_are_summed_across_entries_against_the_budget(dest: Path) -> None:
    data = make_zip(*((f"f{i}", bytes(1 << 20)) for i in range(5)))
    assert inspect_zip(data, LIMITS, budget=6 << 20).unzipped_bytes == 5 << 20
    assert_refused(data, dest, "Unzipped size must be smaller than 5242880 bytes",
                   budget=5 << 20)
    assert_refused(data, dest, "Unzipped size must be smaller than 3000000 bytes",
                   limits=ArchiveLimits(max_unzipped_bytes=3_000_000), budget=4 << 20)


# -- symlinks --------------------------------------------------------------------------------

LINK = stat.S_IFLNK | 0o777


@pytest.mark.parametrize("target", [
    b"../canary", b"../../etc/passwd", b"/etc/passwd", b"a/../../x", b"..\\canary", b"",
    b"sub/../x", b"ok\x00",
])
def test_symlinks_leaving_the_archive_are_refused(dest: Path, target: bytes) -> None:
    assert_refused(make_zip(("link", target, LINK)), dest, note="")


def test_symlink_escaping_through_another_link_is_refused(dest: Path) -> None:
    # a/up -> .. is fine alone; a/l -> up/../x would resolve to the parent of the root.
    data = make_zip(("a/up", b"..", LINK), ("a/l", b"up/../x", LINK))
    assert_refused(data, dest, note="outside")


def test_writing_through_a_symlink_entry_is_refused(dest: Path) -> None:
    data = make_zip(("link", b"sub", LINK), ("sub/", b""), ("link/evil.py", b"x"))
    assert_refused(data, dest, note="under a file or symlink")


def test_oversized_symlink_target_is_refused(dest: Path) -> None:
    assert_refused(make_zip(("link", b"a/" * 600, LINK)), dest, note="target")


def test_directory_walk_never_follows_a_planted_link(dest: Path) -> None:
    os.symlink(dest.parent / "canary", dest / "planted")
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError):
            archives._open_dir(root, ("planted",))
    finally:
        os.close(root)
    assert os.listdir(dest.parent / "canary") == ["keep"]


# -- good archives ---------------------------------------------------------------------------

def test_good_archive_extracts_with_modes_dirs_and_links(dest: Path) -> None:
    data = make_zip(
        ("bootstrap", b"#!/bin/sh\n", 0o100700),
        ("handler.py", b"def handler(e, c): return 1\n", 0o100666),
        ("setuid", b"x", 0o104755),
        ("bin/", b""),
        ("bin/tool", b"#!/bin/sh\n", 0o100755),
        ("lib/python/pkg/__init__.py", b""),
        ("lib/libfoo.so.1", b"elf"),
        ("lib/libfoo.so", b"libfoo.so.1", LINK),
        ("bin/foo", b"../lib/libfoo.so", LINK),
        ("current", b"lib/python", LINK),
        ("dos.txt", b"made on windows", 0),
        ("./", b""),
    )
    summary = extract_zip(data, dest, LIMITS)
    assert summary == inspect_zip(data, LIMITS)
    assert summary.entries == 12
    assert summary.top_level_files == {"bootstrap", "handler.py", "setuid", "current", "dos.txt"}
    assert summary.executables == {"bootstrap", "setuid", "bin/tool"}
    assert summary.unzipped_bytes == sum(len(c) for c in (
        b"#!/bin/sh\n", b"def handler(e, c): return 1\n", b"x", b"#!/bin/sh\n", b"elf",
        b"libfoo.so.1", b"../lib/libfoo.so", b"lib/python", b"made on windows"))

    def mode(p: str) -> int:
        return stat.S_IMODE(os.lstat(dest / p).st_mode)

    assert (mode("bootstrap"), mode("handler.py"), mode("setuid")) == (0o755, 0o644, 0o755)
    assert (mode("bin/tool"), mode("dos.txt"), mode("lib/python/pkg")) == (0o755, 0o644, 0o755)
    assert os.readlink(dest / "bin/foo") == "../lib/libfoo.so"
    assert (dest / "bin/foo").read_bytes() == b"elf"
    assert (dest / "current" / "pkg" / "__init__.py").exists()
    assert (dest / "handler.py").read_bytes() == b"def handler(e, c): return 1\n"
    assert sorted(os.listdir(dest.parent)) == ["canary", "dest"]


def test_zip64_local_headers_and_stored_entries_are_read(dest: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        with zf.open("big.bin", "w", force_zip64=True) as f:
            f.write(b"z" * 100_000)
        zf.writestr(zipfile.ZipInfo("plain.txt"), b"p")
    summary = extract_zip(buf.getvalue(), dest, LIMITS)
    assert summary.unzipped_bytes == 100_001
    assert (dest / "big.bin").read_bytes() == b"z" * 100_000


def test_failure_after_writes_removes_everything(dest: Path) -> None:
    good = [(f"d{i}/f.py", b"ok" * 100) for i in range(5)]
    data = make_zip(*good, ("zz.py", b"hello"), compression=zipfile.ZIP_STORED)
    assert_refused(data.replace(b"hello", b"jello"), dest, note="CRC")


def test_destination_must_be_empty(dest: Path) -> None:
    (dest / "old").write_text("x")
    with pytest.raises(InternalError, match="not empty"):
        extract_zip(make_zip(("a.py", b"x")), dest, LIMITS)
    assert os.listdir(dest) == ["old"]


def test_limits_follow_settings() -> None:
    from lamina.settings import Limits

    assert ArchiveLimits.from_settings(Limits()) == ArchiveLimits()
