"""TLS: `lamina server --tls` serves HTTPS with a certificate of the data dir's own CA, and boto3
and the AWS CLI work against it when they trust DIR/tls/ca.pem."""

from __future__ import annotations

import io
import json
import os
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from test_compat_support import LAMINA, _free_port

AWS = Path(sys.executable).with_name("aws")


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data = tmp_path / "data"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAMINA_"))}
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(LAMINA), "server", "--data-dir", str(data), "--host", "127.0.0.1", "--port", str(port), "--tls"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    endpoint = f"https://127.0.0.1:{port}"
    ca = data / "tls" / "ca.pem"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            if ca.exists():
                try:
                    ctx = ssl.create_default_context(cafile=str(ca))
                    with urllib.request.urlopen(f"{endpoint}/_lamina/health", context=ctx, timeout=1) as r:
                        if r.status == 200:
                            break
                except (OSError, urllib.error.URLError):
                    pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.05)
        yield endpoint, data
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_boto3_over_https_with_the_generated_ca(tls_server: tuple[str, Path]) -> None:
    endpoint, data = tls_server
    ca = data / "tls" / "ca.pem"
    assert stat.S_IMODE((data / "tls" / "server-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "tls" / "ca-key.pem").stat().st_mode) == 0o600
    session = boto3.Session(region_name="us-east-1")
    creds = dict(line.split(" = ", 1) for line in (data / "credentials").read_text().splitlines() if " = " in line)
    lam = session.client(
        "lambda", endpoint_url=endpoint, verify=str(ca),
        aws_access_key_id=creds["aws_access_key_id"], aws_secret_access_key=creds["aws_secret_access_key"],
        config=Config(retries={"total_max_attempts": 1}),
    )
    assert lam.list_functions()["Functions"] == []
    # Without trusting the CA, the certificate is refused (no silent downgrade).
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{endpoint}/_lamina/health", timeout=2)
    # Plain HTTP on the TLS port gets nothing useful either.
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(endpoint.replace("https", "http") + "/_lamina/health", timeout=2)


def test_aws_cli_with_the_ca_bundle(tls_server: tuple[str, Path]) -> None:
    endpoint, data = tls_server
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_SHARED_CREDENTIALS_FILE": str(data / "credentials"),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CA_BUNDLE": str(data / "tls" / "ca.pem"),
    })
    out = subprocess.run(
        [str(AWS), "lambda", "list-functions", "--endpoint-url", endpoint],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert '"Functions": []' in out.stdout


def test_tls_cert_and_key_must_come_together(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(LAMINA), "server", "--data-dir", str(tmp_path / "d"), "--tls-cert", "/nonexistent"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 2 and "--tls-cert and --tls-key go together" in out.stderr


WHO_AM_I = b"""
import boto3

def handler(event, context):
    return boto3.client("sts").get_caller_identity()["Arn"]
"""


@pytest.mark.root
def test_functions_reach_a_tls_server_through_their_relay(tls_server: tuple[str, Path]) -> None:
    """The relay inside the sandbox is plain HTTP; the worker carries it over TLS to the API,
    checking the server's own certificate."""
    endpoint, data = tls_server
    creds = dict(line.split(" = ", 1) for line in (data / "credentials").read_text().splitlines() if " = " in line)
    lam = boto3.Session(region_name="us-east-1").client(
        "lambda", endpoint_url=endpoint, verify=str(data / "tls" / "ca.pem"),
        aws_access_key_id=creds["aws_access_key_id"], aws_secret_access_key=creds["aws_secret_access_key"],
        config=Config(retries={"total_max_attempts": 1}),
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", WHO_AM_I)
    lam.create_function(FunctionName="whoami", Runtime="python3.11", Handler="index.handler", Timeout=30,
                        Role="arn:aws:iam::000000000000:role/lambda-role", Code={"ZipFile": buf.getvalue()})
    lam.get_waiter("function_active_v2").wait(FunctionName="whoami", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    out = lam.invoke(FunctionName="whoami", Payload=b"{}")
    assert "FunctionError" not in out
    assert json.loads(out["Payload"].read()) == "arn:aws:sts::000000000000:assumed-role/lambda-role/whoami"
