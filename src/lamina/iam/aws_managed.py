"""The AWS-managed policies Lamina ships (read-only, ``arn:aws:iam::aws:policy/...``).

These are Lamina's subset of AWS's documents: the statements that concern the services Lamina
speaks (Lambda, CloudWatch Logs, IAM, STS), with the same names, paths and intent as AWS's, so
templates that attach e.g. ``service-role/AWSLambdaBasicExecutionRole`` work unchanged. Actions
for services Lamina does not have (CloudFormation, EC2, KMS, X-Ray ...) are left out: they could
never be exercised here. Every built-in policy has one version, ``v1``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from lamina.iam.model import ManagedPolicy

AWS_POLICY_PREFIX = "arn:aws:iam::aws:policy"
_CREATED = "2015-02-06T18:40:00Z"  # when AWS introduced managed policies


def _document(*statements: Mapping[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, indent=4)


def _allow(actions: list[str] | str, resource: str = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resource, **extra}


_LAMBDA_LOG_GROUPS = "arn:aws:logs:*:*:log-group:/aws/lambda/*"
_ROLE_READS = [
    "iam:GetPolicy", "iam:GetPolicyVersion", "iam:GetRole", "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies", "iam:ListRolePolicies", "iam:ListRoles",
]  # fmt: skip
_LAMBDA_LOG_READS = ["logs:DescribeLogStreams", "logs:GetLogEvents", "logs:FilterLogEvents"]

# (path, name, description, document)
_BUILTIN: tuple[tuple[str, str, str, str], ...] = (
    (
        "/", "AdministratorAccess",
        "Provides full access to AWS services and resources.",
        _document(_allow("*")),
    ),
    (
        "/", "ReadOnlyAccess",
        "Provides read-only access to AWS services and resources (Lamina's services).",
        _document(_allow([
            "lambda:Get*", "lambda:List*", "logs:Describe*", "logs:Get*", "logs:Filter*",
            "iam:Get*", "iam:List*",
        ])),
    ),  # fmt: skip
    (
        "/service-role/", "AWSLambdaBasicExecutionRole",
        "Provides write permissions to CloudWatch Logs.",
        _document(_allow(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"])),
    ),
    (
        "/service-role/", "AWSLambdaRole",
        "Default policy for AWS Lambda service role.",
        _document(_allow(["lambda:InvokeFunction"])),
    ),
    (
        "/", "AWSLambda_FullAccess",
        "Grants full access to AWS Lambda service, AWS Lambda console features, and other "
        "related AWS services.",
        _document(
            _allow([*_ROLE_READS, "lambda:*", "logs:DescribeLogGroups"]),
            _allow(
                "iam:PassRole",
                Condition={"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
            ),
            _allow([*_LAMBDA_LOG_READS], _LAMBDA_LOG_GROUPS),
        ),
    ),
    (
        "/", "AWSLambda_ReadOnlyAccess",
        "Grants read-only access to AWS Lambda service, AWS Lambda console features, and other "
        "related AWS services.",
        _document(
            _allow([*_ROLE_READS, "lambda:Get*", "lambda:List*", "logs:DescribeLogGroups"]),
            _allow([*_LAMBDA_LOG_READS], _LAMBDA_LOG_GROUPS),
        ),
    ),
)  # fmt: skip


def _policy_id(name: str) -> str:
    """A stable "ANPA" + 16 base32 id per name (Lamina's own ids, not AWS's)."""
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    return "ANPA" + digest[:16]


def _policies() -> dict[str, tuple[ManagedPolicy, str]]:
    out: dict[str, tuple[ManagedPolicy, str]] = {}
    for path, name, description, document in _BUILTIN:
        arn = f"{AWS_POLICY_PREFIX}{path}{name}"
        policy = ManagedPolicy(name, arn, _policy_id(name), path, _CREATED, _CREATED, "v1", description)
        out[arn] = (policy, document)
    return out


AWS_MANAGED: Mapping[str, tuple[ManagedPolicy, str]] = _policies()


def aws_managed(arn: str) -> tuple[ManagedPolicy, str] | None:
    """The built-in policy an ARN names with its (only) document, or None."""
    return AWS_MANAGED.get(arn)
