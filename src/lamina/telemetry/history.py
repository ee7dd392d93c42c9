"""Configuration history: every control-plane change, who made it, and what it changed.

Lamina's answer to AWS Config plus the CloudTrail "who": one row per mutating operation with
the principal's ARN, the time, the operation name and the resource's document before and
after. Environment variable values are replaced by ``REDACTED`` before anything is written,
so ``history.db`` never holds a secret (the metadata store keeps them encrypted; the history
only says which variables exist and that the set changed).

The store is its own SQLite file (``DIR/history.db``, WAL, full sync) rather than a table in
the metadata database: history is append-only and read by operators, it never takes part in
the metadata store's generation-based caching, and ``lamina history`` can read it while the
server runs. The cost is that a crash between the metadata commit and the history insert
(microseconds apart, both on the event loop) loses that one entry.

The principal comes from a context variable the API layer sets per request; changes made by
the platform itself (start-up sweeps, CLI tools) are recorded as ``lamina:internal``.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lamina.errors import InvalidParameterValue, StoreError

REDACTED = "****"
INTERNAL = "lamina:internal"
principal: ContextVar[str] = ContextVar("lamina_principal", default=INTERNAL)

SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    principal TEXT NOT NULL,
    operation TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX IF NOT EXISTS history_resource ON history(kind, resource, id);
"""


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    time: float  # epoch seconds
    principal: str  # ARN of the caller, or INTERNAL
    operation: str  # the API operation, e.g. "UpdateFunctionConfiguration"
    kind: str  # "function" (versions, aliases, event configs, tags) or "layer"
    resource: str  # function or layer name
    before: Any  # the document(s) before the change; None for a creation
    after: Any  # after; None for a deletion

    def to_json(self) -> dict[str, Any]:
        return {
            "Id": self.id, "Time": self.time, "Principal": self.principal, "Operation": self.operation,
            "ResourceType": self.kind, "Resource": self.resource, "Before": self.before, "After": self.after,
        }  # fmt: skip


class Recorder(Protocol):
    """What the control plane calls once per successful mutating operation."""

    def record(self, operation: str, resource: str, before: object, after: object, *, kind: str = "function") -> None:
        ...


class NoHistory:
    """The recorder of a control plane assembled without history (unit tests)."""

    def record(self, operation: str, resource: str, before: object, after: object, *, kind: str = "function") -> None:
        return None


NO_HISTORY: Recorder = NoHistory()


def document(value: object) -> Any:
    """A JSON-able, redacted document of a model object, a sequence of them, or plain data."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _redacted({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return _redacted(value)
    if isinstance(value, Sequence | set | frozenset):
        return [document(v) for v in value]
    return str(value)


def _redacted(fields: Mapping[Any, Any]) -> dict[str, Any]:
    """Any ``environment`` mapping (a FunctionVersion's variables) keeps its names only."""
    doc: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "environment" and isinstance(value, Mapping):
            doc[str(key)] = {str(k): REDACTED for k in value}
        else:
            doc[str(key)] = document(value)
    return doc


class HistoryStore:
    """Append-only SQLite history; ``record`` returns once the entry is on disk.

    Usable from any thread (some control-plane calls run in ``asyncio.to_thread``, which
    carries the principal's context along); one lock serialises use of the connection."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open history {path}: {exc}") from exc

    def record(self, operation: str, resource: str, before: object, after: object, *, kind: str = "function") -> None:
        row = (
            self.clock(), principal.get(), operation, kind, resource,
            _dump(before), _dump(after),
        )  # fmt: skip
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO history (time, principal, operation, kind, resource, before, after) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write history {self.path}: {exc}") from exc

    def entries(
        self, resource: str | None = None, *, kind: str = "function", after_id: int = 0, limit: int = 100
    ) -> list[HistoryEntry]:
        """Oldest first, from ``after_id`` on; every resource of ``kind`` when ``resource`` is None."""
        where, args = "kind = ? AND id > ?", [kind, after_id]
        if resource is not None:
            where, args = where + " AND resource = ?", [*args, resource]
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, time, principal, operation, kind, resource, before, after FROM history "
                    f"WHERE {where} ORDER BY id LIMIT ?",
                    (*args, limit),
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read history {self.path}: {exc}") from exc
        return [
            HistoryEntry(r[0], r[1], r[2], r[3], r[4], r[5], _load(r[6]), _load(r[7])) for r in rows
        ]

    def page(self, resource: str, query: Mapping[str, str]) -> dict[str, Any]:
        """The API route's answer: ``?Marker=<id>&MaxItems=<n>`` (1–1000, default 100)."""
        try:
            after = int(query.get("Marker") or 0)
            limit = int(query.get("MaxItems") or 100)
        except ValueError:
            after, limit = -1, -1
        if after < 0 or not 1 <= limit <= 1000:
            raise InvalidParameterValue("Marker must be an entry id and MaxItems between 1 and 1000.")
        found = self.entries(resource, after_id=after, limit=limit + 1)
        doc: dict[str, Any] = {"Entries": [e.to_json() for e in found[:limit]]}
        if len(found) > limit:
            doc["NextMarker"] = str(found[limit - 1].id)
        return doc

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _dump(value: object) -> str | None:
    return None if value is None else json.dumps(document(value), sort_keys=True)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)
