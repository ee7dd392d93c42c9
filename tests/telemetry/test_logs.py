"""LogStore: batched appends, bounded groups, streams, durability across reopen."""

from __future__ import annotations

import threading
from pathlib import Path

from lamina.telemetry.logs import LogStore

G = "/aws/lambda/fn"
S1 = "2024/01/01/[$LATEST]aaaa"
S2 = "2024/01/01/[$LATEST]bbbb"


def test_append_is_invisible_until_flush_then_ordered(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db")
    store.append(G, S1, [(100, "START"), (101, "hello")])
    store.append(G, S2, [(102, "other env")])
    assert store.flush(now_ms=500) == 3
    assert store.flush() == 0
    events = store.events(G)
    assert [e.message for e in events] == ["START", "hello", "other env"]
    assert [e.timestamp for e in events] == [100, 101, 102]
    assert {e.ingestion_time for e in events} == {500}
    assert [e.message for e in store.events(G, S2)] == ["other env"]
    assert store.events("/aws/lambda/none") == []
    store.close()


def test_events_flushes_pending_first(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db")
    store.append(G, S1, [(1, "x")])
    assert [e.message for e in store.events(G, S1)] == ["x"]
    assert [e.ingestion_time for e in store.events(G, S1)] == [1]  # defaults to the timestamp
    store.close()


def test_streams_are_listed_once_in_creation_order(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db")
    store.append(G, S2, [(200, "b1"), (50, "b0")])  # one batch, timestamps out of order
    store.append(G, S1, [(100, "a")])
    store.flush()
    store.append(G, S1, [(300, "a again")])
    assert store.streams(G) == [S2, S1]  # S2 was created at 50, its earliest event
    assert store.streams("/aws/lambda/none") == []
    store.close()


def test_each_group_is_bounded_oldest_dropped(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db", max_events_per_group=5)
    for i in range(12):
        store.append(G, S1, [(i, f"m{i}")])
        if i % 4 == 3:
            store.flush()
    store.append("/aws/lambda/quiet", S1, [(0, "kept")])
    store.flush()
    assert [e.message for e in store.events(G)] == [f"m{i}" for i in range(7, 12)]
    assert [e.message for e in store.events("/aws/lambda/quiet")] == ["kept"]
    store.close()


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    store = LogStore(path)
    store.append(G, S1, [(1, "before restart")])
    store.close()  # close flushes what is pending
    again = LogStore(path)
    assert [e.message for e in again.events(G)] == ["before restart"]
    assert again.streams(G) == [S1]
    again.close()


def test_concurrent_flushes_lose_nothing(tmp_path: Path) -> None:
    # The flusher runs in a worker thread while reads flush from the event loop's thread.
    store = LogStore(tmp_path / "logs.db")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(60):
                store.append(G, f"s{n}", [(i, f"{n}:{i}")])
                store.flush()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.events(G)) == 240
    store.close()


def test_an_old_logs_db_gains_groups_and_stays_readable(tmp_path: Path) -> None:
    import sqlite3

    from lamina.telemetry.logs import SCHEMA

    path = tmp_path / "logs.db"
    old = sqlite3.connect(path)  # the schema before groups existed (user_version 0)
    old.executescript(SCHEMA)
    old.execute("INSERT INTO streams VALUES (?, ?, 40)", (G, S1))
    old.execute("INSERT INTO events(grp, stream, ts, ingested, message) VALUES (?, ?, 50, 50, 'kept')", (G, S1))
    old.commit()
    old.close()
    store = LogStore(path)
    assert [e.message for e in store.events(G)] == ["kept"]
    [group] = store.groups()
    assert (group.name, group.created, group.retention_days, group.stored_bytes) == (G, 40, None, 4)
    store.close()
    assert [g.name for g in LogStore(path).groups()] == [G]  # reopening does not migrate twice


def test_retention_drops_old_events_at_once_and_in_the_flush_path(tmp_path: Path) -> None:
    import time

    now = int(time.time() * 1000)
    store = LogStore(tmp_path / "logs.db", maintenance_interval=0.0)
    store.append(G, S1, [(now - 3 * 86_400_000, "old"), (now, "new")])
    store.append("/aws/lambda/other", S1, [(now - 3 * 86_400_000, "no policy")])
    store.flush()
    assert store.set_retention(G, 1)
    assert [e.message for e in store.events(G)] == ["new"]
    store.append(G, S1, [(now - 2 * 86_400_000, "late but old")])
    store.flush()
    assert [e.message for e in store.events(G)] == ["new"]
    assert [e.message for e in store.events("/aws/lambda/other")] == ["no policy"]
    assert not store.set_retention("/aws/lambda/none", 1)
    store.close()


def test_groups_and_streams_describe_themselves(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db")
    assert store.create_group("/custom/g") and not store.create_group("/custom/g")
    store.append(G, S1, [(10, "abc"), (30, "de")])
    store.flush(now_ms=99)
    assert [g.name for g in store.groups()] == ["/aws/lambda/fn", "/custom/g"]
    assert [g.name for g in store.groups(prefix="/custom")] == ["/custom/g"]
    assert [g.name for g in store.groups(contains="LAMBDA")] == [G]
    [info] = store.stream_infos(G)
    assert (info.name, info.first_event, info.last_event, info.last_ingestion, info.stored_bytes) == (S1, 10, 30, 99, 5)
    assert store.delete_group(G) and not store.delete_group(G)
    assert store.events(G) == [] and store.streams(G) == []
    store.close()


def test_stream_events_and_scan_follow_time_then_id(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db")
    store.append(G, S1, [(5, "a"), (5, "b"), (7, "c")])
    store.append(G, S2, [(6, "x")])
    store.flush()
    head = store.stream_events(G, S1, start=None, end=None, limit=2, from_tail=False)
    assert [e.message for e in head] == ["a", "b"]
    rest = store.stream_events(G, S1, start=None, end=None, limit=9, from_tail=False,
                               after=(head[-1].timestamp, head[-1].id))
    assert [e.message for e in rest] == ["c"]
    tail = store.stream_events(G, S1, start=None, end=None, limit=2, from_tail=True)
    assert [e.message for e in tail] == ["b", "c"]
    everything = store.scan(G, streams=None, prefix="", start=None, end=None, after=None, limit=10)
    assert [e.message for e in everything] == ["a", "b", "x", "c"]
    after_b = store.scan(G, streams=[S2], prefix="", start=None, end=None, after=(5, everything[1].id), limit=10)
    assert [e.message for e in after_b] == ["x"]
    store.close()
