"""SECURITY.md class J through the whole platform: state between invokes, the Runtime API.

Each handler is hostile in one way and runs through boto3 → ``lamina server`` → a real
sandbox. The sandbox layer's own tests (tests/sandbox) cover what one sandbox can do; these
cover what only the assembled platform decides: which environment an invoke lands in, what
the worker puts in a function's environment, and what the Runtime API server accepts from a
function that talks to it directly instead of through the bootstrap.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from test_compat_support import Functions, Server, client_for, make_zip, wait_updated

pytestmark = pytest.mark.root

MEMORY = 512

# Every variable AWS documents for a Lambda environment (reserved and unreserved), plus the
# Python runtime's PYTHONPATH. A function may see these, its own, and nothing else.
DOCUMENTED = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "LANG", "PATH",
    "LD_LIBRARY_PATH", "PYTHONPATH", "TZ", "AWS_XRAY_CONTEXT_MISSING", "AWS_XRAY_DAEMON_ADDRESS",
    "AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL",
    "AWS_ENDPOINT_URL",  # Lamina's addition: the relay to the Lamina API inside the sandbox
})  # fmt: skip
# Set inside the sandbox, never carried over from the host: bwrap exports PWD for --chdir, and
# CPython's C-locale coercion (PEP 538) sets LC_CTYPE when LANG's locale is not installed.
SANDBOX_SET = {"PWD": "/var/task", "LC_CTYPE": "C.UTF-8"}


def invoke(lam: Any, name: str, event: object = None, **params: Any) -> tuple[dict[str, Any], Any]:
    """(the Invoke response, the decoded payload) of one synchronous invoke."""
    resp: dict[str, Any] = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}), **params)
    body = resp["Payload"].read()
    return resp, json.loads(body) if body else None


def create(functions: Functions, name: str, code: str, **params: Any) -> None:
    params.setdefault("MemorySize", MEMORY)
    params.setdefault("Timeout", 10)
    functions.create(name, code=make_zip({"index.py": code}), **params)


# -- update while warm -----------------------------------------------------------------------

VERSIONED = """
import time
VERSION = {version!r}
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return VERSION
"""


def test_update_code_while_envs_are_warm_and_busy(lam: Any, functions: Functions, fn_name: str) -> None:
    create(functions, fn_name, VERSIONED.format(version="old"))
    with ThreadPoolExecutor(4) as pool:
        warm = list(pool.map(lambda _: invoke(lam, fn_name, {"sleep": 0.5})[1], range(3)))
        assert warm == ["old"] * 3
        in_flight = pool.submit(invoke, lam, fn_name, {"sleep": 3})
        time.sleep(0.8)  # the slow invoke holds an env of the old code while the update lands
        lam.update_function_code(FunctionName=fn_name, ZipFile=make_zip({"index.py": VERSIONED.format(version="new")}))
        wait_updated(lam, fn_name)
        after = list(pool.map(lambda _: invoke(lam, fn_name, {"sleep": 0.3})[1], range(4)))
        assert after == ["new"] * 4, "an invoke after the update ran the old code"
        assert in_flight.result()[1] == "old"
        # The env that was busy during the update must not return to the pool afterwards.
        again = list(pool.map(lambda _: invoke(lam, fn_name, {"sleep": 0.3})[1], range(4)))
    assert again == ["new"] * 4
    assert [invoke(lam, fn_name)[1] for _ in range(3)] == ["new"] * 3


# -- one invoke per environment ----------------------------------------------------------------

EXCLUSIVE = """
import os, time, uuid
ENV = uuid.uuid4().hex
def handler(event, context):
    rid = context.aws_request_id
    overlap = os.path.exists("/tmp/busy")
    with open("/tmp/busy", "w") as f:
        f.write(rid)
    start = time.time()
    time.sleep(event["sleep"])
    with open("/tmp/busy") as f:
        overlap = overlap or f.read() != rid
    os.remove("/tmp/busy")
    with open("/tmp/history", "a") as f:
        f.write(rid + "\\n")
    with open("/tmp/history") as f:
        history = f.read().split()
    return {"env": ENV, "rid": rid, "overlap": overlap, "start": start, "end": time.time(),
            "history": history}
"""


def test_concurrent_invokes_never_share_an_environment(lam: Any, functions: Functions, fn_name: str) -> None:
    create(functions, fn_name, EXCLUSIVE)
    results: list[dict[str, Any]] = []
    with ThreadPoolExecutor(6) as pool:
        for _ in range(2):  # a cold batch, then a warm one that reuses the envs
            results += pool.map(lambda _: invoke(lam, fn_name, {"sleep": 1.0})[1], range(6))
    assert not [r for r in results if r["overlap"]], "an env saw two invokes at once"
    by_env: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_env.setdefault(r["env"], []).append(r)
    assert len({r["env"] for r in results[:6]}) == 6, "six simultaneous invokes shared envs"
    ours = {r["rid"] for r in results}
    for env, runs in by_env.items():
        runs.sort(key=lambda r: r["start"])
        for a, b in zip(runs, runs[1:]):
            assert a["end"] <= b["start"], f"env {env} ran two invokes at once"
        rids = {r["rid"] for r in runs}
        # /tmp of an env holds only its own invokes' traces: nothing written by another env.
        assert set(runs[-1]["history"]) <= rids and set(runs[-1]["history"]) <= ours


# -- the environment a function sees -----------------------------------------------------------

DUMP = """
import os
def handler(event, context):
    procs = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    procs[pid] = f.read().decode("latin-1")
            except OSError as exc:
                procs[pid] = "unreadable errno %d" % exc.errno
    return {"environ": dict(os.environ), "procs": procs}
"""


def _secret_forms(data: bytes) -> list[str]:
    """The ways a secret file's bytes (or the key inside a JSON key file) could leak as text."""
    forms = [data.decode("latin-1"), data.hex(), base64.b64encode(data).decode()]
    try:
        doc = json.loads(data)
    except ValueError:
        return [f for f in forms if len(f) >= 16]
    if isinstance(doc, dict):
        for value in doc.values():
            if isinstance(value, str) and len(value) >= 16:
                forms.append(value)
                try:
                    raw = base64.b64decode(value, validate=True)
                    forms += [raw.hex(), raw.decode("latin-1")]
                except ValueError:
                    pass
    return [f for f in forms if len(f) >= 16]


def test_environment_holds_only_documented_variables_and_no_secrets(
        server: Server, lam: Any, functions: Functions, fn_name: str) -> None:
    own = {"MY_SETTING": "fine-to-see"}
    create(functions, fn_name, DUMP, Environment={"Variables": own})
    resp, doc = invoke(lam, fn_name)
    assert "FunctionError" not in resp, doc
    environ: dict[str, str] = doc["environ"]
    for name, value in SANDBOX_SET.items():
        assert environ.pop(name, value) == value, name
    extra = set(environ) - DOCUMENTED - set(own)
    assert not extra, f"undocumented variables reach the function: {sorted(extra)}"
    assert environ["MY_SETTING"] == "fine-to-see"
    # Every process the function can see carries nothing beyond the function's own variables.
    mine = {f"{k}={v}" for k, v in environ.items()}
    for pid, text in doc["procs"].items():
        if not text.startswith("unreadable"):
            foreign = {e for e in text.split("\0") if e} - mine
            names = {e.split("=", 1)[0] for e in foreign}
            assert not names - {"_X_AMZN_TRACE_ID", *SANDBOX_SET}, (pid, foreign)

    admin_id, admin_secret = server.credentials()
    assert environ["AWS_ACCESS_KEY_ID"] != admin_id
    assert environ["AWS_SECRET_ACCESS_KEY"] != admin_secret
    assert environ.get("AWS_SESSION_TOKEN"), "placeholder credentials come as a session"
    dump = json.dumps(doc)
    assert admin_id not in dump and admin_secret not in dump
    key_files = sorted((server.data_dir / "keys").glob("*"))
    assert key_files, "expected the master key files under DIR/keys"
    for path in key_files:
        if path.is_file():
            for form in _secret_forms(path.read_bytes()):
                assert form not in dump, f"content of {path.name} is visible to the function"


def test_function_credentials_are_refused_by_the_api(server: Server, lam: Any, functions: Functions,
                                                      fn_name: str) -> None:
    create(functions, fn_name, DUMP)
    environ = invoke(lam, fn_name)[1]["environ"]
    stolen = client_for(server, access_key=environ["AWS_ACCESS_KEY_ID"],
                        secret_key=environ["AWS_SECRET_ACCESS_KEY"])
    with pytest.raises(ClientError) as exc:
        stolen.list_functions()
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as exc:
        stolen.delete_function(FunctionName=fn_name)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert lam.get_function(FunctionName=fn_name)["Configuration"]["FunctionName"] == fn_name


# -- talking to the Runtime API directly -------------------------------------------------------

RUNTIME_API = """
import http.client, json, os, socket, uuid
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
BASE = "/2018-06-01/runtime/invocation/"

def call(method, path, body=None, timeout=3.0):
    conn = http.client.HTTPConnection(HOST, int(PORT), timeout=timeout)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return [resp.status, resp.read().decode("latin-1")[:300]]
    except socket.timeout:
        return ["timeout", ""]
    finally:
        conn.close()

def handler(event, context):
    if event.get("read"):
        with open("/tmp/statuses.json") as f:
            return json.load(f)
    if event.get("oversize_return"):
        return "x" * (7 * 1024 * 1024)
    rid = context.aws_request_id
    out = {
        "other_response": call("POST", BASE + str(uuid.uuid4()) + "/response", b'"forged"'),
        "other_error": call("POST", BASE + str(uuid.uuid4()) + "/error", b'{}'),
        "other_oversize": call("POST", BASE + str(uuid.uuid4()) + "/response", b"y" * (7 << 20)),
        "next_in_flight": call("GET", BASE + "next"),
        "first": call("POST", BASE + rid + "/response", b'"first"'),
        "second": call("POST", BASE + rid + "/response", b'"second"'),
        "error_after": call("POST", BASE + rid + "/error", b'{}'),
    }
    with open("/tmp/statuses.json", "w") as f:
        json.dump(out, f)
    return "returned"
"""


def test_runtime_api_accepts_only_the_current_request_id_once(lam: Any, functions: Functions,
                                                              fn_name: str) -> None:
    # Generous timeout: seven Runtime API calls, one of them 7 MB, at 512 MB's CPU share.
    create(functions, fn_name, RUNTIME_API, Timeout=60)
    resp, payload = invoke(lam, fn_name, {"secret": "event-one"})
    assert "FunctionError" not in resp
    assert payload == "first", "the first answer for the current id is the one that counts"
    resp, statuses = invoke(lam, fn_name, {"read": True})  # the same warm env reads its notes
    assert "FunctionError" not in resp, statuses
    assert statuses["other_response"][0] == 400
    assert statuses["other_error"][0] == 400
    assert statuses["other_oversize"][0] in (400, 413)
    # A second connection asking for work while an invoke is in flight gets a refusal, at once,
    # never a parked poll and never an event.
    assert statuses["next_in_flight"][0] == 403, statuses["next_in_flight"]
    assert "event-one" not in statuses["next_in_flight"][1]
    assert statuses["first"][0] == 202
    assert statuses["second"][0] == 403
    assert statuses["error_after"][0] == 403
    assert invoke(lam, fn_name, {"read": True})[1] == statuses, "the env still serves"


def test_runtime_api_refuses_an_oversize_response(lam: Any, functions: Functions, fn_name: str) -> None:
    create(functions, fn_name, RUNTIME_API)
    started = time.monotonic()
    resp, payload = invoke(lam, fn_name, {"oversize_return": True})
    assert time.monotonic() - started < 8
    assert resp.get("FunctionError") == "Unhandled"
    assert payload["errorType"] == "Function.ResponseSizeTooLarge"
    assert len(json.dumps(payload)) < 4096, "the oversize body must not be relayed"
    # The env that pushed 7 MB is gone; a fresh one serves.
    resp, _ = invoke(lam, fn_name, {})
    assert "FunctionError" not in resp


STEALER = """
import http.client, os, socket, threading, time
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
STARTED = []

def poll_next(stop_at):
    while time.time() < stop_at:
        conn = http.client.HTTPConnection(HOST, int(PORT), timeout=1.0)
        try:
            conn.request("GET", "/2018-06-01/runtime/invocation/next")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200:
                os.write(1, b"STOLEN:" + body + b"\\n")
        except (OSError, socket.timeout):
            pass
        finally:
            conn.close()

def handler(event, context):
    if not STARTED:  # every env, including a fresh one, gets its own poller
        STARTED.append(1)
        threading.Thread(target=poll_next, args=(time.time() + 8,), daemon=True).start()
    return event
"""
ROUNDS = 15


def _run_stealer(server: Server, lam: Any, functions: Functions, fn_name: str) -> list[Any]:
    """Invokes a function whose handler leaves a thread spinning on GET /next between invokes;
    asserts that thread never read an event; returns what each invoke answered."""
    create(functions, fn_name, STEALER)
    answers, secrets = [], []
    for i in range(ROUNDS):
        secret = {"secret": f"payload-{fn_name}-{i}"}
        secrets.append(secret["secret"])
        resp, payload = invoke(lam, fn_name, secret, LogType="Tail")
        log = base64.b64decode(resp.get("LogResult", "")).decode(errors="replace")
        assert "STOLEN" not in log, f"a background thread read invoke {i}'s event"
        answers.append(payload == secret or payload)
        time.sleep(0.05)
    _assert_not_in_logs(server, fn_name, secrets)
    return answers


@pytest.mark.xfail(reason="a thread of the function itself can win the race for GET /next right after "
                          "its own runtime posts a response: the event is that same function's, in its "
                          "own environment (no boundary is crossed), and AWS's Runtime API likewise "
                          "answers whichever caller asks; between invokes the env is frozen", strict=False)
def test_a_thread_left_running_cannot_read_the_next_event(server: Server, lam: Any,
                                                          functions: Functions, fn_name: str) -> None:
    _run_stealer(server, lam, functions, fn_name)


@pytest.mark.xfail(reason="platform bug: a background thread can win the GET /next park after the "
                          "response; the bootstrap's own /next gets 403 and the runtime exits; the "
                          "next invoke gets Runtime.ExitError from the dead idle env", strict=False)
def test_a_thread_left_running_cannot_disturb_the_next_invoke(server: Server, lam: Any,
                                                              functions: Functions, fn_name: str) -> None:
    answers = _run_stealer(server, lam, functions, fn_name)
    assert answers == [True] * ROUNDS, [a for a in answers if a is not True][:2]


def _assert_not_in_logs(server: Server, fn_name: str, secrets: list[str]) -> None:
    time.sleep(0.5)  # the log store flushes every 0.2 s
    with sqlite3.connect(server.data_dir / "logs.db") as db:
        rows = db.execute("SELECT message FROM events WHERE grp = ? AND message LIKE '%STOLEN%'",
                          (f"/aws/lambda/{fn_name}",)).fetchall()
    leaked = [m for (m,) in rows if any(s in m for s in secrets)]
    assert not leaked, f"events read by a background thread: {leaked[:3]}"
