"""CloudWatch Logs on Lamina's port, driven by boto3's ``logs`` client and the AWS CLI.

Shapes, error codes and messages are AWS's (botocore's model; AWS's documented texts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from test_compat_support import ACCOUNT, REGION, Functions, Server, error_of, make_zip

AWS = Path(sys.executable).parent / "aws"
DAY_MS = 86_400_000


def logs_client(server: Server) -> Any:
    key, secret = server.credentials()
    session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION)
    cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    return session.client("logs", endpoint_url=server.endpoint, config=cfg)


@pytest.fixture(scope="module")
def logs(server: Server) -> Any:
    return logs_client(server)


@pytest.fixture
def group(logs: Any) -> Any:
    name = f"/lamina/compat/{uuid.uuid4().hex[:10]}"
    logs.create_log_group(logGroupName=name)
    yield name
    try:
        logs.delete_log_group(logGroupName=name)
    except ClientError:
        pass


def _put(logs: Any, group: str, stream: str, messages: list[tuple[int, str]]) -> None:
    try:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    logs.put_log_events(logGroupName=group, logStreamName=stream,
                        logEvents=[{"timestamp": ts, "message": m} for ts, m in messages])


def test_groups_lifecycle_and_errors(logs: Any, group: str) -> None:
    described = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in described] == [group]
    g = described[0]
    assert g["arn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"
    assert g["logGroupArn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
    assert abs(g["creationTime"] - time.time() * 1000) < 60_000
    assert g["storedBytes"] == 0 and "retentionInDays" not in g

    with pytest.raises(ClientError) as exc:
        logs.create_log_group(logGroupName=group)
    assert error_of(exc) == ("ResourceAlreadyExistsException", 400, "The specified log group already exists")
    with pytest.raises(ClientError) as exc:
        logs.delete_log_group(logGroupName=group + "-missing")
    assert error_of(exc) == ("ResourceNotFoundException", 400, "The specified log group does not exist.")
    with pytest.raises(ClientError) as exc:
        logs.get_log_events(logGroupName=group, logStreamName="nope")
    assert error_of(exc) == ("ResourceNotFoundException", 400, "The specified log stream does not exist.")

    with pytest.raises(ClientError) as exc:
        logs.put_retention_policy(logGroupName=group, retentionInDays=2)
    code, _, message = error_of(exc)
    assert code == "InvalidParameterException" and "retentionInDays" in message
    logs.put_retention_policy(logGroupName=group, retentionInDays=14)
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["retentionInDays"] == 14
    logs.delete_retention_policy(logGroupName=group)
    assert "retentionInDays" not in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]

    logs.delete_log_group(logGroupName=group)
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []


def test_retention_is_enforced(logs: Any, group: str) -> None:
    now = int(time.time() * 1000)
    _put(logs, group, "s", [(now - 10 * DAY_MS, "old"), (now - 2 * DAY_MS, "recent")])
    logs.put_retention_policy(logGroupName=group, retentionInDays=7)
    events = logs.get_log_events(logGroupName=group, logStreamName="s", startFromHead=True)["events"]
    assert [e["message"] for e in events] == ["recent"]


def test_get_log_events_pages_forward_and_backward(logs: Any, group: str) -> None:
    base = int(time.time() * 1000) - 60_000
    _put(logs, group, "s1", [(base + i, f"m{i}") for i in range(5)])

    tail = logs.get_log_events(logGroupName=group, logStreamName="s1", limit=2)
    assert [e["message"] for e in tail["events"]] == ["m3", "m4"]  # default: the newest
    back = logs.get_log_events(logGroupName=group, logStreamName="s1", limit=2,
                               nextToken=tail["nextBackwardToken"])
    assert [e["message"] for e in back["events"]] == ["m1", "m2"]

    head = logs.get_log_events(logGroupName=group, logStreamName="s1", limit=3, startFromHead=True)
    assert [e["message"] for e in head["events"]] == ["m0", "m1", "m2"]
    assert head["events"][0]["timestamp"] == base and head["events"][0]["ingestionTime"] >= base
    more = logs.get_log_events(logGroupName=group, logStreamName="s1", nextToken=head["nextForwardToken"])
    assert [e["message"] for e in more["events"]] == ["m3", "m4"]
    end = logs.get_log_events(logGroupName=group, logStreamName="s1", nextToken=more["nextForwardToken"])
    assert end["events"] == [] and end["nextForwardToken"] == more["nextForwardToken"]

    _put(logs, group, "s1", [(base + 10, "late")])  # a follower holding the token sees it
    again = logs.get_log_events(logGroupName=group, logStreamName="s1", nextToken=end["nextForwardToken"])
    assert [e["message"] for e in again["events"]] == ["late"]

    window = logs.get_log_events(logGroupName=group, logStreamName="s1", startFromHead=True,
                                 startTime=base + 1, endTime=base + 3)
    assert [e["message"] for e in window["events"]] == ["m1", "m2"]

    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in streams] == ["s1"]
    assert streams[0]["firstEventTimestamp"] == base and streams[0]["lastEventTimestamp"] == base + 10
    assert streams[0]["arn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:s1"


def test_filter_log_events_patterns_streams_and_pages(logs: Any, group: str) -> None:
    base = int(time.time() * 1000) - 60_000
    _put(logs, group, "a", [(base, "ERROR disk full"), (base + 2, json.dumps({"level": "ERROR", "ms": 120}))])
    _put(logs, group, "b", [(base + 1, "INFO fine"), (base + 3, json.dumps({"level": "INFO", "ms": 5}))])

    every = logs.filter_log_events(logGroupName=group)["events"]
    assert [e["timestamp"] for e in every] == [base, base + 1, base + 2, base + 3]  # interleaved by time
    assert {e["logStreamName"] for e in every} == {"a", "b"} and len({e["eventId"] for e in every}) == 4

    def messages(**kw: Any) -> list[str]:
        return [e["message"] for e in logs.filter_log_events(logGroupName=group, **kw)["events"]]

    assert messages(filterPattern="ERROR disk") == ["ERROR disk full"]
    assert messages(filterPattern="?disk ?fine") == ["ERROR disk full", "INFO fine"]
    assert messages(filterPattern='{ $.level = "ERROR" }') == [json.dumps({"level": "ERROR", "ms": 120})]
    assert messages(filterPattern="{ $.ms < 10 }") == [json.dumps({"level": "INFO", "ms": 5})]
    assert messages(logStreamNames=["b"], filterPattern="-fine") == [json.dumps({"level": "INFO", "ms": 5})]
    assert messages(logStreamNamePrefix="a", startTime=base + 1) == [json.dumps({"level": "ERROR", "ms": 120})]

    pages = list(logs.get_paginator("filter_log_events").paginate(
        logGroupName=group, PaginationConfig={"PageSize": 3}))
    assert [len(p["events"]) for p in pages if p["events"]] == [3, 1]

    with pytest.raises(ClientError) as exc:
        logs.filter_log_events(logGroupName=group, filterPattern="{ $.level = ")
    assert error_of(exc) == ("InvalidParameterException", 400, "Invalid filter pattern")
    with pytest.raises(ClientError) as exc:
        logs.filter_log_events(logGroupName=group + "-missing")
    assert error_of(exc)[0] == "ResourceNotFoundException"


def test_function_logs_land_in_an_implicit_group(logs: Any, functions: Functions, fn_name: str) -> None:
    code = make_zip({"index.py": "def handler(event, context):\n    print('hello from', event['who'])\n"})
    functions.create(fn_name, code=code)
    functions.lam.invoke(FunctionName=fn_name, Payload=b'{"who": "compat"}')
    group = f"/aws/lambda/{fn_name}"
    described = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in described] == [group] and described[0]["storedBytes"] > 0
    found = logs.filter_log_events(logGroupName=group, filterPattern='"hello from compat"')["events"]
    assert len(found) == 1
    reports = logs.filter_log_events(logGroupName=group, filterPattern="REPORT RequestId")["events"]
    assert len(reports) == 1 and "Billed Duration" in reports[0]["message"]


def _aws(server: Server, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_SHARED_CREDENTIALS_FILE": str(server.credentials_path), "AWS_CONFIG_FILE": os.devnull,
        "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": "",
    })
    cmd = [str(AWS), "logs", *args, "--endpoint-url", server.endpoint, "--output", "json"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_aws_cli_reads_and_filters(server: Server, logs: Any, group: str) -> None:
    base = int(time.time() * 1000) - 60_000
    _put(logs, group, "cli", [(base, "GET /health 200"), (base + 1, "GET /login 500"), (base + 2, "POST /x 500")])
    listed = _aws(server, "describe-log-groups", "--log-group-name-prefix", group)
    assert [g["logGroupName"] for g in listed["logGroups"]] == [group]
    filtered = _aws(server, "filter-log-events", "--log-group-name", group, "--filter-pattern", "500 -POST")
    assert [e["message"] for e in filtered["events"]] == ["GET /login 500"]
    read = _aws(server, "get-log-events", "--log-group-name", group, "--log-stream-name", "cli",
                "--start-from-head")
    assert [e["message"] for e in read["events"]] == ["GET /health 200", "GET /login 500", "POST /x 500"]


def test_logging_config_json_and_custom_group(logs: Any, functions: Functions, fn_name: str) -> None:
    code = make_zip({"index.py": "import logging\nlog = logging.getLogger('app')\n"
                                 "def handler(event, context):\n    log.debug('hidden')\n"
                                 "    log.warning('careful %s', 7)\n    return 1\n"})
    group = f"/lamina/custom/{fn_name}"
    functions.create(fn_name, code=code, LoggingConfig={
        "LogFormat": "JSON", "LogGroup": group, "ApplicationLogLevel": "WARN", "SystemLogLevel": "INFO"})
    request_id = functions.lam.invoke(FunctionName=fn_name)["ResponseMetadata"]["RequestId"]
    assert logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{fn_name}")["logGroups"] == []

    def records(pattern: str) -> list[dict[str, Any]]:
        events = logs.filter_log_events(logGroupName=group, filterPattern=pattern)["events"]
        return [json.loads(e["message"]) for e in events]

    [start] = records('{ $.type = "platform.start" }')
    assert start["record"]["version"] == "$LATEST" and start["time"].endswith("Z")
    [report] = records('{ $.type = "platform.report" && $.record.metrics.durationMs >= 0 }')
    assert report["record"]["status"] == "success" and report["record"]["metrics"]["memorySizeMB"] == 128
    [app_line] = records('{ $.level = "WARN*" }')
    assert app_line["message"] == "careful 7" and app_line["logger"] == "app"
    assert records('{ $.message = "hidden" }') == []
    assert start["record"]["requestId"] == report["record"]["requestId"] == app_line["requestId"] == request_id
