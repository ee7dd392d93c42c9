"""IAM's directory: one account's roles, users, their inline policies and users' access keys.

The operations keep AWS's rules and texts (names unique regardless of case, a role or user is
deleted only once its policies and keys are gone, two access keys per user, policy documents
checked when stored) so the AWS CLI and SDKs see the answers they expect. The API layer turns
parameters into calls here and models into IAM's output shapes; enforcement asks
``policies_for`` which policies apply to a caller (inline and attached managed ones).

``Directory`` is the seam the rest of Lamina holds: role operations are ``lamina.iam.roles``,
user and access-key ones ``lamina.iam.users``, the pieces they share ``lamina.iam.entities``
(re-exported here for existing callers); managed policies are ``lamina.iam.managed``, role and
user tags ``lamina.iam.tagging``.
"""

from __future__ import annotations

from lamina.iam.entities import (
    check_policy,
    iso,
    last_segment,
    no_role,
    no_user,
    parse_trust_policy,
    role_arn_of,
    unique_id,
    user_name_of,
    utc_now,
)
from lamina.iam.identity_policies import identity_documents
from lamina.iam.roles import Roles
from lamina.iam.users import ACCESS_KEYS_PER_USER, Users

__all__ = [
    "ACCESS_KEYS_PER_USER",
    "Directory",
    "check_policy",
    "iso",
    "no_role",
    "no_user",
    "parse_trust_policy",
    "role_arn_of",
    "unique_id",
    "user_name_of",
    "utc_now",
]


class Directory(Roles, Users):
    """IAM operations on one account's roles and users, each in one store transaction, and
    what enforcement asks of them."""

    def session_role_arn(self, principal: str) -> str | None:
        """The ARN (path included) of the role behind an assumed-role session principal, or
        None when ``principal`` is no session or its role is gone."""
        role = role_arn_of(principal)
        if role is None or ":assumed-role/" not in principal:
            return None
        with self.store.transaction() as tx:
            found = tx.get_role(last_segment(role))
        return found.arn if found is not None else None

    def entity_arn(self, arn: str) -> str:
        """``arn:aws:iam::ACCOUNT:role/NAME`` (or ``user/NAME``) as a request names it, made the
        entity's own ARN with its path; anything else, or an entity that does not exist, as is."""
        prefix = f"arn:aws:iam::{self.account}:"
        kind, _, name = arn.removeprefix(prefix).partition("/")
        if not arn.startswith(prefix) or kind not in ("role", "user") or not name or "/" in name:
            return arn
        with self.store.transaction() as tx:
            entity = tx.get_role(name) if kind == "role" else tx.get_user(name)
        return entity.arn if entity is not None else arn

    def policies_for(self, principal_arn: str) -> list[str]:
        """The identity policies that apply to a caller: inline ones and the default versions of
        attached managed ones (root: none, it needs none)."""
        with self.store.transaction() as tx:
            user = user_name_of(principal_arn)
            if user is not None:
                found = tx.get_user(user)
                if found is None or found.arn != principal_arn:
                    return []
                return identity_documents(tx, "user", found.name)
            role_arn = role_arn_of(principal_arn)
            if role_arn is not None:
                role = tx.get_role(last_segment(role_arn))
                if role is None or role.name != last_segment(role_arn):
                    return []
                return identity_documents(tx, "role", role.name)
        return []
