"""What IAM's roles, users, managed policies, tags and STS share: timestamps and unique ids as
AWS forms them, principal ARNs taken apart, policy documents checked when stored, AWS's error
texts for missing or still-referenced entities, and the account an operation acts in.

Kept apart from the operations so ``lamina.iam.managed``, ``tagging`` and ``credentials`` use
the same pieces without depending on the directory's classes.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

from lamina.errors import IamError
from lamina.iam.policy import MalformedPolicy, Policy, parse_policy
from lamina.store.metadata import MetadataStore


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """IAM's timestamp text, as the query serializer writes it."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def unique_id(prefix: str) -> str:
    """RoleId/UserId as AWS forms them: a 4-letter type prefix and 16 base32 characters."""
    alphabet = string.ascii_uppercase + "234567"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(16))


def role_arn_of(principal_arn: str) -> str | None:
    """The role ARN behind an assumed-role session ARN (or a role ARN itself), else None."""
    parts = principal_arn.split(":", 5)
    if len(parts) != 6:
        return None
    resource = parts[5]
    if parts[2] == "sts" and resource.startswith("assumed-role/"):
        pieces = resource.split("/")
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{pieces[1]}" if len(pieces) == 3 else None
    if parts[2] == "iam" and resource.startswith("role/"):
        return principal_arn
    return None


def last_segment(arn: str) -> str:
    """An entity's name from its ARN: what follows the path."""
    return arn.rsplit("/", 1)[-1]


def user_name_of(principal_arn: str) -> str | None:
    parts = principal_arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "iam" and parts[5].startswith("user/"):
        return last_segment(parts[5])
    return None


def check_policy(document: str) -> None:
    """An inline (identity) policy, checked when stored."""
    try:
        parse_policy(document, kind="identity")
    except MalformedPolicy as exc:
        raise IamError("MalformedPolicyDocument", str(exc)) from exc


def parse_trust_policy(document: str) -> Policy:
    """A role's trust policy: a resource policy whose resource is the role itself, so AWS
    forbids the Resource element; the parsed statements carry ``*`` in its place."""
    try:
        raw = json.loads(document)
    except (ValueError, RecursionError) as exc:  # deep nesting: malformed too
        raise IamError("MalformedPolicyDocument", "Syntax errors in policy.") from exc
    if isinstance(raw, dict) and isinstance(raw.get("Statement"), (dict, list)):
        statements = raw["Statement"] if isinstance(raw["Statement"], list) else [raw["Statement"]]
        for statement in statements:
            if isinstance(statement, dict):
                for key in ("Resource", "NotResource"):
                    if key in statement:
                        raise IamError("MalformedPolicyDocument", f"Has prohibited field {key}")
                statement["Resource"] = "*"
    try:
        return parse_policy(raw, kind="resource")
    except MalformedPolicy as exc:
        raise IamError("MalformedPolicyDocument", str(exc)) from exc


def no_role(name: str) -> IamError:
    return IamError("NoSuchEntity", f"The role with name {name} cannot be found.", 404)


def no_user(name: str) -> IamError:
    return IamError("NoSuchEntity", f"The user with name {name} cannot be found.", 404)


def conflict(what: str) -> IamError:
    """Deleting a role or user that still has ``what`` (policies, access keys)."""
    return IamError("DeleteConflict", f"Cannot delete entity, must delete {what} first.", 409)


def attached_conflict() -> IamError:
    """Deleting a role or user that still has managed policies attached."""
    return IamError("DeleteConflict", "Cannot delete entity, must detach all policies first.", 409)


class AccountScope:
    """The account IAM's operations act in: its metadata store, its id and the clock that
    stamps creation dates (injected so tests run on a fixed one)."""

    def __init__(self, store: MetadataStore, account: str, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.account = account
        self.clock = clock
        self.root_arn = f"arn:aws:iam::{account}:root"
        # Called with "arn:aws:sts::ACCOUNT:assumed-role/NAME/" after a role is deleted.
        self.on_role_deleted: list[Callable[[str], None]] = []


# IAM's size quotas, counted without white space as AWS counts them.
ROLE_INLINE_POLICY_QUOTA = 10_240  # all of a role's inline policies together
USER_INLINE_POLICY_QUOTA = 2_048  # all of a user's inline policies together
MANAGED_POLICY_QUOTA = 6_144  # one managed policy version
TRUST_POLICY_QUOTA = 2_048  # a role's trust policy (AWS's ACLSizePerRole)


def policy_size(document: str) -> int:
    """A (checked) policy document's size as IAM's quotas count it: without white space."""
    return len(json.dumps(json.loads(document), separators=(",", ":"), ensure_ascii=False))


def check_quota(size: int, quota: int, message: str) -> None:
    if size > quota:
        raise IamError("LimitExceeded", message, 409)


def check_inline_quota(
    kind: str, owner: str, current: Mapping[str, str | None], policy: str, document: str, quota: int
) -> None:
    """A role's or user's inline policies, ``policy`` put as ``document``, stay within quota."""
    others = sum(policy_size(d) for n, d in current.items() if d is not None and n.lower() != policy.lower())
    check_quota(
        others + policy_size(document), quota, f"Maximum policy size of {quota} bytes exceeded for {kind} {owner}"
    )

