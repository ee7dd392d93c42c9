"""The control plane's data model: functions, their versions and aliases.

Frozen dataclasses with no behaviour beyond (de)serialisation to plain documents, so the
metadata store can persist them without knowing the wire format, and the API converts them
to AWS's shapes at its edge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LATEST = "$LATEST"


@dataclass(frozen=True)
class Function:
    """One function: the things that belong to the function, not to a version."""

    name: str
    arn: str
    created: str
    tags: Mapping[str, str] = field(default_factory=dict)
    reserved_concurrency: int | None = None
    # Highest version number ever published; numbers are never reused, even after deletes.
    last_version: int = 0


@dataclass(frozen=True)
class FunctionVersion:
    """The configuration and code of $LATEST or of a published version."""

    name: str
    version: str
    arn: str  # unqualified function ARN
    runtime: str
    role: str
    handler: str
    code_sha256: str
    code_size: int
    code_key: str  # artifact store key of the encrypted zip
    revision_id: str
    last_modified: str
    description: str = ""
    timeout: int = 3
    memory_size: int = 128
    ephemeral_storage: int = 512
    architectures: tuple[str, ...] = ("x86_64",)
    environment: Mapping[str, str] = field(default_factory=dict)  # encrypted at rest by the store
    layers: tuple[str, ...] = ()
    # CodeSize of each layer in ``layers``, taken when the layers were set: a deleted layer
    # version still reports its size, as on AWS.
    layer_code_sizes: tuple[int, ...] = ()
    # Bytes the version's own zip unpacks to; with the layers' it must stay within 250 MB.
    # Documents stored before this field existed read as 0.
    unzipped_size: int = 0
    tracing_mode: str = "PassThrough"
    package_type: str = "Zip"
    dead_letter_target: str | None = None
    kms_key_arn: str | None = None
    log_format: str = "Text"
    log_group: str | None = None
    application_log_level: str | None = None
    system_log_level: str | None = None
    state: str = "Pending"
    state_reason: str | None = None
    state_reason_code: str | None = None
    last_update_status: str | None = None
    last_update_status_reason: str | None = None
    last_update_status_reason_code: str | None = None

    @property
    def qualified_arn(self) -> str:
        return f"{self.arn}:{self.version}"

    def replace(self, **changes: Any) -> FunctionVersion:
        return dataclasses.replace(self, **changes)

    def to_doc(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc.pop("environment")
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], environment: Mapping[str, str]) -> FunctionVersion:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        values["architectures"] = tuple(values.get("architectures", ("x86_64",)))
        values["layers"] = tuple(values.get("layers", ()))
        values["layer_code_sizes"] = tuple(values.get("layer_code_sizes", ()))
        return cls(environment=dict(environment), **values)


@dataclass(frozen=True)
class Alias:
    name: str
    function: str
    arn: str  # the alias ARN (function ARN + ":" + name)
    function_version: str
    revision_id: str
    description: str = ""
    routing: Mapping[str, float] = field(default_factory=dict)  # additional version -> weight

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Alias:
        return cls(**doc)


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str  # encrypted at rest by the store
    principal_arn: str
    created: str
    session_token: str | None = None
    expires: str | None = None
    status: str = "Active"  # or "Inactive" (UpdateAccessKey): an inactive key signs nothing


@dataclass(frozen=True)
class LayerVersion:
    """One published version of a layer (immutable once published, except its policy)."""

    name: str
    version: int
    layer_arn: str
    version_arn: str
    created: str
    code_sha256: str
    code_size: int
    code_key: str  # artifact store key of the encrypted zip
    unzipped_size: int
    description: str = ""
    compatible_runtimes: tuple[str, ...] = ()
    compatible_architectures: tuple[str, ...] = ()
    license_info: str | None = None
    policy: Mapping[str, object] | None = None  # the layer version's resource policy document
    # Set by DeleteLayerVersion while function versions still use the layer version: hidden
    # from the layer API, kept (with its artifact) for those functions until swept.
    deleted_at: float | None = None

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> LayerVersion:
        values = dict(doc)
        values["compatible_runtimes"] = tuple(values.get("compatible_runtimes", ()))
        values["compatible_architectures"] = tuple(values.get("compatible_architectures", ()))
        return cls(**values)


@dataclass(frozen=True)
class EventInvokeConfig:
    """Asynchronous invocation settings of a function, version or alias."""

    function: str
    qualifier: str  # "$LATEST", a version or an alias
    function_arn: str  # qualified ARN as AWS reports it
    last_modified: float  # epoch seconds
    maximum_retry_attempts: int | None = None
    maximum_event_age_seconds: int | None = None
    on_success: str | None = None  # destination ARN
    on_failure: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> EventInvokeConfig:
        return cls(**doc)
