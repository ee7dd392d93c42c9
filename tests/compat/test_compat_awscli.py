"""The real AWS CLI, configured only by DIR/credentials and --endpoint-url, works against Lamina."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from test_compat_support import HANDLER, REGION, ROLE, RUNTIME, Server, function_arn, make_zip

AWS = Path(sys.executable).parent / "aws"


def _aws(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_SHARED_CREDENTIALS_FILE": str(server.credentials_path),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    })
    cmd = [str(AWS), "lambda", *args, "--endpoint-url", server.endpoint, "--output", "json",
           "--cli-read-timeout", "30", "--cli-connect-timeout", "5"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


def _ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_aws_cli_creates_lists_and_reports_errors(server: Server, tmp_path: Path,
                                                  fn_name: str) -> None:
    zip_path = tmp_path / "code.zip"
    zip_path.write_bytes(make_zip())
    created = _ok(_aws(server, "create-function", "--function-name", fn_name, "--runtime",
                       RUNTIME, "--role", ROLE, "--handler", HANDLER, "--zip-file",
                       f"fileb://{zip_path}"))
    try:
        assert created["FunctionArn"] == function_arn(fn_name)
        _ok(_aws(server, "wait", "function-active-v2", "--function-name", fn_name))

        listed = _ok(_aws(server, "list-functions"))
        assert fn_name in [f["FunctionName"] for f in listed["Functions"]]

        missing = _aws(server, "get-function", "--function-name", f"{fn_name}-missing")
        assert missing.returncode != 0  # 255 from awscli v1, 254 from v2
        assert "(ResourceNotFoundException)" in missing.stderr
        assert f"Function not found: {function_arn(fn_name + '-missing')}" in missing.stderr
    finally:
        _aws(server, "delete-function", "--function-name", fn_name)
