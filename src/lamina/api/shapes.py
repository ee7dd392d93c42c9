"""Conversions between the control plane's model and the Lambda API's shapes (member names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lamina.control.changes import ConfigChange
from lamina.control.model import Alias, FunctionVersion


def function_configuration(v: FunctionVersion, arn: str | None = None) -> dict[str, Any]:
    """FunctionConfiguration for a version; ``arn`` overrides FunctionArn (alias-qualified)."""
    out: dict[str, Any] = {
        "FunctionName": v.name,
        "FunctionArn": arn or (v.arn if v.version == "$LATEST" else v.qualified_arn),
        "Runtime": v.runtime,
        "Role": v.role,
        "Handler": v.handler,
        "CodeSize": v.code_size,
        "Description": v.description,
        "Timeout": v.timeout,
        "MemorySize": v.memory_size,
        "LastModified": v.last_modified,
        "CodeSha256": v.code_sha256,
        "Version": v.version,
        "TracingConfig": {"Mode": v.tracing_mode},
        "RevisionId": v.revision_id,
        "State": v.state,
        "PackageType": v.package_type,
        "Architectures": list(v.architectures),
        "EphemeralStorage": {"Size": v.ephemeral_storage},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": _logging(v),
        "RuntimeVersionConfig": {
            "RuntimeVersionArn": f"arn:aws:lambda:{v.arn.split(':')[3]}::runtime:lamina-{v.runtime}"
        },
    }
    if v.environment:
        out["Environment"] = {"Variables": dict(v.environment)}
    if v.layers:
        sizes = v.layer_code_sizes if len(v.layer_code_sizes) == len(v.layers) else (0,) * len(v.layers)
        out["Layers"] = [{"Arn": arn_, "CodeSize": size} for arn_, size in zip(v.layers, sizes, strict=True)]
    if v.dead_letter_target:
        out["DeadLetterConfig"] = {"TargetArn": v.dead_letter_target}
    if v.kms_key_arn:
        out["KMSKeyArn"] = v.kms_key_arn
    for key, value in (
        ("StateReason", v.state_reason),
        ("StateReasonCode", v.state_reason_code),
        ("LastUpdateStatus", v.last_update_status),
        ("LastUpdateStatusReason", v.last_update_status_reason),
        ("LastUpdateStatusReasonCode", v.last_update_status_reason_code),
    ):
        if value is not None:
            out[key] = value
    return out


def _logging(v: FunctionVersion) -> dict[str, Any]:
    out: dict[str, Any] = {"LogFormat": v.log_format, "LogGroup": v.log_group or f"/aws/lambda/{v.name}"}
    if v.application_log_level:
        out["ApplicationLogLevel"] = v.application_log_level
    if v.system_log_level:
        out["SystemLogLevel"] = v.system_log_level
    return out


def config_change(params: Mapping[str, Any]) -> ConfigChange:
    """The configuration fields of a CreateFunction/UpdateFunctionConfiguration request."""
    env = params.get("Environment")
    logging_config = params.get("LoggingConfig") or {}
    return ConfigChange(
        runtime=params.get("Runtime"),
        role=params.get("Role"),
        handler=params.get("Handler"),
        description=params.get("Description"),
        timeout=params.get("Timeout"),
        memory_size=params.get("MemorySize"),
        ephemeral_storage=(params.get("EphemeralStorage") or {}).get("Size"),
        architectures=tuple(params["Architectures"]) if "Architectures" in params else None,
        environment=dict(env.get("Variables") or {}) if env is not None else None,
        layers=tuple(params["Layers"]) if "Layers" in params else None,
        tracing_mode=(params.get("TracingConfig") or {}).get("Mode"),
        dead_letter_target=(params.get("DeadLetterConfig") or {}).get("TargetArn"),
        kms_key_arn=params.get("KMSKeyArn"),
        log_format=logging_config.get("LogFormat"),
        log_group=logging_config.get("LogGroup"),
        application_log_level=logging_config.get("ApplicationLogLevel"),
        system_log_level=logging_config.get("SystemLogLevel"),
    )


def alias_configuration(a: Alias) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AliasArn": a.arn,
        "Name": a.name,
        "FunctionVersion": a.function_version,
        "Description": a.description,
        "RevisionId": a.revision_id,
    }
    if a.routing:
        out["RoutingConfig"] = {"AdditionalVersionWeights": dict(a.routing)}
    return out
