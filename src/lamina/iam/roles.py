"""IAM roles: their trust policies and inline policies, and the default execution role.

AWS's rules and texts: role names are unique regardless of case, a trust policy is checked as a
resource policy whose resource is the role itself, and a role is deleted only once its inline
policies are deleted and its managed policies detached. ``Directory`` offers these operations
alongside users'; tags are ``lamina.iam.tagging``, attachments ``lamina.iam.managed``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from lamina.errors import IamError
from lamina.iam.entities import (
    ROLE_INLINE_POLICY_QUOTA,
    TRUST_POLICY_QUOTA,
    AccountScope,
    attached_conflict,
    check_inline_quota,
    check_policy,
    check_quota,
    conflict,
    iso,
    last_segment,
    no_role,
    parse_trust_policy,
    policy_size,
    unique_id,
)
from lamina.iam.model import Role
from lamina.iam.policy import Request, evaluate
from lamina.store.metadata import Transaction


class Roles(AccountScope):
    """IAM's role operations on one account, each in one store transaction."""

    def create_role(
        self,
        name: str,
        trust_policy: str,
        *,
        path: str = "/",
        description: str = "",
        max_session_duration: int = 3600,
        tags: Mapping[str, str] | None = None,
    ) -> Role:
        _check_trust(trust_policy)
        role = Role(
            name, f"arn:aws:iam::{self.account}:role{path}{name}", unique_id("AROA"), path,
            iso(self.clock()), trust_policy, description, max_session_duration, dict(tags or {}),
        )  # fmt: skip
        with self.store.transaction() as tx:
            if tx.get_role(name) is not None:
                raise IamError("EntityAlreadyExists", f"Role with name {name} already exists.", 409)
            tx.put_role(role)
        return role

    def get_role(self, name: str) -> Role:
        with self.store.transaction() as tx:
            return self._role(tx, name)

    def list_roles(self, path_prefix: str = "/") -> list[Role]:
        with self.store.transaction() as tx:
            return [r for r in tx.list_roles() if r.path.startswith(path_prefix)]

    def delete_role(self, name: str) -> None:
        with self.store.transaction() as tx:
            role = self._role(tx, name)
            if tx.list_role_policies(name):
                raise conflict("policies")
            if tx.list_attached_policies("role", name):
                raise attached_conflict()
            tx.delete_role(name)
            # Its AssumeRole sessions die with it: a role re-created under the same name is
            # another role (AWS tells them apart by RoleId) and must not inherit them.
            prefix = f"arn:aws:sts::{self.account}:assumed-role/{role.name}/"
            tx.delete_keys_with_principal_prefix(prefix)
        for forget in self.on_role_deleted:  # sessions kept outside the store (environments)
            forget(prefix)

    def update_assume_role_policy(self, name: str, document: str) -> None:
        _check_trust(document)
        with self.store.transaction() as tx:
            role = self._role(tx, name)
            tx.put_role(Role.from_doc({**role.to_doc(), "assume_role_policy": document}))

    def put_role_policy(self, role: str, policy: str, document: str) -> None:
        check_policy(document)
        with self.store.transaction() as tx:
            found = self._role(tx, role)
            current = {n: tx.get_role_policy(found.name, n) for n in tx.list_role_policies(found.name)}
            check_inline_quota("role", found.name, current, policy, document, ROLE_INLINE_POLICY_QUOTA)
            tx.put_role_policy(found.name, policy, document)

    def get_role_policy(self, role: str, policy: str) -> tuple[Role, str]:
        with self.store.transaction() as tx:
            found = self._role(tx, role)
            document = tx.get_role_policy(found.name, policy)
        if document is None:
            raise IamError("NoSuchEntity", f"The role policy with name {policy} cannot be found.", 404)
        return found, document

    def delete_role_policy(self, role: str, policy: str) -> None:
        self.get_role_policy(role, policy)
        with self.store.transaction() as tx:
            tx.delete_role_policy(role, policy)

    def list_role_policies(self, role: str) -> list[str]:
        with self.store.transaction() as tx:
            return tx.list_role_policies(self._role(tx, role).name)

    def role_trusts(self, role_arn: str, service: str) -> bool:
        """Whether the role exists and its trust policy lets ``service`` assume it."""
        role = self.role_by_arn(role_arn)
        if role is None:
            return False
        request = Request(service, self.account, "sts:AssumeRole", role.arn, now=self.clock())
        return evaluate(request, [], parse_trust_policy(role.assume_role_policy)).allowed

    def role_by_arn(self, role_arn: str) -> Role | None:
        """The role an ARN names (its path included), or None."""
        prefix = f"arn:aws:iam::{self.account}:role/"
        if not role_arn.startswith(prefix):
            return None
        with self.store.transaction() as tx:
            role = tx.get_role(last_segment(role_arn))
        return role if role is not None and role.arn == role_arn else None

    def ensure_default_role(
        self, name: str, trust_service: str, policy_name: str, policy_document: str
    ) -> Role:
        """The documented default execution role, created with its policy on first start."""
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": trust_service}, "Action": "sts:AssumeRole"}
            ],
        }
        try:
            role = self.create_role(name, json.dumps(trust))
        except IamError as exc:
            if exc.code != "EntityAlreadyExists":
                raise
            return self.get_role(name)
        self.put_role_policy(name, policy_name, policy_document)
        return role

    def _role(self, tx: Transaction, name: str) -> Role:
        role = tx.get_role(name)
        if role is None:
            raise no_role(name)
        return role


def _check_trust(document: str) -> None:
    parse_trust_policy(document)
    check_quota(
        policy_size(document), TRUST_POLICY_QUOTA, f"Cannot exceed quota for ACLSizePerRole: {TRUST_POLICY_QUOTA}"
    )

