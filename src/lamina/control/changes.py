"""Requested configuration changes, independent of the wire format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ConfigChange:
    """Fields of a function's configuration to set; None leaves a field as it is.

    CreateFunction and UpdateFunctionConfiguration both produce one; the API layer fills it
    from the request, the control plane applies it to a FunctionVersion.
    """

    runtime: str | None = None
    role: str | None = None
    handler: str | None = None
    description: str | None = None
    timeout: int | None = None
    memory_size: int | None = None
    ephemeral_storage: int | None = None
    architectures: tuple[str, ...] | None = None
    environment: Mapping[str, str] | None = None
    layers: tuple[str, ...] | None = None
    tracing_mode: str | None = None
    dead_letter_target: str | None = None
    kms_key_arn: str | None = None
    log_format: str | None = None
    log_group: str | None = None
    application_log_level: str | None = None
    system_log_level: str | None = None

    def values(self) -> dict[str, Any]:
        """The fields that are set."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
