"""The Python bootstrap as a real subprocess against the real Runtime API server."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typing import Any

from conftest import ARN, Runner, make_invocation, start_env
from lamina.runtime import RESPONSE_SIZE_TOO_LARGE, InitError, InvocationResult

Run = Runner


async def _invoke_once(tmp: Path, files: dict[str, str], handler: str, payload: bytes = b"{}",
                       **inv: Any) -> tuple[InvocationResult, str]:
    async with start_env(tmp, files, handler) as env:
        await env.channel.wait_ready()
        result = await env.channel.invoke(make_invocation(payload, **inv))
        return result, await env.output()


async def _init_error(tmp: Path, files: dict[str, str], handler: str) -> tuple[InitError, str, int]:
    async with start_env(tmp, files, handler) as env:
        with pytest.raises(InitError) as info:
            await env.channel.wait_ready()
        code = await env.proc.wait()
        return info.value, await env.output(), code


def test_result_and_globals_persist(tmp_path: Path, run: Run) -> None:
    files = {"app.py": """
        count = 0
        def handler(event, context):
            global count
            count += 1
            return {"count": count, "event": event}
    """}

    async def scenario() -> list[InvocationResult]:
        async with start_env(tmp_path, files, "app.handler") as env:
            await env.channel.wait_ready()
            return [await env.channel.invoke(make_invocation(b'{"i": %d}' % i)) for i in range(3)]

    results = run(scenario())
    assert [json.loads(r.body) for r in results] == [
        {"count": n + 1, "event": {"i": n}} for n in range(3)
    ]
    assert all(r.ok and r.error_type is None for r in results)


def test_none_bytes_and_unicode_responses(tmp_path: Path, run: Run) -> None:
    files = {"app.py": """
        def none(event, context):
            return None
        def raw(event, context):
            return b"\\x00raw"
        def uni(event, context):
            return {"s": "h\\u00e9\\u2603", "f": 1.5, "l": [True, None]}
    """}
    res, _ = run(_invoke_once(tmp_path, files, "app.none"))
    assert res.body == b"null"
    res, _ = run(_invoke_once(tmp_path, files, "app.raw"))
    assert res.body == b"\x00raw"
    res, _ = run(_invoke_once(tmp_path, files, "app.uni"))
    assert res.body == json.dumps({"s": "h\u00e9\u2603", "f": 1.5, "l": [True, None]}).encode()


def test_handler_in_subdir_and_package(tmp_path: Path, run: Run) -> None:
    files = {"src/mod.py": "def f(e, c):\n    return 'dir'\n",
             "pkg/__init__.py": "", "pkg/sub.py": "def f(e, c):\n    return 'pkg'\n"}
    res, _ = run(_invoke_once(tmp_path, files, "src/mod.f"))
    assert res.body == b'"dir"'
    res, _ = run(_invoke_once(tmp_path, files, "pkg.sub.f"))
    assert res.body == b'"pkg"'


def test_import_error(tmp_path: Path, run: Run) -> None:
    err, out, code = run(_init_error(tmp_path, {}, "missing.handler"))
    doc = json.loads(err.body)
    assert err.error_type == "Runtime.ImportModuleError"
    assert doc == {"errorMessage": "Unable to import module 'missing': No module named 'missing'",
                   "errorType": "Runtime.ImportModuleError", "requestId": "", "stackTrace": []}
    assert code == 1
    assert "[ERROR] Runtime.ImportModuleError: Unable to import module 'missing'" in out


def test_handler_not_found(tmp_path: Path, run: Run) -> None:
    err, _, _ = run(_init_error(tmp_path, {"app.py": "x = 1\n"}, "app.nope"))
    assert err.error_type == "Runtime.HandlerNotFound"
    assert json.loads(err.body)["errorMessage"] == "Handler 'nope' missing on module 'app'"


def test_syntax_error(tmp_path: Path, run: Run) -> None:
    err, _, _ = run(_init_error(tmp_path, {"app.py": "def f(:\n"}, "app.f"))
    doc = json.loads(err.body)
    assert err.error_type == "Runtime.UserCodeSyntaxError"
    assert doc["errorMessage"].startswith("Syntax error in module 'app': ")
    assert doc["stackTrace"][0].startswith(f'  File "{tmp_path / "app.py"}" Line 1\n    def f(:')


def test_malformed_handler_name(tmp_path: Path, run: Run) -> None:
    err, _, _ = run(_init_error(tmp_path, {}, "nodot"))
    assert err.error_type == "Runtime.MalformedHandlerName"
    assert json.loads(err.body)["errorMessage"].startswith("Bad handler 'nodot': ")


def test_exception_at_import_is_an_init_error(tmp_path: Path, run: Run) -> None:
    files = {"app.py": "raise KeyError('boom')\n"}
    err, _, _ = run(_init_error(tmp_path, files, "app.f"))
    doc = json.loads(err.body)
    assert (err.error_type, doc["errorType"], doc["errorMessage"]) == ("KeyError", "KeyError", "'boom'")
    assert "app.py" in doc["stackTrace"][-1]


def test_handler_exception(tmp_path: Path, run: Run) -> None:
    files = {"app.py": """
        def helper():
            raise ValueError("bad value")
        def handler(event, context):
            helper()
    """}
    res, out = run(_invoke_once(tmp_path, files, "app.handler"))
    doc = json.loads(res.body)
    assert not res.ok and res.error_type is None  # awslambdaric sends no error-type header
    assert doc["errorType"] == "ValueError" and doc["errorMessage"] == "bad value"
    assert doc["requestId"] == res.request_id
    path = tmp_path / "app.py"
    assert doc["stackTrace"] == [
        f'  File "{path}", line 5, in handler\n    helper()\n',
        f'  File "{path}", line 3, in helper\n    raise ValueError("bad value")\n',
    ]
    assert "[ERROR] ValueError: bad value\rTraceback (most recent call last):\r" in out


def test_marshal_error(tmp_path: Path, run: Run) -> None:
    files = {"app.py": "def f(e, c):\n    return {1, 2}\n"}
    res, _ = run(_invoke_once(tmp_path, files, "app.f"))
    doc = json.loads(res.body)
    assert doc["errorType"] == "Runtime.MarshalError"
    assert doc["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"


def test_unmarshal_error(tmp_path: Path, run: Run) -> None:
    files = {"app.py": "def f(e, c):\n    return e\n"}
    res, _ = run(_invoke_once(tmp_path, files, "app.f", payload=b"{nope"))
    doc = json.loads(res.body)
    assert doc["errorType"] == "Runtime.UnmarshalError"
    assert doc["errorMessage"].startswith("Unable to unmarshal input: Expecting property name")


def test_context_fields_and_trace_env(tmp_path: Path, run: Run) -> None:
    files = {"app.py": """
        import os
        def f(event, context):
            cc = context.client_context
            return {
                "function_name": context.function_name,
                "function_version": context.function_version,
                "arn": context.invoked_function_arn,
                "memory": context.memory_limit_in_mb,
                "request_id": context.aws_request_id,
                "group": context.log_group_name,
                "stream": context.log_stream_name,
                "identity": [context.identity.cognito_identity_id,
                             context.identity.cognito_identity_pool_id],
                "custom": cc.custom, "app_title": cc.client.app_title,
                "remaining": context.get_remaining_time_in_millis(),
                "trace": os.environ.get("_X_AMZN_TRACE_ID"),
            }
    """}
    ctx = {"custom": {"k": "v"}, "client": {"app_title": "t"}, "env": {}}
    cc = base64.b64encode(json.dumps(ctx).encode()).decode()
    ident = json.dumps({"cognitoIdentityId": "id1", "cognitoIdentityPoolId": "pool1"})
    res, _ = run(_invoke_once(
        tmp_path, files, "app.f", trace_id="Root=1-abc;Parent=def;Sampled=1",
        client_context=cc, cognito_identity=ident))
    doc = json.loads(res.body)
    assert doc["function_name"] == "fn" and doc["function_version"] == "$LATEST"
    assert doc["arn"] == ARN and doc["memory"] == "256" and doc["request_id"] == res.request_id
    assert doc["group"] == "/aws/lambda/fn" and doc["stream"] == "2026/01/01/[$LATEST]abc"
    assert doc["identity"] == ["id1", "pool1"]
    assert doc["custom"] == {"k": "v"} and doc["app_title"] == "t"
    assert 28_000 < doc["remaining"] <= 30_000
    assert doc["trace"] == "Root=1-abc;Parent=def;Sampled=1"


def test_remaining_time_counts_down_and_trace_env_is_cleared(tmp_path: Path, run: Run) -> None:
    files = {"app.py": """
        import os, time
        def f(event, context):
            before = context.get_remaining_time_in_millis()
            time.sleep(0.2)
            return [before, context.get_remaining_time_in_millis(), os.environ.get("_X_AMZN_TRACE_ID")]
    """}

    async def scenario() -> list[list[Any]]:
        async with start_env(tmp_path, files, "app.f") as env:
            await env.channel.wait_ready()
            a = await env.channel.invoke(make_invocation(timeout_s=3, trace_id="Root=1"))
            b = await env.channel.invoke(make_invocation(timeout_s=0.1))
            return [json.loads(a.body), json.loads(b.body)]

    (before, after, trace), (_, expired, trace2) = run(scenario())
    assert 2_500 < before <= 3_000 and 150 <= before - after < 1_000
    assert trace == "Root=1" and trace2 is None and expired == 0


def test_logging_format_and_level(tmp_path: Path, run: Run) -> None:
    files = {"app.py": """
        import logging
        log = logging.getLogger("x")
        def f(event, context):
            print("printed line")
            log.debug("hidden")
            log.info("shown %s", 42)
            return "ok"
    """}

    async def scenario() -> tuple[str, str]:
        async with start_env(tmp_path, files, "app.f", env={"AWS_LAMBDA_LOG_LEVEL": "INFO"}) as env:
            await env.channel.wait_ready()
            res = await env.channel.invoke(make_invocation())
            return res.request_id, await env.output()

    request_id, out = run(scenario())
    assert "printed line\n" in out and "hidden" not in out
    pattern = r"\[INFO\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t%s\tshown 42\n" % request_id
    assert re.search(pattern, out), out


def test_logging_default_level_is_warning(tmp_path: Path, run: Run) -> None:
    files = {"app.py": """
        def f(event, context):
            import logging  # imported late: the runtime configures it on first import
            logging.info("quiet")
            logging.warning("loud")
            return "ok"
    """}
    res, out = run(_invoke_once(tmp_path, files, "app.f"))
    assert "quiet" not in out
    assert f"[WARNING]\t" in out and f"\t{res.request_id}\tloud\n" in out


def test_bootstrap_imports_stay_minimal(tmp_path: Path, run: Run) -> None:
    files = {"app.py": "import sys\ndef f(e, c):\n    return sorted(sys.modules)\n"}
    res, _ = run(_invoke_once(tmp_path, files, "app.f"))
    loaded = set(json.loads(res.body))
    assert not loaded & {"json", "logging", "re", "http", "http.client", "traceback", "socket",
                         "typing", "asyncio", "email"}


def test_oversize_response_ends_invocation_as_too_large(tmp_path: Path, run: Run) -> None:
    files = {"app.py": "def f(e, c):\n    return 'x' * 70_000\n"}

    async def scenario() -> tuple[InvocationResult, str]:
        async with start_env(tmp_path, files, "app.f", max_body=65_536) as env:
            await env.channel.wait_ready()
            res = await env.channel.invoke(make_invocation())
            return res, await env.output()

    res, out = run(scenario())
    assert not res.ok and res.error_type == RESPONSE_SIZE_TOO_LARGE and res.env_misbehaved
    assert json.loads(res.body)["errorMessage"] == (
        "Response payload size (70002 bytes) exceeded maximum allowed payload size (65536 bytes).")
    assert "answered 413" in out


def test_runtime_exits_nonzero_when_api_goes_away(tmp_path: Path, run: Run) -> None:
    files = {"app.py": "def f(e, c):\n    return 1\n"}

    async def scenario() -> int:
        async with start_env(tmp_path, files, "app.f") as env:
            await env.channel.wait_ready()
            env.channel.close()  # drops the parked GET /next
            return await asyncio.wait_for(env.proc.wait(), 10)

    assert run(scenario()) == 2


def test_logging_json_format_defaults_to_info(tmp_path: Path, run: Run) -> None:
    files = {"app.py": """
        import logging
        def f(event, context):
            print("printed line")
            logging.getLogger("app").debug("hidden")
            logging.getLogger("app").info("shown %s", 42)
            return "ok"
    """}

    async def scenario() -> tuple[str, str]:
        async with start_env(tmp_path, files, "app.f", env={"AWS_LAMBDA_LOG_FORMAT": "JSON"}) as env:
            await env.channel.wait_ready()
            res = await env.channel.invoke(make_invocation())
            return res.request_id, await env.output()

    request_id, out = run(scenario())
    assert "printed line\n" in out and "hidden" not in out  # print() stays plain text, as on AWS
    [line] = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert (line["level"], line["message"], line["logger"], line["requestId"]) == ("INFO", "shown 42", "app", request_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line["timestamp"])
