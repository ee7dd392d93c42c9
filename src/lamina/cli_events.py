"""`lamina events list|replay`: the operator's view of events that ran out of retries or age.

Works on ``DIR/events.db`` directly, with or without the server running: listing only reads,
and a replayed event becomes ready in the table the server's poller reads on every lease.
A replay keeps the request id (at-least-once, same id) and restarts the event's age and
attempt count, or an old event would age out again at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TextIO

from lamina.invoke.queue import StoredEvent, events_db_path, read_events, replay


def _line(stored: StoredEvent) -> str:
    event = stored.event
    return json.dumps(
        {
            "RequestId": event.request_id,
            "FunctionName": event.function,
            "Qualifier": event.qualifier,
            "State": stored.state,
            "Attempts": event.attempts,
            "EnqueuedAt": event.enqueued_at,
            "Since": stored.due,
            "Reason": stored.reason,
            "LastError": stored.error,
            "PayloadBytes": len(event.payload),
        }
    )


def list_events(data_dir: Path, *, all_states: bool = False, out: TextIO = sys.stdout) -> int:
    """Prints one JSON object per dead-lettered event (every event with ``all_states``)."""
    path = events_db_path(data_dir)
    if not path.exists():
        print(f"lamina: no event queue in {data_dir}", file=sys.stderr)
        return 1
    for stored in read_events(path, None if all_states else "dead"):
        print(_line(stored), file=out)
    return 0


def replay_events(
    data_dir: Path, request_id: str | None, *, now: float | None = None, out: TextIO = sys.stdout
) -> int:
    """Makes one dead-lettered event (or all when ``request_id`` is None) run again."""
    path = events_db_path(data_dir)
    if not path.exists():
        print(f"lamina: no event queue in {data_dir}", file=sys.stderr)
        return 1
    count = replay(path, request_id, time.time() if now is None else now)
    if request_id is not None and count == 0:
        print(f"lamina: no dead-lettered event {request_id}", file=sys.stderr)
        return 1
    print(f"replayed {count} event(s)", file=out)
    return 0


def _list(args: argparse.Namespace) -> int:
    return list_events(Path(args.data_dir).resolve(), all_states=args.all)


def _replay(args: argparse.Namespace) -> int:
    if (args.request_id is None) == (not args.all):
        print("lamina: give a REQUEST_ID or --all", file=sys.stderr)
        return 2
    return replay_events(Path(args.data_dir).resolve(), args.request_id)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `events list` and `events replay` on lamina's top-level subcommands."""
    events = sub.add_parser("events", help="asynchronous events that ran out of retries or age")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    lst = events_sub.add_parser("list", help="list dead-lettered events (JSON lines)")
    lst.add_argument("--data-dir", required=True)
    lst.add_argument("--all", action="store_true", help="every queued event, not only dead-lettered ones")
    lst.set_defaults(func=_list)
    rep = events_sub.add_parser("replay", help="queue dead-lettered events again (same request id)")
    rep.add_argument("--data-dir", required=True)
    rep.add_argument("request_id", nargs="?", default=None, metavar="REQUEST_ID")
    rep.add_argument("--all", action="store_true", help="replay every dead-lettered event")
    rep.set_defaults(func=_replay)
