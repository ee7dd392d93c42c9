"""Traces through the real server: X-Amzn-Trace-Id reaches the handler and the recorded spans.

A function with TracingConfig Active records the platform's phases of every invoke under the
caller's Root; PassThrough records only what the caller sampled. Spans are read back over the
signed GET /_lamina/traces route and with `lamina traces`.
"""

from __future__ import annotations

import io
import json
import secrets
import time
import urllib.error
import urllib.request
from contextlib import redirect_stdout
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from test_compat_support import REGION, Functions, Server, client_for, make_zip

from lamina import cli

CODE = "import os\ndef handler(event, context):\n    return {'trace': os.environ.get('_X_AMZN_TRACE_ID')}\n"


def new_root() -> str:
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def get_json(server: Server, path: str) -> Any:
    key, secret = server.credentials()
    url = f"{server.endpoint}{path}"
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials(key, secret), "lambda", REGION).add_auth(request)
    headers = dict(request.prepare().headers)
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
        return json.loads(resp.read())


def trace_status(server: Server, root: str) -> int:
    try:
        get_json(server, f"/_lamina/traces/{root}")
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    return 200


def invoke_with_header(server: Server, name: str, header: str, **params: Any) -> Any:
    """Invoke through boto3 with X-Amzn-Trace-Id set on the wire (as an upstream service would)."""
    client = client_for(server)

    def add_header(request: Any, **_: Any) -> None:
        request.headers["X-Amzn-Trace-Id"] = header

    client.meta.events.register_first("before-sign.lambda.Invoke", add_header)
    return client.invoke(FunctionName=name, **params)


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["Name"]: s for s in spans}


def test_sampled_invoke_reaches_handler_and_records_phases(
    server: Server, functions: Functions, fn_name: str
) -> None:
    functions.create(fn_name, code=make_zip({"index.py": CODE}), TracingConfig={"Mode": "Active"})
    root, parent = new_root(), secrets.token_hex(8)
    response = invoke_with_header(server, fn_name, f"Root={root};Parent={parent};Sampled=1")
    seen = json.loads(response["Payload"].read())["trace"]
    fields = dict(part.split("=", 1) for part in seen.split(";"))
    assert fields["Root"] == root and fields["Sampled"] == "1"

    spans = get_json(server, f"/_lamina/traces/{root}")["Spans"]
    named = by_name(spans)
    assert {"lamina.frontend", "lamina.acquire", "lamina.init", "lamina.invoke", "lamina.response"} <= set(named)
    assert all(s["TraceId"] == root for s in spans)
    front = named["lamina.frontend"]
    assert front["ParentId"] == parent  # the caller's segment is our root's parent
    assert fields["Parent"] == front["Id"]  # the function's parent is the platform's segment
    assert front["Attributes"]["function"] == fn_name
    for phase in ("lamina.acquire", "lamina.invoke", "lamina.response"):
        span = named[phase]
        assert span["ParentId"] == front["Id"]
        assert front["StartTime"] <= span["StartTime"] <= span["EndTime"] <= front["EndTime"]
    assert named["lamina.init"]["ParentId"] == named["lamina.acquire"]["Id"]
    assert named["lamina.acquire"]["EndTime"] <= named["lamina.invoke"]["StartTime"] + 1e-6
    assert named["lamina.invoke"]["EndTime"] <= named["lamina.response"]["StartTime"] + 1e-6

    warm_root = new_root()
    invoke_with_header(server, fn_name, f"Root={warm_root};Sampled=1")
    warm = by_name(get_json(server, f"/_lamina/traces/{warm_root}")["Spans"])
    assert "lamina.init" not in warm and "lamina.invoke" in warm

    summaries = get_json(server, f"/_lamina/traces?FunctionName={fn_name}")["TraceSummaries"]
    assert [s["Id"] for s in summaries][:2] == [warm_root, root]


def test_active_without_header_samples_and_says_so(server: Server, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, code=make_zip({"index.py": CODE}), TracingConfig={"Mode": "Active"})
    seen = json.loads(client_for(server).invoke(FunctionName=fn_name)["Payload"].read())["trace"]
    fields = dict(part.split("=", 1) for part in seen.split(";"))
    assert fields["Sampled"] == "1"
    assert trace_status(server, fields["Root"]) == 200
    root = new_root()
    invoke_with_header(server, fn_name, f"Root={root};Sampled=0")
    assert trace_status(server, root) == 404


def test_passthrough_records_only_sampled_requests(server: Server, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, code=make_zip({"index.py": CODE}))  # PassThrough is the default
    root = new_root()
    seen = json.loads(invoke_with_header(server, fn_name, f"Root={root}")["Payload"].read())["trace"]
    assert f"Root={root}" in seen
    assert trace_status(server, root) == 404
    sampled = new_root()
    invoke_with_header(server, fn_name, f"Root={sampled};Sampled=1")
    assert "lamina.invoke" in by_name(get_json(server, f"/_lamina/traces/{sampled}")["Spans"])


def test_event_invoke_records_queue_wait(server: Server, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, code=make_zip({"index.py": CODE}), TracingConfig={"Mode": "Active"})
    root = new_root()
    response = invoke_with_header(server, fn_name, f"Root={root};Sampled=1", InvocationType="Event")
    assert response["StatusCode"] == 202
    deadline = time.monotonic() + 20
    named: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and "lamina.invoke" not in named:
        time.sleep(0.1)
        if trace_status(server, root) == 200:
            named = by_name(get_json(server, f"/_lamina/traces/{root}")["Spans"])
    assert {"lamina.frontend", "lamina.event", "lamina.queue", "lamina.invoke"} <= set(named)
    event, queue = named["lamina.event"], named["lamina.queue"]
    assert event["ParentId"] == named["lamina.frontend"]["Id"]  # the 202's segment, then the attempt
    assert queue["ParentId"] == event["Id"] and queue["EndTime"] >= queue["StartTime"]
    assert named["lamina.invoke"]["ParentId"] == event["Id"]


def test_trace_route_requires_signature_and_cli_prints_spans(
    server: Server, functions: Functions, fn_name: str
) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.endpoint}/_lamina/traces", timeout=10)
    assert info.value.code == 403
    info.value.close()
    functions.create(fn_name, code=make_zip({"index.py": CODE}), TracingConfig={"Mode": "Active"})
    root = new_root()
    invoke_with_header(server, fn_name, f"Root={root};Sampled=1")
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(["traces", "get", root, "--data-dir", str(server.data_dir), "--endpoint", server.endpoint])
    assert code == 0
    names = {json.loads(line)["Name"] for line in out.getvalue().splitlines()}
    assert "lamina.frontend" in names and "lamina.invoke" in names
