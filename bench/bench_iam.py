"""What policy evaluation costs a warm invoke.

    sudo .venv/bin/python bench/bench_iam.py [--quick] [--json out.json]

The same warm function is invoked, signed ahead, by three callers: the administrator (never
evaluated), an IAM user whose identity policy allows the invoke (an attached managed policy of 20
statements, the allowing one last) and a user with no identity policy whom the function's resource policy
(AddPermission) allows; then the administrator again, as a control for drift. p50/p99 per
caller, the loopback HTTP round trip measured in the same run, and each caller's overhead over
the administrator. See bench/README.md.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REGION,
    LeanClient,
    bench_cli,
    load_baselines,
    loopback_rtt,
    start_server,
    stop_process,
    wait_standby_full,
)
from bench_invoke import PAYLOAD, boto_client, create_function, make_zip, warm_latency  # noqa: E402

ACCOUNT = "000000000000"


def _iam(server: Any) -> Any:
    return boto3.session.Session(
        aws_access_key_id=server.key_id, aws_secret_access_key=server.secret, region_name=REGION,
    ).client("iam", endpoint_url=server.endpoint, config=Config(retries={"total_max_attempts": 1}))


def _user(iam: Any, name: str, statements: list[dict[str, Any]]) -> tuple[str, str]:
    iam.create_user(UserName=name)
    if statements:  # a managed policy: 20 statements exceed IAM's 2,048-byte inline quota for users
        document = json.dumps({"Version": "2012-10-17", "Statement": statements})
        arn = iam.create_policy(PolicyName=f"{name}-policy", PolicyDocument=document)["Policy"]["Arn"]
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def run(n: int) -> dict[str, Any]:
    baselines = load_baselines()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data", Path(tmp) / "server.log")
        try:
            wait_standby_full(server.endpoint)
            lam = boto_client(server)
            function = "bench-iam"
            create_function(lam, function, 1769, make_zip())
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
            noise = [{"Effect": "Allow", "Action": f"lambda:Get{i}*", "Resource": f"{arn}-{i}"} for i in range(19)]
            iam = _iam(server)
            identity = _user(iam, "bench-identity", [*noise, {
                "Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": arn}])
            resource = _user(iam, "bench-resource", [])
            lam.add_permission(FunctionName=function, StatementId="bench", Action="lambda:InvokeFunction",
                               Principal=f"arn:aws:iam::{ACCOUNT}:user/bench-resource")
            callers = {
                "administrator (not evaluated)": (server.key_id, server.secret),
                "user, managed policy (20 statements)": identity,
                "user, function resource policy": resource,
            }
            results: dict[str, Any] = {}
            # The administrator once more at the end: the spread between its two rows is the
            # run's noise, against which the users' overhead is read.
            callers["administrator again (control)"] = callers["administrator (not evaluated)"]
            for label, (key, secret) in callers.items():
                client = LeanClient(server.endpoint, key, secret)
                try:
                    results[label] = warm_latency(client, function, n)
                finally:
                    client.close()
        finally:
            stop_process(server.process)
    rtt = loopback_rtt(n, baselines, PAYLOAD)
    return {"callers": results, "loopback_rtt": rtt}


def report(res: dict[str, Any]) -> str:
    rtt = res["loopback_rtt"]["p50"]
    admin = next(iter(res["callers"].values()))["p50"]
    lines = [f"{'warm invoke, signed ahead':48} {'p50':>9} {'p99':>9}   vs RTT   over admin"]
    for label, s in res["callers"].items():
        lines.append(f"{label:48} {s['p50']:9.3f} {s['p99']:9.3f} ms  {s['p50'] / rtt:5.2f}x"
                     f"   {1000 * (s['p50'] - admin):+7.1f} us")
    lines.append(f"{'loopback HTTP keep-alive round trip':48} {rtt:9.3f} {res['loopback_rtt']['p99']:9.3f} ms")
    return "\n".join(lines)


def main() -> int:
    res = bench_cli("bench_iam", __doc__, lambda quick, _: run(500 if quick else 3000), report)
    return 2 if res is None else 0


if __name__ == "__main__":
    raise SystemExit(main())
