"""Managed policies: customer-managed ones (stored, versioned) and Lamina's built-in
AWS-managed ones (``lamina.iam.aws_managed``, read-only), attached to roles and users.

AWS's rules and texts: names unique in the account regardless of case and path, at most five
versions per policy, the default version cannot be deleted, a policy is deleted only once it is
detached everywhere and its other versions are gone. The documents in force are the default
versions of the attached policies: ``Directory.policies_for`` includes them, so enforcement
sees a change on its next request (the authorizer's cache follows ``store.generation``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal

from lamina.errors import IamError
from lamina.iam.aws_managed import AWS_MANAGED, aws_managed
from lamina.iam.directory import check_policy, iso, no_role, no_user, unique_id, utc_now
from lamina.iam.entities import MANAGED_POLICY_QUOTA, check_quota, policy_size
from lamina.iam.model import ManagedPolicy, PolicyVersion
from lamina.store.metadata import MetadataStore, Transaction

Owner = Literal["role", "user"]
Scope = Literal["All", "AWS", "Local"]
VERSIONS_PER_POLICY = 5


def _not_found(arn: str) -> IamError:
    return IamError("NoSuchEntity", f"Policy {arn} was not found.", 404)


def _not_attachable(arn: str) -> IamError:
    return IamError("NoSuchEntity", f"Policy {arn} does not exist or is not attachable.", 404)


def _read_only(arn: str) -> IamError:
    """Changing an AWS-managed policy: AWS refuses as an authorization failure."""
    return IamError("AccessDenied", f"Policy {arn} is an AWS managed policy and cannot be modified.", 403)


class ManagedPolicies:
    """IAM's managed-policy operations, each in one store transaction."""

    def __init__(self, store: MetadataStore, account: str, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.account = account
        self.clock = clock

    # policies

    def create_policy(
        self,
        name: str,
        document: str,
        *,
        path: str = "/",
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> ManagedPolicy:
        _check_managed(document)
        now = iso(self.clock())
        arn = f"arn:aws:iam::{self.account}:policy{path}{name}"
        policy = ManagedPolicy(
            name, arn, unique_id("ANPA"), path, now, now, "v1", description, dict(tags or {})
        )
        with self.store.transaction() as tx:
            if tx.managed_policy_named(name) is not None:
                raise IamError(
                    "EntityAlreadyExists",
                    f"A policy called {name} already exists. Duplicate names are not allowed.",
                    409,
                )
            tx.put_managed_policy(policy)
            tx.put_policy_version(arn, PolicyVersion("v1", document, now))
        return policy

    def get_policy(self, arn: str) -> tuple[ManagedPolicy, int]:
        """The policy and how many roles and users it is attached to."""
        with self.store.transaction() as tx:
            return self._policy(tx, arn), tx.policy_attachment_count(arn)

    def list_policies(
        self, scope: Scope = "All", *, only_attached: bool = False, path_prefix: str = "/"
    ) -> list[tuple[ManagedPolicy, int]]:
        """AWS-managed first, then the account's own, each ordered by name."""
        with self.store.transaction() as tx:
            found: list[ManagedPolicy] = []
            if scope in ("All", "AWS"):
                found += sorted((p for p, _ in AWS_MANAGED.values()), key=lambda p: p.name.lower())
            if scope in ("All", "Local"):
                found += tx.list_managed_policies()
            counted = [
                (p, tx.policy_attachment_count(p.arn)) for p in found if p.path.startswith(path_prefix)
            ]
        return [(p, n) for p, n in counted if n or not only_attached]

    def delete_policy(self, arn: str) -> None:
        with self.store.transaction() as tx:
            policy = self._own(tx, arn)
            if tx.policy_attachment_count(arn):
                raise IamError("DeleteConflict", "Cannot delete a policy attached to entities.", 409)
            if len(tx.list_policy_versions(arn)) > 1:
                raise IamError(
                    "DeleteConflict",
                    "This policy has more than one version. Before you delete a policy, you must "
                    "delete the policy's versions. The default version is deleted with the policy.",
                    409,
                )
            tx.delete_managed_policy(policy.arn)

    # versions

    def get_policy_version(self, arn: str, version_id: str) -> tuple[ManagedPolicy, PolicyVersion]:
        with self.store.transaction() as tx:
            policy = self._policy(tx, arn)
            return policy, self._version(tx, policy, version_id)

    def list_policy_versions(self, arn: str) -> tuple[ManagedPolicy, list[PolicyVersion]]:
        """Newest first, as IAM lists them."""
        with self.store.transaction() as tx:
            policy = self._policy(tx, arn)
            builtin = aws_managed(arn)
            if builtin is not None:
                return policy, [PolicyVersion("v1", builtin[1], policy.created)]
            return policy, tx.list_policy_versions(arn)[::-1]

    def create_policy_version(self, arn: str, document: str, set_as_default: bool = False) -> PolicyVersion:
        _check_managed(document)
        now = iso(self.clock())
        with self.store.transaction() as tx:
            policy = self._own(tx, arn)
            if len(tx.list_policy_versions(arn)) >= VERSIONS_PER_POLICY:
                raise IamError(
                    "LimitExceeded",
                    f"A managed policy can have up to {VERSIONS_PER_POLICY} versions. Before you "
                    "create a new version, you must delete an existing version.",
                    409,
                )
            version = PolicyVersion(f"v{policy.next_version}", document, now)
            tx.put_policy_version(arn, version)
            default = version.version_id if set_as_default else policy.default_version
            tx.put_managed_policy(dataclasses.replace(
                policy, next_version=policy.next_version + 1, default_version=default, updated=now))  # fmt: skip
        return version

    def delete_policy_version(self, arn: str, version_id: str) -> None:
        with self.store.transaction() as tx:
            policy = self._own(tx, arn)
            self._version(tx, policy, version_id)
            if version_id == policy.default_version:
                raise IamError("DeleteConflict", "Cannot delete the default version of a policy.", 409)
            tx.delete_policy_version(arn, version_id)

    def set_default_policy_version(self, arn: str, version_id: str) -> None:
        with self.store.transaction() as tx:
            policy = self._own(tx, arn)
            self._version(tx, policy, version_id)
            tx.put_managed_policy(dataclasses.replace(
                policy, default_version=version_id, updated=iso(self.clock())))  # fmt: skip

    # attachments

    def attach(self, owner: Owner, name: str, arn: str) -> None:
        with self.store.transaction() as tx:
            entity = self._owner(tx, owner, name)
            if aws_managed(arn) is None and tx.get_managed_policy(arn) is None:
                raise _not_attachable(arn)
            tx.attach_policy(owner, entity, arn)

    def detach(self, owner: Owner, name: str, arn: str) -> None:
        with self.store.transaction() as tx:
            entity = self._owner(tx, owner, name)
            if arn not in tx.list_attached_policies(owner, entity):
                raise _not_found(arn)
            tx.detach_policy(owner, entity, arn)

    def list_attached(self, owner: Owner, name: str, path_prefix: str = "/") -> list[ManagedPolicy]:
        with self.store.transaction() as tx:
            entity = self._owner(tx, owner, name)
            found = [self._maybe(tx, arn) for arn in tx.list_attached_policies(owner, entity)]
        return [p for p in found if p is not None and p.path.startswith(path_prefix)]

    # helpers

    def _maybe(self, tx: Transaction, arn: str) -> ManagedPolicy | None:
        builtin = aws_managed(arn)
        return builtin[0] if builtin is not None else tx.get_managed_policy(arn)

    def _policy(self, tx: Transaction, arn: str) -> ManagedPolicy:
        policy = self._maybe(tx, arn)
        if policy is None:
            raise _not_found(arn)
        return policy

    def _own(self, tx: Transaction, arn: str) -> ManagedPolicy:
        """A customer-managed policy, the only kind that can change."""
        policy = self._policy(tx, arn)
        if policy.aws_managed:
            raise _read_only(arn)
        return policy

    def _version(self, tx: Transaction, policy: ManagedPolicy, version_id: str) -> PolicyVersion:
        builtin = aws_managed(policy.arn)
        if builtin is not None:
            version = PolicyVersion("v1", builtin[1], policy.created) if version_id == "v1" else None
        else:
            version = tx.get_policy_version(policy.arn, version_id)
        if version is None:
            raise IamError(
                "NoSuchEntity",
                f"Policy {policy.arn} version {version_id} does not exist or is not attachable.",
                404,
            )
        return version

    def _owner(self, tx: Transaction, owner: Owner, name: str) -> str:
        """The stored spelling of the role's or user's name (names match regardless of case)."""
        if owner == "role":
            role = tx.get_role(name)
            if role is None:
                raise no_role(name)
            return role.name
        user = tx.get_user(name)
        if user is None:
            raise no_user(name)
        return user.name


def _check_managed(document: str) -> None:
    check_policy(document)
    check_quota(
        policy_size(document), MANAGED_POLICY_QUOTA, f"Cannot exceed quota for PolicySize: {MANAGED_POLICY_QUOTA}"
    )

