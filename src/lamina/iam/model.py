"""IAM's stored entities: roles, users and managed policies (with their versions).

Frozen dataclasses with plain-document (de)serialisation so the metadata store persists them
without knowing IAM's wire shapes. Inline policies are not fields here: they live in their own
rows (``tx.*_role_policy`` / ``tx.*_user_policy``) so a policy can change without rewriting the
entity and a delete of the entity can refuse while policies remain, as AWS does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Role:
    name: str
    arn: str
    role_id: str  # "AROA" + 16 characters
    path: str
    created: str  # ISO-8601, "YYYY-MM-DDTHH:MM:SSZ"
    assume_role_policy: str  # the trust policy, JSON text as the caller sent it
    description: str = ""
    max_session_duration: int = 3600
    tags: Mapping[str, str] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "tags": dict(self.tags)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Role:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass(frozen=True)
class User:
    name: str
    arn: str
    user_id: str  # "AIDA" + 16 characters
    path: str
    created: str  # ISO-8601, "YYYY-MM-DDTHH:MM:SSZ"
    tags: Mapping[str, str] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "tags": dict(self.tags)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> User:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass(frozen=True)
class ManagedPolicy:
    """A managed policy: customer-managed (stored) or AWS-managed (built in, read-only).

    Its documents are versions (``PolicyVersion``); ``default_version`` is the one in force.
    ``next_version`` numbers the next CreatePolicyVersion: AWS never reuses a version id.
    """

    name: str
    arn: str
    policy_id: str  # "ANPA" + 16 characters
    path: str
    created: str  # ISO-8601, "YYYY-MM-DDTHH:MM:SSZ"
    updated: str
    default_version: str = "v1"
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    next_version: int = 2

    @property
    def aws_managed(self) -> bool:
        return self.arn.startswith("arn:aws:iam::aws:policy/")

    def to_doc(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "tags": dict(self.tags)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ManagedPolicy:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass(frozen=True)
class PolicyVersion:
    version_id: str  # "v1", "v2", ...
    document: str  # JSON text as the caller sent it
    created: str  # ISO-8601, "YYYY-MM-DDTHH:MM:SSZ"
