"""kill -9 of a process writing the queue, many times at random moments: nothing acknowledged is lost.

The child reopens the queue (running crash recovery), leases a few events, then puts events
from 8 concurrent writers and prints each id once ``put`` returned: exactly the moment the
server would answer 202. After every SIGKILL the parent checks that every printed id is on
disk and that every event the child held leased comes back with one more attempt.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from lamina.invoke.queue import SqliteEventQueue, StoredEvent, read_events

CHILD = r"""
import asyncio, itertools, sys, time
from pathlib import Path
from lamina.invoke.events import QueuedEvent
from lamina.invoke.queue import SqliteEventQueue

async def main(path, tag):
    q = await SqliteEventQueue.open(Path(path))
    for lease in await q.lease(5, time.time(), 3600.0):
        print("L", lease.event.request_id, lease.event.attempts, flush=True)
    counter = itertools.count()

    async def writer(w):
        while True:
            rid = f"{tag}-{w}-{next(counter)}"
            await q.put(QueuedEvent(rid, "fn", None, b'{"n": 1}', time.time()))
            print("P", rid, flush=True)

    await asyncio.gather(*(writer(w) for w in range(8)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

ROUNDS = 30


def _complete_lines(raw: bytes) -> list[list[str]]:
    text = raw.decode()
    if not text.endswith("\n"):  # the kill may cut the last line short
        text = text[: text.rfind("\n") + 1]
    return [line.split() for line in text.splitlines()]


async def _reopen_and_read(path: Path) -> dict[str, StoredEvent]:
    """What a restarted server sees: the queue after crash recovery."""
    queue = await SqliteEventQueue.open(path)
    try:
        return {s.event.request_id: s for s in await queue.events()}
    finally:
        await queue.close()


def _trim(path: Path, keep: int) -> None:
    """Acks all but ``keep`` events (through the queue's own API) so the file stays small."""

    async def trim() -> None:
        queue = await SqliteEventQueue.open(path)
        leases = await queue.lease(1_000_000, time.time() + 1.0, 3600.0)
        await asyncio.gather(*(queue.ack(lease.event.request_id) for lease in leases[keep:]))
        for lease in leases[:keep]:  # back to ready, attempts unchanged
            event = lease.event
            await queue.retry(event.request_id, attempts=event.attempts, not_before=0.0, error="")
        await queue.close()

    asyncio.run(trim())


def test_sigkill_loses_no_acknowledged_event(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    rng = random.Random(int(os.environ.get("LAMINA_CRASH_SEED", "4")))
    total_acknowledged = 0
    checked_leases = 0
    for round_no in range(ROUNDS):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), f"r{round_no}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0.05, 0.3))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, err.decode()
        lines = _complete_lines(out)
        acknowledged = {rid for kind, rid, *_ in lines if kind == "P"}
        total_acknowledged += len(acknowledged)
        leased = {rid: int(attempts) for kind, rid, attempts in (x for x in lines if x[0] == "L")}

        before = {s.event.request_id: s for s in read_events(path)}
        missing = acknowledged - before.keys()
        assert not missing, f"round {round_no}: {len(missing)} acknowledged events lost"
        for rid, attempts in leased.items():
            assert (before[rid].state, before[rid].event.attempts) == ("leased", attempts)

        recovered = asyncio.run(_reopen_and_read(path))
        assert recovered.keys() == before.keys()
        assert all(s.state == "ready" for s in recovered.values())
        for rid, attempts in leased.items():
            assert recovered[rid].event.attempts == attempts + 1
            checked_leases += 1
        _trim(path, keep=20)
    assert total_acknowledged > ROUNDS * 10  # the children really were writing when killed
    assert checked_leases >= ROUNDS // 2  # and really held leases
