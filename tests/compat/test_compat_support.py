"""Helpers shared by the compat tests: start/stop a real `lamina server`, clients, zips, ARNs,
policy documents.

They live in an importable module rather than in conftest.py because several test folders have
a rootless conftest.py and ``from conftest import ...`` would pick whichever was loaded last.
This module holds no tests.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

LAMINA = Path(sys.executable).parent / "lamina"
ACCOUNT = "000000000000"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/lambda-role"
RUNTIME = "python3.11"
HANDLER = "index.handler"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

DEFAULT_CODE = "def handler(event, context):\n    return {'ok': True, 'event': event}\n"

# Servers started and not yet stopped; the report hook attaches their logs to failures.
RUNNING: list[Server] = []


@dataclass(frozen=True)
class Server:
    """A running `lamina server` process and what a client needs to reach it."""

    endpoint: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def credentials_path(self) -> Path:
        return self.data_dir / "credentials"

    def credentials(self) -> tuple[str, str]:
        """The admin key pair the server wrote to DIR/credentials on first start."""
        parser = configparser.ConfigParser()
        parser.read(self.credentials_path)
        section = parser["default"]
        return section["aws_access_key_id"], section["aws_secret_access_key"]

    def log_tail(self, limit: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return text[-limit:]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_lamina/health", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_server(data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> Server:
    """Start `lamina server` on a free loopback port and wait until /_lamina/health says 200."""
    if not LAMINA.exists():
        pytest.fail(f"the lamina console script is not installed at {LAMINA}")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAMINA_"))}
    proc_env.update(env or {})
    cmd = [str(LAMINA), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1",
           "--port", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=proc_env,
                                   start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", data_dir, log_path, process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"lamina server exited with {process.returncode}:\n{server.log_tail()}")
        if _healthy(server.endpoint):
            RUNNING.append(server)
            return server
        time.sleep(0.05)
    stop_server(server)
    pytest.fail(f"lamina server not healthy after {START_TIMEOUT_S}s:\n{server.log_tail()}")


def stop_server(server: Server) -> None:
    """SIGTERM, then SIGKILL the process group if it does not stop in time."""
    if server in RUNNING:
        RUNNING.remove(server)
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=STOP_TIMEOUT_S)


def client_for(server: Server, *, access_key: str | None = None, secret_key: str | None = None,
               validate: bool = True, **config: Any) -> Any:
    """A boto3 Lambda client for `server`: one attempt, short timeouts, the server's keys."""
    default_key, default_secret = server.credentials()
    session = boto3.session.Session(
        aws_access_key_id=access_key or default_key,
        aws_secret_access_key=secret_key or default_secret,
        region_name=REGION,
    )
    cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5,
                 read_timeout=30, parameter_validation=validate, **config)
    return session.client("lambda", endpoint_url=server.endpoint, config=cfg)


def aws_client(server: Server, service: str, key: str | None = None, secret: str | None = None,
               token: str | None = None, *, validate: bool = True) -> Any:
    """A boto3 client of any service for `server` (one attempt, short timeouts); the admin's key
    unless one is given, and a session token for role credentials. `validate=False` skips
    botocore's own parameter checks, so that the server's are what answers."""
    admin_key, admin_secret = server.credentials()
    session = boto3.session.Session(
        aws_access_key_id=key or admin_key, aws_secret_access_key=secret or admin_secret,
        aws_session_token=token, region_name=REGION)
    cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5,
                 read_timeout=30, parameter_validation=validate)
    return session.client(service, endpoint_url=server.endpoint, config=cfg)


def allow_policy(*actions: str, resource: str = "*") -> str:
    """An identity policy document (JSON text, as IAM takes it) allowing `actions` on `resource`."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": list(actions), "Resource": resource}]})


def trust_policy(principal: dict[str, str]) -> str:
    """A role trust policy (JSON text) letting `principal`, e.g. ``{"AWS": arn}`` or
    ``{"Service": "lambda.amazonaws.com"}``, call sts:AssumeRole. IAM hands it back
    URL-encoded and botocore decodes it, so compare with ``json.loads`` of this."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]})


def make_zip(files: dict[str, str | bytes] | None = None, *, stored: bool = False) -> bytes:
    """A deployment package built in memory; `stored` keeps file bytes verbatim inside the zip."""
    files = files if files is not None else {"index.py": DEFAULT_CODE}
    buf = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buf, "w", compression=method) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = method
            archive.writestr(info, content)
    return buf.getvalue()


def sha256_b64(data: bytes) -> str:
    """CodeSha256 as Lambda reports it: base64 of the raw SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def function_arn(name: str, qualifier: str | None = None, *, account: str = ACCOUNT,
                 region: str = REGION) -> str:
    arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    """(Error.Code, HTTP status, Error.Message) of a botocore ClientError."""
    response = exc.value.response
    return (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"],
            response["Error"].get("Message", ""))


def wait_active(lam: Any, name: str) -> None:
    lam.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def wait_updated(lam: Any, name: str) -> None:
    lam.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


class Functions:
    """Creates functions with sane defaults and deletes whatever it created at teardown."""

    def __init__(self, lam: Any, role: str = ROLE) -> None:
        self.lam = lam
        self.role = role
        self.created: list[str] = []

    def create(self, name: str, *, code: bytes | None = None, wait: bool = True,
               **params: Any) -> dict[str, Any]:
        request: dict[str, Any] = {
            "FunctionName": name, "Runtime": RUNTIME, "Role": self.role, "Handler": HANDLER,
            "Code": {"ZipFile": code if code is not None else make_zip()},
        }
        request.update(params)
        response: dict[str, Any] = self.lam.create_function(**request)
        self.created.append(name)
        if wait:
            wait_active(self.lam, name)
        return response

    def cleanup(self) -> None:
        for name in self.created:
            try:
                for alias in self.lam.list_aliases(FunctionName=name).get("Aliases", []):
                    self.lam.delete_alias(FunctionName=name, Name=alias["Name"])
                self.lam.delete_function(FunctionName=name)
            except ClientError:
                pass


def unique_name(hint: str) -> str:
    """A function name unique across runs and tests, within Lambda's 64-character limit."""
    base = re.sub(r"[^a-zA-Z0-9-]", "-", hint)[:40].strip("-")
    return f"{base}-{uuid.uuid4().hex[:10]}"


INVOKER_ROLE = "lamina-compat-invoker"


def invoker_role(server: Server) -> str:
    """A role Lambda may assume that may invoke any function: asynchronous destinations and
    dead-letter functions are invoked as the source function's role, as on AWS."""
    iam = aws_client(server, "iam")
    try:
        iam.create_role(RoleName=INVOKER_ROLE,
                        AssumeRolePolicyDocument=trust_policy({"Service": "lambda.amazonaws.com"}))
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "EntityAlreadyExists":
            raise
    iam.put_role_policy(RoleName=INVOKER_ROLE, PolicyName="invoke",
                        PolicyDocument=allow_policy("lambda:InvokeFunction"))
    return f"arn:aws:iam::{ACCOUNT}:role/{INVOKER_ROLE}"

