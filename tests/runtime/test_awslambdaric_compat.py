"""Proof that the Runtime API is the real one: AWS's own awslambdaric runs against it.

awslambdaric is AWS's Python runtime interface client (its C extension wraps aws-lambda-cpp and
libcurl). It is a test-only dependency: ``.venv/bin/pip install awslambdaric``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Runner, make_invocation, start_env
from lamina.runtime import InitError, InvocationResult

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("awslambdaric") is None,
    reason="awslambdaric is not installed (pip install awslambdaric; it builds a C extension)",
)

FILES = {"handler.py": """
    count = 0
    def fn(event, context):
        global count
        count += 1
        if event.get("fail"):
            raise RuntimeError("asked to fail")
        if event.get("big"):
            return "z" * 5000
        return {"count": count, "event": event, "id": context.aws_request_id,
                "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 30000}
"""}


def _ric(task_root: Path) -> list[str]:
    return [sys.executable, "-m", "awslambdaric", "handler.fn"]


def test_awslambdaric_round_trips(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> list[InvocationResult]:
        async with start_env(tmp_path, FILES, "handler.fn", argv=_ric(tmp_path),
                             env={"PYTHONPATH": str(tmp_path)}) as env:
            await env.channel.wait_ready()
            out = []
            for payload in (b'{"a": 1}', b'{"fail": true}', b'{"big": true}', b'{"a": 2}'):
                out.append(await env.channel.invoke(make_invocation(payload)))
            return out

    ok1, failed, big, ok2 = run(scenario())
    assert ok1.ok and json.loads(ok1.body) == {"count": 1, "event": {"a": 1}, "id": ok1.request_id,
                                               "remaining_ok": True}
    doc = json.loads(failed.body)
    assert not failed.ok and doc["errorType"] == "RuntimeError" and doc["errorMessage"] == "asked to fail"
    assert doc["requestId"] == failed.request_id
    assert big.ok and json.loads(big.body) == "z" * 5000  # > 1 KiB: curl's Expect: 100-continue path
    assert json.loads(ok2.body)["count"] == 4


def test_awslambdaric_init_error(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> InitError:
        async with start_env(tmp_path, {}, "missing.fn", argv=[sys.executable, "-m", "awslambdaric",
                                                               "missing.fn"]) as env:
            with pytest.raises(InitError) as info:
                await env.channel.wait_ready()
            return info.value

    err = run(scenario())
    assert err.error_type == "Runtime.ImportModuleError"
    assert json.loads(err.body)["errorMessage"] == (
        "Unable to import module 'missing': No module named 'missing'")
