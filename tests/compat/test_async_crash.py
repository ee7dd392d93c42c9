"""kill -9 of a busy server, again and again: no acknowledged Event invoke is ever lost.

Client threads stream Event invokes while the server is SIGKILLed (the whole process group)
at random moments and restarted on the same data dir. Every request id answered with 202 is
recorded. After the last restart has drained, every one of them must have *provably* run or
be on the dead-letter list.

What counts as proof has to survive the kills itself. Log lines do not (logs.db is flushed
every 0.2 s, so a kill loses the last moments), and an id merely missing from events.db
could be acked or could never have been written. So the function under test has an OnSuccess
destination whose reserved concurrency is 0: the destination never runs, and each success
record stays in events.db, written (durably, before the source event is acked) only after
the function returned. The record names the source request id, and its responsePayload is
what the function returned: its own ``context.aws_request_id``. An id is

- executed: a success record for it exists with that id in responsePayload;
- dead-lettered: its own event is in events.db in state ``dead`` (e.g. killed mid-run more
  often than its retries allow);
- lost: neither. Must be 0. (Still ready/leased after the drain also fails the test.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError
from test_compat_support import (
    LAMINA,
    Functions,
    Server,
    client_for,
    function_arn,
    make_zip,
    stop_server,
    invoker_role,
)

from lamina.invoke.queue import StoredEvent, events_db_path, read_events

pytestmark = pytest.mark.root

SEED = 20240611
STREAM_S = 45.0  # time spent streaming and killing
DRAIN_S = 25.0
KILLS = (15, 25)  # at least / at most
CLIENT_THREADS = 4
ENV = {"LAMINA_ASYNC_RETRY_DELAYS": "0.1,0.2", "LAMINA_ASYNC_THROTTLE_BASE": "1",
       "LAMINA_ASYNC_THROTTLE_CAP": "30"}
SOURCE, SINK = "crash-source", "crash-sink"
ECHO = "def handler(event, context):\n    return {'rid': context.aws_request_id}\n"


class Stream:
    """Client threads sending Event invokes to whichever server is current."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.acknowledged: set[str] = set()
        self.refused = 0  # connection errors while the server was down
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                        for n in range(CLIENT_THREADS)]

    def _run(self, n: int) -> None:
        client: tuple[Server, Any] | None = None
        count = 0
        while not self.stop.is_set():
            server = self.server
            if client is None or client[0] is not server:
                client = (server, client_for(server))
            count += 1
            try:
                out = client[1].invoke(FunctionName=SOURCE, InvocationType="Event",
                                       Payload=json.dumps({"thread": n, "n": count}).encode())
            except (BotoCoreError, ClientError):
                with self.lock:
                    self.refused += 1
                time.sleep(0.05)
                continue
            if out["StatusCode"] == 202:
                with self.lock:
                    self.acknowledged.add(out["ResponseMetadata"]["RequestId"])
            time.sleep(0.005)  # leave the two cores some room to run the events


def kill(server: Server) -> None:
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    stop_server(server)  # only forgets it: the process is gone


def queue_state(data_dir: Path) -> tuple[list[StoredEvent], list[StoredEvent]]:
    """(source events, success records) in events.db, read straight from the file."""
    stored = read_events(events_db_path(data_dir))
    return ([s for s in stored if s.event.function == SOURCE],
            [s for s in stored if s.event.function == SINK])


def wait_for(what: str, probe: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_sigkill_at_random_moments_loses_no_acknowledged_event(
        server_factory: Callable[..., Server], tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data_dir = tmp_path / "data"
    server = server_factory(data_dir, ENV)
    lam = client_for(server)
    functions = Functions(lam, role=invoker_role(server))
    functions.create(SINK, code=make_zip({"index.py": ECHO}))
    functions.create(SOURCE, code=make_zip({"index.py": ECHO}))
    lam.put_function_concurrency(FunctionName=SINK, ReservedConcurrentExecutions=0)
    lam.put_function_event_invoke_config(
        FunctionName=SOURCE, DestinationConfig={"OnSuccess": {"Destination": function_arn(SINK)}})

    stream = Stream(server)
    for thread in stream.threads:
        thread.start()
    kills = 0
    began = time.monotonic()
    try:
        while kills < KILLS[1] and (time.monotonic() - began < STREAM_S or kills < KILLS[0]):
            time.sleep(rng.uniform(0.3, 2.0))
            kill(server)
            kills += 1
            server = server_factory(data_dir, ENV)
            stream.server = server
        time.sleep(1.0)  # a little load on the last server too
    finally:
        stream.stop.set()
        for thread in stream.threads:
            thread.join(timeout=10)
    acknowledged = set(stream.acknowledged)

    def drained() -> bool:
        sources, _ = queue_state(data_dir)
        return not [s for s in sources if s.state != "dead"]

    streamed = time.monotonic() - began
    wait_for("the last server to drain its queue", drained, DRAIN_S)
    stop_server(server)  # SIGTERM: a clean stop, the queue file is now settled

    sources, records = queue_state(data_dir)
    dead = {s.event.request_id for s in sources if s.state == "dead"}
    stuck = {s.event.request_id for s in sources if s.state != "dead"}
    executed: dict[str, int] = {}
    for stored in records:
        record = json.loads(stored.event.payload)
        request_id = record["requestContext"]["requestId"]
        assert record["requestContext"]["condition"] == "Success"
        assert record["responsePayload"] == {"rid": request_id}  # the function itself ran
        executed[request_id] = executed.get(request_id, 0) + 1
    ran = set(executed)
    lost = acknowledged - ran - dead
    dead_only = (acknowledged & dead) - ran  # dead-lettered, no proof it ever ran
    print(f"\nasync crash test: kills={kills} acknowledged={len(acknowledged)} "
          f"executed={len(acknowledged & ran)} dead-lettered={len(dead_only)} lost={len(lost)} "
          f"stuck={len(stuck)} (executed and then also dead-lettered: {len(dead & ran)}, "
          f"executed more than once: {sum(1 for n in executed.values() if n > 1)}, "
          f"executed without a 202 seen: {len(ran - acknowledged)}, "
          f"client errors while down: {stream.refused}, "
          f"seconds streaming: {streamed:.1f}, draining: {time.monotonic() - began - streamed:.1f})")
    reasons = Counter((s.reason or "")[:40] for s in sources if s.state == "dead")
    print(f"dead-letter reasons: {dict(reasons)}")
    assert kills >= KILLS[0]
    assert len(acknowledged) > 5 * kills  # the stream really ran across the kills
    assert not stuck
    assert not lost, sorted(lost)[:10]
    for stored in sources:  # a dead-lettered event says why
        assert stored.reason, stored
    listed = subprocess.run([str(LAMINA), "events", "list", "--data-dir", str(data_dir)],
                            capture_output=True, text=True, timeout=30, check=True).stdout
    operators_see = {json.loads(line)["RequestId"] for line in listed.splitlines() if line.strip()}
    assert dead_only <= operators_see  # the dead-letter list, as `lamina events list` shows it
