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
