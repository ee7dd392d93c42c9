"""The identity-based policy documents in force for a role or user: its inline policies and
the default versions of the managed policies attached to it (what enforcement evaluates)."""

from __future__ import annotations

from typing import Literal

from lamina.iam.aws_managed import aws_managed
from lamina.store.metadata import Transaction


def default_document(tx: Transaction, arn: str) -> str | None:
    """The document in force of a managed policy (AWS-managed or stored), or None."""
    builtin = aws_managed(arn)
    if builtin is not None:
        return builtin[1]
    policy = tx.get_managed_policy(arn)
    if policy is None:
        return None
    version = tx.get_policy_version(arn, policy.default_version)
    return version.document if version is not None else None


def identity_documents(tx: Transaction, owner: Literal["role", "user"], name: str) -> list[str]:
    """Inline policies, then the default versions of the attached managed policies."""
    if owner == "role":
        inline = [tx.get_role_policy(name, n) for n in tx.list_role_policies(name)]
    else:
        inline = [tx.get_user_policy(name, n) for n in tx.list_user_policies(name)]
    attached = [default_document(tx, arn) for arn in tx.list_attached_policies(owner, name)]
    return [d for d in (*inline, *attached) if d is not None]
