"""Validation and extraction of uploaded zip archives (SECURITY.md class F).

Function code and layer zips are hostile. This module parses the zip structure itself rather
than trusting ``zipfile``: ``zipfile`` silently truncates names at NUL, materialises one object
per central-directory entry before any limit can be checked, and trusts header sizes.

Invariants:
  * sizes are counted from bytes actually produced by decompression, in bounded chunks, and
    decompression stops as soon as the cap is reached (ratio and overlapping-entry bombs);
  * every name is normalised once (backslash = separator) and checked before anything is
    written; overlapping entries, duplicates and file/dir collisions are rejected;
  * extraction walks directory fds opened with O_NOFOLLOW and creates files with O_EXCL, and
    creates symlinks last, so no write can pass through a link;
  * on any failure extraction removes everything it wrote, then re-raises.

Client-facing text is AWS Lambda's; the internal detail goes in an exception note.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path

from lamina.errors import ArchiveError, InternalError
from lamina.settings import Limits

# AWS Lambda's own texts (InvalidParameterValueException, 400).
UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."
UNZIPPED_TOO_LARGE = "Unzipped size must be smaller than {limit} bytes"
ZIPPED_TOO_LARGE = "Zipped size must be smaller than {limit} bytes"

_CHUNK = 64 * 1024
_NAME_MAX = 255  # bytes per path component on Linux
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")
_FLAG_ENCRYPTED, _FLAG_PATCHED, _FLAG_STRONG, _FLAG_UTF8 = 0x1, 0x20, 0x40, 0x800
_STORED, _DEFLATED = 0, 8
_UNIX_HOSTS = (3, 19)  # "made by" Unix and OS X: external attributes hold st_mode


@dataclass(frozen=True)
class ArchiveLimits:
    max_zip_bytes: int = 50 * 1024 * 1024
    max_unzipped_bytes: int = 250 * 1024 * 1024
    max_entries: int = 20_000
    max_name_bytes: int = 1024
    max_depth: int = 64

    @classmethod
    def from_settings(cls, limits: Limits) -> ArchiveLimits:
        return cls(limits.zip_max_bytes, limits.unzipped_max_bytes, limits.zip_max_entries,
                   limits.zip_max_name_bytes, limits.zip_max_depth)


@dataclass(frozen=True)
class ArchiveSummary:
    entries: int
    unzipped_bytes: int
    top_level_files: frozenset[str]
    executables: frozenset[str]


@dataclass(frozen=True)
class _Member:
    """One validated central-directory entry; ``parts`` is the normalised relative path."""

    parts: tuple[str, ...]
    kind: int  # stat.S_IFREG, S_IFDIR or S_IFLNK
    mode: int  # 0o755 or 0o644 for files
    method: int
    crc: int
    compressed_size: int
    size: int
    offset: int  # of the local header

    @property
    def path(self) -> str:
        return "/".join(self.parts)


def _fail(detail: str, reason: str = UNZIP_FAILED) -> ArchiveError:
    err = ArchiveError(reason)
    err.add_note(detail)
    return err


class _Meter:
    """Counts real decompressed bytes against one cap shared by all entries."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.total = 0

    def take(self, n: int) -> None:
        self.total += n
        if self.total >= self.cap:  # AWS: "must be smaller than"
            raise _fail(f"unzipped bytes reached {self.total}",
                        UNZIPPED_TOO_LARGE.format(limit=self.cap))


def _locate_directory(data: bytes) -> tuple[int, int, int]:
    """Return (offset, size, entry count) of the central directory; no prepended data allowed."""
    eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - _EOCD.size - 0xFFFF))
    if eocd < 0 or eocd + _EOCD.size > len(data):
        raise _fail("no end-of-central-directory record")
    _, disk, cd_disk, here, count, size, offset, comment = _EOCD.unpack_from(data, eocd)
    if eocd + _EOCD.size + comment != len(data):
        raise _fail("trailing bytes after the archive comment")
    end = eocd
    locator = eocd - _ZIP64_LOCATOR.size
    if locator >= 0 and data[locator:locator + 4] == b"PK\x06\x07":
        _, _, end, _ = _ZIP64_LOCATOR.unpack_from(data, locator)
        if end + _ZIP64_EOCD.size > locator or data[end:end + 4] != b"PK\x06\x06":
            raise _fail("bad zip64 end-of-central-directory record")
        (_, _, _, _, disk, cd_disk, here, count, size,
         offset) = _ZIP64_EOCD.unpack_from(data, end)
    if disk or cd_disk or here != count:
        raise _fail("multi-disk archive")
    if offset + size != end:
        raise _fail("central directory does not end where the end record starts")
    return offset, size, count


def _zip64_sizes(extra: bytes, size: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Replace 0xFFFFFFFF header fields by their zip64 extra-field values (APPNOTE 4.5.3)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, pos)
        body = extra[pos + 4:pos + 4 + length]
        if tag == 0x0001:
            values = [v for v in (size, csize, offset) if v == 0xFFFFFFFF]
            if len(body) < 8 * len(values):
                raise _fail("short zip64 extra field")
            fields = iter(struct.unpack_from(f"<{len(values)}Q", body))
            size = next(fields) if size == 0xFFFFFFFF else size
            csize = next(fields) if csize == 0xFFFFFFFF else csize
            offset = next(fields) if offset == 0xFFFFFFFF else offset
        pos += 4 + length
    return size, csize, offset


def _decode(raw: bytes, flags: int) -> str:
    if b"\x00" in raw:
        raise _fail(f"NUL byte in name {raw!r}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if flags & _FLAG_UTF8:
            raise _fail(f"invalid UTF-8 name {raw!r}") from exc
        return raw.decode("cp437")  # the historical zip encoding


def _normalise(name: str, limits: ArchiveLimits) -> tuple[str, ...]:
    """Split a name into safe components, treating backslash as a separator as unzip does."""
    if len(name.encode()) > limits.max_name_bytes:
        raise _fail(f"name longer than {limits.max_name_bytes} bytes")
    flat = name.replace("\\", "/")
    if flat.startswith("/"):
        raise _fail(f"absolute name {name!r}")
    parts = tuple(p for p in flat.split("/") if p not in ("", "."))
    if parts and len(parts[0]) >= 2 and parts[0][1] == ":" and parts[0][0].isalpha():
        raise _fail(f"drive-letter name {name!r}")
    if ".." in parts:
        raise _fail(f"parent reference in name {name!r}")
    if len(parts) > limits.max_depth:
        raise _fail(f"name deeper than {limits.max_depth} levels")
    if any(len(p.encode()) > _NAME_MAX for p in parts):
        raise _fail(f"path component longer than {_NAME_MAX} bytes")
    return parts


def _kind_and_mode(made_by: int, external: int, name: str) -> tuple[int, int]:
    unix = external >> 16 if made_by >> 8 in _UNIX_HOSTS else 0
    kind = stat.S_IFMT(unix) or stat.S_IFREG
    if name.endswith(("/", "\\")) or external & 0x10:  # MS-DOS directory attribute
        if kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise _fail(f"{name!r} is both a directory and another type")
        kind = stat.S_IFDIR
    if kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
        raise _fail(f"special file {name!r} (mode {unix:o})")
    # The sandbox user does not own the files: keep only "executable or not", never s[ug]id.
    return kind, 0o755 if kind == stat.S_IFDIR or unix & 0o111 else 0o644


def _read_members(data: bytes, limits: ArchiveLimits) -> list[_Member]:
    """Parse and validate every central-directory entry without decompressing anything."""
    if len(data) >= limits.max_zip_bytes:
        raise _fail("zip too large", ZIPPED_TOO_LARGE.format(limit=limits.max_zip_bytes))
    start, size, count = _locate_directory(data)
    if count > limits.max_entries:
        raise _fail(f"{count} entries, limit {limits.max_entries}")
    members: list[_Member] = []
    pos = start
    for _ in range(count):
        if pos + _CENTRAL.size > start + size:
            raise _fail("truncated central directory")
        (sig, made_by, _, flags, method, _, _, crc, csize, usize, n_name, n_extra, n_comment,
         _, _, external, offset) = _CENTRAL.unpack_from(data, pos)
        if sig != b"PK\x01\x02":
            raise _fail("bad central directory signature")
        raw = data[pos + _CENTRAL.size:pos + _CENTRAL.size + n_name]
        extra = data[pos + _CENTRAL.size + n_name:pos + _CENTRAL.size + n_name + n_extra]
        pos += _CENTRAL.size + n_name + n_extra + n_comment
        name = _decode(raw, flags)
        if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG | _FLAG_PATCHED):
            raise _fail(f"encrypted or patched entry {name!r}")
        if method not in (_STORED, _DEFLATED):
            raise _fail(f"unsupported compression method {method} for {name!r}")
        usize, csize, offset = _zip64_sizes(extra, usize, csize, offset)
        kind, mode = _kind_and_mode(made_by, external, name)
        parts = _normalise(name, limits)
        if not parts and kind != stat.S_IFDIR:
            raise _fail(f"empty name {name!r}")
        if kind == stat.S_IFLNK and usize > limits.max_name_bytes:
            raise _fail(f"symlink {name!r} has a {usize}-byte target")
        members.append(_Member(parts, kind, mode, method, crc, csize, usize, offset))
    if pos != start + size:
        raise _fail("central directory size does not match its entries")
    _check_layout(data, members, start)
    _check_tree([m for m in members if m.parts])
    return members


def _check_layout(data: bytes, members: list[_Member], directory: int) -> None:
    """Local records must match their entries and must not overlap (overlap = bomb)."""
    end = 0
    for m in sorted(members, key=lambda m: m.offset):
        if m.offset < end or m.offset + _LOCAL.size > directory:
            raise _fail(f"overlapping or misplaced entry {m.path!r}")
        sig, _, _, _, _, _, _, _, _, n_name, n_extra = _LOCAL.unpack_from(data, m.offset)
        if sig != b"PK\x03\x04":
            raise _fail(f"bad local header for {m.path!r}")
        end = m.offset + _LOCAL.size + n_name + n_extra + m.compressed_size
        if end > directory:
            raise _fail(f"entry {m.path!r} runs past the central directory (truncated?)")


def _check_tree(members: list[_Member]) -> None:
    kinds: dict[tuple[str, ...], int] = {}
    for m in members:
        if m.parts in kinds:
            raise _fail(f"duplicate name {m.path!r}")
        kinds[m.parts] = m.kind
    for m in members:
        for i in range(1, len(m.parts)):
            if kinds.get(m.parts[:i], stat.S_IFDIR) != stat.S_IFDIR:
                raise _fail(f"{m.path!r} lies under a file or symlink")


def _raw_chunks(data: bytes, m: _Member) -> Iterator[bytes]:
    """Yield an entry's decompressed bytes, at most _CHUNK in and out per step."""
    n_name, n_extra = struct.unpack_from("<2H", data, m.offset + _LOCAL.size - 4)
    first = m.offset + _LOCAL.size + n_name + n_extra
    body = memoryview(data)[first:first + m.compressed_size]
    if m.method == _STORED:
        for pos in range(0, len(body), _CHUNK):
            yield bytes(body[pos:pos + _CHUNK])
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pos = 0
    while not inflater.eof:
        source = inflater.unconsumed_tail
        if not source:
            source = bytes(body[pos:pos + _CHUNK])
            pos += len(source)
        out = inflater.decompress(source, _CHUNK)
        if not out and not source:
            raise _fail(f"truncated deflate data in {m.path!r}")
        yield out


def _chunks(data: bytes, m: _Member, meter: _Meter) -> Iterator[bytes]:
    """Meter, size-check and CRC an entry's real bytes; stop as soon as a bound is passed."""
    crc = produced = 0
    try:
        for out in _raw_chunks(data, m):
            produced += len(out)
            if produced > m.size:
                raise _fail(f"{m.path!r} inflates past its declared size")
            meter.take(len(out))
            crc = zlib.crc32(out, crc)
            yield out
    except zlib.error as exc:
        raise _fail(f"corrupt deflate data in {m.path!r}: {exc}") from exc
    if produced != m.size or crc != m.crc:
        raise _fail(f"size or CRC mismatch in {m.path!r}")


def _cap(limits: ArchiveLimits, budget: int | None) -> int:
    return limits.max_unzipped_bytes if budget is None else min(budget, limits.max_unzipped_bytes)


def _summary(members: list[_Member], total: int) -> ArchiveSummary:
    return ArchiveSummary(
        entries=len(members),
        unzipped_bytes=total,
        top_level_files=frozenset(
            m.path for m in members if len(m.parts) == 1 and m.kind != stat.S_IFDIR),
        executables=frozenset(
            m.path for m in members if m.kind == stat.S_IFREG and m.mode & 0o111),
    )


def _symlink_target(data: bytes, m: _Member, meter: _Meter) -> str:
    """Read and check a link target: it may climb with leading ``..`` only, never above the root.

    Allowing ``..`` only as a prefix makes lexical checking sound even when a target passes
    through other in-archive links: each link resolves inside the root, by induction.
    """
    target = _decode(b"".join(_chunks(data, m, meter)), _FLAG_UTF8)
    parts = [p for p in target.split("/") if p not in ("", ".")]
    ups = sum(1 for _ in takewhile(lambda p: p == "..", parts))
    if not target or target.startswith("/") or "\\" in target \
            or ".." in parts[ups:] or ups > len(m.parts) - 1:
        raise _fail(f"symlink {m.path!r} points outside the archive: {target!r}")
    return target


def _drain(data: bytes, m: _Member, meter: _Meter) -> None:
    for _ in _chunks(data, m, meter):
        pass


def inspect_zip(data: bytes, limits: ArchiveLimits, *, budget: int | None = None) -> ArchiveSummary:
    """Validate an archive completely without writing anything: names, types, CRCs, sizes."""
    members = _read_members(data, limits)
    meter = _Meter(_cap(limits, budget))
    for m in members:
        if m.kind == stat.S_IFLNK:
            _symlink_target(data, m, meter)
        else:
            _drain(data, m, meter)
    return _summary(members, meter.total)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# The archive's fault (a name that clashes with what is already there), not the host's.
_ARCHIVE_ERRNOS = {errno.EEXIST, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}


def _open_dir(root: int, parts: tuple[str, ...]) -> int:
    """Open (creating as needed) the directory ``parts`` below ``root`` without following links."""
    fd = os.dup(root)
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            os.fchmod(fd, 0o755)  # umask may have narrowed it; the sandbox user must read it
        return fd
    except BaseException:
        os.close(fd)
        raise


def _write_file(data: bytes, root: int, m: _Member, meter: _Meter) -> None:
    parent = _open_dir(root, m.parts[:-1])
    try:
        fd = os.open(m.parts[-1], _FILE_FLAGS, 0o600, dir_fd=parent)
    finally:
        os.close(parent)
    try:
        for chunk in _chunks(data, m, meter):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        os.fchmod(fd, m.mode)
    finally:
        os.close(fd)


def _extract(data: bytes, root: int, members: list[_Member], meter: _Meter) -> None:
    links: list[tuple[_Member, str]] = []
    for m in members:
        if m.kind == stat.S_IFLNK:
            links.append((m, _symlink_target(data, m, meter)))
        elif m.kind == stat.S_IFDIR:
            _drain(data, m, meter)
            os.close(_open_dir(root, m.parts))
        else:
            _write_file(data, root, m, meter)
    # Links last, so that no write above can pass through one.
    for m, target in links:
        parent = _open_dir(root, m.parts[:-1])
        try:
            os.symlink(target, m.parts[-1], dir_fd=parent)
        finally:
            os.close(parent)


def _clear(root: int) -> None:
    """Remove everything below ``root`` (which was empty before extraction started)."""
    for name in os.listdir(root):
        if stat.S_ISDIR(os.stat(name, dir_fd=root, follow_symlinks=False).st_mode):
            shutil.rmtree(name, dir_fd=root)
        else:
            os.unlink(name, dir_fd=root)


def extract_zip(data: bytes, dest: Path, limits: ArchiveLimits, *,
                budget: int | None = None) -> ArchiveSummary:
    """Validate, then extract into ``dest``, an existing empty directory.

    All metadata is checked before the first write; content errors (CRC, truncation, size)
    surface while streaming, after which everything written below ``dest`` is removed.
    """
    members = _read_members(data, limits)
    meter = _Meter(_cap(limits, budget))
    try:
        root = os.open(dest, _DIR_FLAGS)
    except OSError as exc:
        raise InternalError(f"extract: cannot open {dest}: {exc}") from exc
    try:
        if os.listdir(root):
            raise InternalError(f"extract: {dest} is not empty")
        try:
            _extract(data, root, members, meter)
        except BaseException as exc:
            _clear(root)
            if isinstance(exc, OSError):
                if exc.errno in _ARCHIVE_ERRNOS:
                    raise _fail(f"extract: {exc}") from exc
                raise InternalError(f"extract into {dest}: {exc}") from exc
            raise
    finally:
        os.close(root)
    return _summary(members, meter.total)
