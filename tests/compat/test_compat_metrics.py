"""/_lamina/metrics after a known sequence of invokes, function errors and throttles.

The counters are labelled by function, so the session server's other traffic cannot move the
values asserted here: each test uses a function of its own.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_compat_support import Functions, Server, error_of, make_zip

CODE = '''
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": True}
'''


def scrape(server: Server) -> tuple[str, str]:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/metrics", timeout=10) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def invoke(lam: Any, name: str, payload: bytes = b"{}", **params: Any) -> dict[str, Any]:
    """Invokes and reads the payload, so the connection goes back to botocore's pool."""
    response: dict[str, Any] = lam.invoke(FunctionName=name, Payload=payload, **params)
    response["Payload"] = response["Payload"].read()
    return response


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    found = []
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)\{(.*)\} (\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(m.group(3)))
    assert len(found) <= 1, f"{name}{labels} is ambiguous: {found}"
    return found[0] if found else None


def test_counters_after_successes_errors_and_throttles(
    server: Server, lam: Any, functions: Functions, fn_name: str
) -> None:
    successes, errors, throttles = 3, 2, 4
    functions.create(fn_name, code=make_zip({"index.py": CODE}))
    for _ in range(successes):
        assert "FunctionError" not in invoke(lam, fn_name)
    for _ in range(errors):
        response = invoke(lam, fn_name, json.dumps({"fail": True}).encode())
        assert response["FunctionError"] == "Unhandled"
    lam.put_function_concurrency(FunctionName=fn_name, ReservedConcurrentExecutions=0)
    for _ in range(throttles):
        with pytest.raises(ClientError) as info:
            invoke(lam, fn_name)
        assert error_of(info)[:2] == ("TooManyRequestsException", 429)

    content_type, text = scrape(server)
    assert content_type.startswith("text/plain; version=0.0.4")
    labels = {"function": fn_name, "version": "$LATEST"}
    assert sample(text, "lamina_invocations_total", **labels) == successes + errors
    assert sample(text, "lamina_errors_total", **labels) == errors
    assert sample(text, "lamina_throttles_total", **labels) == throttles
    assert sample(text, "lamina_duration_seconds_count", **labels) == successes + errors
    assert sample(text, "lamina_duration_seconds_bucket", le="+Inf", **labels) == successes + errors
    assert (sample(text, "lamina_duration_seconds_sum", **labels) or 0) > 0
    cold = sample(text, "lamina_cold_starts_total", **labels)
    assert cold is not None and 1 <= cold <= successes + errors
    assert sample(text, "lamina_concurrent_executions", **labels) == 0
    assert "# TYPE lamina_duration_seconds histogram" in text
    assert "# TYPE lamina_async_queue_depth gauge" in text


def test_published_version_is_its_own_series(
    server: Server, lam: Any, functions: Functions, fn_name: str
) -> None:
    functions.create(fn_name, code=make_zip({"index.py": CODE}))
    version = lam.publish_version(FunctionName=fn_name)["Version"]
    invoke(lam, fn_name, Qualifier=version)
    invoke(lam, fn_name, json.dumps({"fail": True}).encode(), Qualifier=version)
    _, text = scrape(server)
    assert sample(text, "lamina_invocations_total", function=fn_name, version=version) == 2
    assert sample(text, "lamina_errors_total", function=fn_name, version=version) == 1
    assert sample(text, "lamina_invocations_total", function=fn_name, version="$LATEST") is None


def test_event_invoke_counts_received_and_age(
    server: Server, lam: Any, functions: Functions, fn_name: str
) -> None:
    functions.create(fn_name, code=make_zip({"index.py": CODE}))
    assert invoke(lam, fn_name, InvocationType="Event")["StatusCode"] == 202
    labels = {"function": fn_name, "version": "$LATEST"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _, text = scrape(server)
        if sample(text, "lamina_invocations_total", **labels) == 1:
            break
        time.sleep(0.1)
    assert sample(text, "lamina_async_events_received_total", **labels) == 1
    assert sample(text, "lamina_async_event_age_seconds_count", **labels) == 1
    assert sample(text, "lamina_invocations_total", **labels) == 1
