"""`lamina traces list|get`: the server's recent traces, read over its signed /_lamina/traces route.

Traces live in the running server's memory (the last 1000), so unlike `lamina history` this
asks the server: a GET signed with SigV4 (scope service "lambda") by the administrator's key
from ``DIR/credentials``. An HTTPS endpoint is trusted through ``DIR/tls/ca.pem`` when the
server generated its own CA.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def _credentials(data_dir: Path) -> Credentials:
    parser = configparser.ConfigParser()
    parser.read(data_dir / "credentials")
    section = parser["default"]
    return Credentials(section["aws_access_key_id"], section["aws_secret_access_key"])


def fetch(endpoint: str, path: str, data_dir: Path, region: str, query: dict[str, str] | None = None) -> Any:
    """A signed GET of ``path`` on the server; the decoded JSON answer."""
    url = endpoint.rstrip("/") + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(_credentials(data_dir), "lambda", region).add_auth(request)
    headers = dict(request.prepare().headers)
    ca = data_dir / "tls" / "ca.pem"
    context = ssl.create_default_context(cafile=str(ca)) if url.startswith("https:") and ca.exists() else None
    with urllib.request.urlopen(
        urllib.request.Request(url, headers=headers, method="GET"), timeout=10, context=context
    ) as resp:
        return json.loads(resp.read())


def show(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up per call: redirect_stdout and pytest swap it
    data_dir = Path(args.data_dir).resolve()
    try:
        if args.traces_command == "get":
            doc = fetch(args.endpoint, f"/_lamina/traces/{urllib.parse.quote(args.trace_id)}", data_dir, args.region)
            for span in doc["Spans"]:
                print(json.dumps(span, sort_keys=True), file=out)
        else:
            query = {"MaxItems": str(args.limit)}
            if args.function:
                query["FunctionName"] = args.function
            doc = fetch(args.endpoint, "/_lamina/traces", data_dir, args.region, query)
            for summary in doc["TraceSummaries"]:
                print(json.dumps(summary, sort_keys=True), file=out)
    except urllib.error.HTTPError as exc:
        kind = exc.headers.get("x-amzn-errortype", "")
        exc.close()
        print(f"lamina: {exc.code} {kind}".rstrip(), file=sys.stderr)
        return 1
    except (OSError, KeyError) as exc:
        print(f"lamina: cannot read traces: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `traces` on lamina's top-level subcommands."""
    traces = sub.add_parser("traces", help="recent traces of sampled invokes (JSON lines)")
    traces_sub = traces.add_subparsers(dest="traces_command", required=True)
    listing = traces_sub.add_parser("list", help="trace summaries, newest first")
    listing.add_argument("--function", default=None, help="only traces of this function")
    listing.add_argument("--limit", type=int, default=100)
    get = traces_sub.add_parser("get", help="the spans of one trace")
    get.add_argument("trace_id", metavar="TRACE_ID", help="X-Ray trace id, 1-xxxxxxxx-...")
    for parser in (listing, get):
        parser.add_argument("--data-dir", required=True, help="the server's data dir (for DIR/credentials)")
        parser.add_argument("--endpoint", default="http://127.0.0.1:9000")
        parser.add_argument("--region", default=os.environ.get("LAMINA_REGION", "us-east-1"))
        parser.set_defaults(func=show)
