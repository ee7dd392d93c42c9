"""Which IAM action on which resource each API request is, as AWS's authorization reference says.

A request's parameters are already parsed and checked against the model when these run, so
they only name things: the function (with its qualifier) for Lambda, the log group/stream for
CloudWatch Logs, the role or user for IAM. ``lambda_access`` resolves FunctionName with the
same rules the handlers use, so a malformed name fails here with the error the handler would
have raised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lamina.control.arns import (
    FunctionRef,
    function_arn,
    layer_arn,
)
from lamina.control.model import LATEST
from lamina.iam.access import Access

__all__ = ["Access", "iam_access", "lambda_access", "logs_access", "sts_access", "sts_conditions"]

# Lambda operations whose IAM action is not "lambda:" + the operation's name.
_LAMBDA_ACTIONS = {
    "Invoke": "InvokeFunction",
    "InvokeWithResponseStream": "InvokeFunction",
    "GetLayerVersionByArn": "GetLayerVersion",
}
# Alias management is authorized on the function (the alias is what the call creates/changes).
_UNQUALIFIED = frozenset({"CreateAlias", "GetAlias", "UpdateAlias", "DeleteAlias", "ListAliases"})
# Operations that need no permission at all.
_FREE = frozenset({"GetCallerIdentity"})


def lambda_access(
    op: str, params: Mapping[str, Any], region: str, account: str,
    resolve: Callable[[str, str | None], FunctionRef],
) -> list[Access]:
    """``resolve`` turns FunctionName + Qualifier into a FunctionRef (the control plane's cached
    parser, so both agree and the invoke path parses each name once)."""
    action = "lambda:" + _LAMBDA_ACTIONS.get(op, op)
    name = params.get("FunctionName")
    if isinstance(name, str):
        ref = resolve(name, params.get("Qualifier") if op not in _UNQUALIFIED else None)
        if op in _UNQUALIFIED or ref.qualifier == LATEST:  # $LATEST is the function itself
            ref = FunctionRef(ref.name)
        accesses = [Access(action, function_arn(region, account, ref.name, ref.qualifier), ref)]
        if op in ("CreateFunction", "UpdateFunctionConfiguration"):
            role = params.get("Role")
            if isinstance(role, str):
                accesses.append(Access("iam:PassRole", role))
            # Using a layer version needs the right to read it, as on AWS.
            layers = params.get("Layers")
            for layer in layers if isinstance(layers, list) else ():
                if isinstance(layer, str):
                    accesses.append(Access("lambda:GetLayerVersion", layer))
        return accesses
    if isinstance(params.get("Resource"), str):  # tags: the function ARN itself
        return [Access(action, params["Resource"])]
    if isinstance(params.get("Arn"), str):  # GetLayerVersionByArn
        return [Access(action, params["Arn"])]
    layer = params.get("LayerName")
    if isinstance(layer, str):
        base = layer if layer.startswith("arn:") else layer_arn(region, account, layer)
        version = params.get("VersionNumber")
        return [Access(action, f"{base}:{version}" if version is not None else base)]
    return [Access(action, "*")]


def logs_access(op: str, params: Mapping[str, Any], region: str, account: str) -> list[Access]:
    """CloudWatch Logs: log-stream ARN for stream calls, ``log-group:NAME:*`` for group calls."""
    base = f"arn:aws:logs:{region}:{account}:log-group:"
    group = params.get("logGroupName")
    stream = params.get("logStreamName")
    if isinstance(group, str) and isinstance(stream, str):
        resource = f"{base}{group}:log-stream:{stream}"
    elif isinstance(group, str):
        resource = f"{base}{group}:*"
    else:
        resource = f"{base}*"
    return [Access("logs:" + op, resource)]


def iam_access(op: str, params: Mapping[str, Any], account: str, caller: str) -> list[Access]:
    """IAM: the role or user the call names (the caller's own user when it names none)."""
    base = f"arn:aws:iam::{account}:"
    action = "iam:" + op
    # A call that names a role or user is authorized on it, even when it also names a policy
    # (Attach/DetachRolePolicy, ...UserPolicy: the policy is the iam:PolicyARN condition key).
    if op in ("CreateRole", "CreateUser"):  # the new entity's ARN, path included
        kind, name = ("role", params.get("RoleName")) if op == "CreateRole" else ("user", params.get("UserName"))
        return [Access(action, f"{base}{kind}{params.get('Path') or '/'}{name}")]
    if isinstance(params.get("RoleName"), str):
        return [Access(action, f"{base}role/{params['RoleName']}")]
    if isinstance(params.get("UserName"), str):
        return [Access(action, f"{base}user/{params['UserName']}")]
    if isinstance(params.get("PolicyArn"), str):  # managed policies and their versions
        return [Access(action, params["PolicyArn"])]
    if op == "CreatePolicy" and isinstance(params.get("PolicyName"), str):
        return [Access(action, f"{base}policy{params.get('Path') or '/'}{params['PolicyName']}")]
    if op == "ListRoles":
        return [Access(action, f"{base}role{params.get('PathPrefix') or '/'}")]
    if op == "ListUsers":
        return [Access(action, f"{base}user{params.get('PathPrefix') or '/'}")]
    if "User" in op or "AccessKey" in op:  # no UserName: the caller's own user
        return [Access(action, caller)]
    return [Access(action, "*")]


def sts_conditions(params: Mapping[str, Any]) -> dict[str, str]:
    """The sts:* condition keys an AssumeRole request carries (trust policies test them)."""
    keys = {"sts:ExternalId": params.get("ExternalId"), "sts:RoleSessionName": params.get("RoleSessionName")}
    return {k: v for k, v in keys.items() if isinstance(v, str)}


def sts_access(op: str, params: Mapping[str, Any]) -> list[Access]:
    if op in _FREE:
        return []
    role = params.get("RoleArn")
    if isinstance(role, str):
        return [Access("sts:" + op, role, role=role)]
    return [Access("sts:" + op, "*")]

