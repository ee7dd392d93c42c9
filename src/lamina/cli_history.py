"""`lamina history FUNCTION`: who changed a function's configuration, when, and what changed.

Reads ``DIR/history.db`` directly, with or without the server running (WAL lets a reader in
beside the server's writes). Prints one JSON object per entry, oldest first, with the
configuration before and after (environment variable values already redacted when recorded).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from lamina.telemetry.history import HistoryStore


def history_db_path(data_dir: Path) -> Path:
    return data_dir / "history.db"


def _resource_name(name_or_arn: str) -> str:
    """A function (or layer) name from a name or an ARN such as arn:aws:lambda:r:a:function:NAME[:q]."""
    if not name_or_arn.startswith("arn:"):
        return name_or_arn
    parts = name_or_arn.split(":")
    return parts[6] if len(parts) > 6 else name_or_arn


def show_history(
    data_dir: Path, name: str, *, layer: bool = False, after_id: int = 0, limit: int = 1000,
    out: TextIO = sys.stdout,
) -> int:  # fmt: skip
    """Prints the entries of function (or layer) ``name``; 1 when there is no history at all."""
    path = history_db_path(data_dir)
    if not path.exists():
        print(f"lamina: no configuration history in {data_dir}", file=sys.stderr)
        return 1
    store = HistoryStore(path)
    try:
        kind = "layer" if layer else "function"
        for entry in store.entries(_resource_name(name), kind=kind, after_id=after_id, limit=limit):
            print(json.dumps(entry.to_json(), sort_keys=True), file=out)
    finally:
        store.close()
    return 0


def _run(args: argparse.Namespace) -> int:
    return show_history(
        Path(args.data_dir).resolve(), args.name, layer=args.layer, after_id=args.after, limit=args.limit
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `history` on lamina's top-level subcommands."""
    hist = sub.add_parser("history", help="configuration changes of a function (JSON lines, oldest first)")
    hist.add_argument("name", metavar="FUNCTION", help="function name or ARN (layer name with --layer)")
    hist.add_argument("--data-dir", required=True)
    hist.add_argument("--layer", action="store_true", help="show a layer's history instead")
    hist.add_argument("--after", type=int, default=0, metavar="ID", help="only entries after this id")
    hist.add_argument("--limit", type=int, default=1000)
    hist.set_defaults(func=_run)
