"""IAM policy documents and AWS's single-account evaluation logic, free of I/O.

Documents are parsed once into frozen values (``parse_policy``) so malformed ones are rejected
with AWS's MalformedPolicyDocument texts when stored. ``evaluate`` then follows the IAM User
Guide for one account: an explicit Deny in any applicable policy wins; otherwise an Allow from
an identity-based policy, or from the resource-based policy for a principal it names, allows;
otherwise the request is implicitly denied.

Deliberate choices (secure defaults): an account principal (``"123456789012"`` or
``arn:aws:iam::123456789012:root``) in a resource policy *grants* only to that account's root,
because AWS expects the account to delegate through identity policies; the same principal in a
*Deny* statement applies to every principal of the account. Permission boundaries, SCPs and
session policies are out of scope.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

from lamina.iam.conditions import Condition, Context, MalformedPolicy, parse_conditions, substitute
from lamina.iam.conditions import wildcard_match as _match

__all__ = [
    "Decision",
    "MalformedPolicy",
    "Outcome",
    "Policy",
    "PolicyType",
    "Principal",
    "Request",
    "Statement",
    "access_denied_message",
    "evaluate",
    "parse_policy",
]

_VERSIONS = ("2012-10-17", "2008-10-17")
_STATEMENT_KEYS = {
    "Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
    "Resource", "NotResource", "Condition",
}  # fmt: skip
_SYNTAX = "Syntax errors in policy."


@dataclass(frozen=True)
class Principal:
    """A Principal/NotPrincipal element; ``any`` is ``"*"`` or ``{"AWS": "*"}``."""

    any: bool = False
    aws: frozenset[str] = frozenset()  # ARNs; bare account ids normalised to ...:root
    service: frozenset[str] = frozenset()
    federated: frozenset[str] = frozenset()

    def names(self, identities: frozenset[str], account: str, effect: str) -> bool:
        if self.any:
            return True
        if identities & (self.aws | self.service):
            return True
        # An account principal denies everyone in the account but grants only to its root.
        return effect == "Deny" and f"arn:aws:iam::{account}:root" in self.aws


@dataclass(frozen=True)
class Statement:
    effect: Literal["Allow", "Deny"]
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_action: bool = False
    not_resource: bool = False
    principal: Principal | None = None
    not_principal: bool = False
    conditions: tuple[Condition, ...] = ()
    sid: str | None = None


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]
    version: str = "2008-10-17"
    id: str | None = None


def _string_list(raw: object) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not all(isinstance(i, str) for i in items):
        raise MalformedPolicy(_SYNTAX)
    return tuple(str(i) for i in items)


def _principal(raw: object) -> Principal:
    if raw == "*":
        return Principal(any=True)
    if not isinstance(raw, dict) or not raw:
        raise MalformedPolicy(_SYNTAX)
    aws: set[str] = set()
    service: set[str] = set()
    federated: set[str] = set()
    for kind, value in raw.items():
        names = _string_list(value)
        if kind == "AWS":
            if "*" in names:
                return Principal(any=True)
            for name in names:
                if name.isdigit() and len(name) == 12:
                    aws.add(f"arn:aws:iam::{name}:root")
                elif name.startswith("arn:"):
                    aws.add(name)
                else:
                    raise MalformedPolicy("Invalid principal in policy")
        elif kind == "Service":
            service.update(names)
        elif kind in ("Federated", "CanonicalUser"):
            federated.update(names)
        else:
            raise MalformedPolicy("Invalid principal in policy")
    return Principal(aws=frozenset(aws), service=frozenset(service), federated=frozenset(federated))


def _either(raw: dict[str, object], key: str, missing: str) -> tuple[tuple[str, ...], bool]:
    if key in raw and f"Not{key}" in raw:
        raise MalformedPolicy(_SYNTAX)
    negated = f"Not{key}" in raw
    value = raw.get(f"Not{key}") if negated else raw.get(key)
    if value is None:
        raise MalformedPolicy(missing)
    items = _string_list(value)
    if not items:
        raise MalformedPolicy(missing)
    return items, negated


def _statement(raw: object, kind: str) -> Statement:
    if not isinstance(raw, dict) or not set(raw) <= _STATEMENT_KEYS:
        raise MalformedPolicy(_SYNTAX)
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise MalformedPolicy(_SYNTAX)
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise MalformedPolicy(_SYNTAX)
    actions, not_action = _either(raw, "Action", "Policy statement must contain actions.")
    resources, not_resource = _either(raw, "Resource", "Policy statement must contain resources.")
    for action in actions:
        if action != "*" and action.count(":") != 1:
            raise MalformedPolicy(
                "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
            )
    for resource in resources:
        if resource != "*" and not resource.startswith("arn:"):
            raise MalformedPolicy(f'Resource {resource} must be in ARN format or "*".')
    has_principal = "Principal" in raw or "NotPrincipal" in raw
    if kind == "identity" and has_principal:
        raise MalformedPolicy("Policy document should not specify a principal.")
    if kind == "resource" and not has_principal:
        raise MalformedPolicy("Missing required field Principal")
    if "Principal" in raw and "NotPrincipal" in raw:
        raise MalformedPolicy(_SYNTAX)
    not_principal = "NotPrincipal" in raw
    principal = _principal(raw["NotPrincipal" if not_principal else "Principal"]) if has_principal else None
    conditions = parse_conditions(raw["Condition"]) if "Condition" in raw else ()
    return Statement(
        effect, actions, resources, not_action, not_resource, principal, not_principal, conditions, sid
    )


def parse_policy(
    document: str | Mapping[str, object], *, kind: Literal["identity", "resource"] = "identity"
) -> Policy:
    """Parse JSON text or a decoded dict; identity policies forbid Principal, resource ones need it."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except (ValueError, RecursionError) as exc:  # deep nesting: malformed too
            raise MalformedPolicy(_SYNTAX) from exc
    if not isinstance(document, Mapping) or not set(document) <= {"Version", "Id", "Statement"}:
        raise MalformedPolicy(_SYNTAX)
    version = document.get("Version", "2008-10-17")
    if version not in _VERSIONS:
        raise MalformedPolicy("Policy document must be version 2012-10-17 or greater.")
    policy_id = document.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise MalformedPolicy(_SYNTAX)
    raw = document.get("Statement")
    raw_statements = raw if isinstance(raw, list) else [raw]
    if raw is None or not raw_statements:
        raise MalformedPolicy(_SYNTAX)
    statements = tuple(_statement(s, kind) for s in raw_statements)
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise MalformedPolicy("Statement IDs (SID) in a single policy must be unique.")
    return Policy(statements, str(version), policy_id)


@dataclass(frozen=True)
class Request:
    """Who asks to do what to which resource, with the request's condition keys.

    ``principal`` is an IAM ARN (user, role, assumed-role session, root) or a service principal
    such as ``s3.amazonaws.com``. ``now`` is injected so time conditions are deterministic.
    """

    principal: str
    account: str
    action: str
    resource: str
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    now: datetime | None = None
    # The role behind an assumed-role session, by its own ARN (path included) when known; the
    # session ARN alone names only ``role/NAME``.
    role: str | None = None

    def identities(self) -> frozenset[str]:
        """The names a Principal element may use for this caller (role ARN for its sessions)."""
        names = {self.principal}
        role = self._role_arn()
        if role:
            names.add(role)
        return frozenset(names)

    def _role_arn(self) -> str | None:
        if self.role is not None:
            return self.role
        parts = self.principal.split(":", 5)
        if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
            role = parts[5].split("/")[1]
            return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
        return None

    def condition_context(self) -> dict[str, tuple[str, ...]]:
        ctx: dict[str, tuple[str, ...]] = {}
        if self.principal.startswith("arn:"):
            ctx["aws:principalarn"] = (self._role_arn() or self.principal,)
            ctx["aws:principalaccount"] = (self.account,)
            resource = self.principal.split(":", 5)[-1]
            if resource.startswith("user/"):
                ctx["aws:username"] = (resource.rsplit("/", 1)[-1],)
        else:
            ctx["aws:principalservicename"] = (self.principal,)
        if self.now is not None:
            now = self.now.astimezone(timezone.utc)
            ctx["aws:currenttime"] = (now.strftime("%Y-%m-%dT%H:%M:%SZ"),)
            ctx["aws:epochtime"] = (str(int(now.timestamp())),)
        for key, value in self.context.items():
            ctx[key.lower()] = (value,) if isinstance(value, str) else tuple(value)
        return ctx


class Outcome(enum.Enum):
    ALLOW = "Allow"
    EXPLICIT_DENY = "ExplicitDeny"
    IMPLICIT_DENY = "ImplicitDeny"


class PolicyType(enum.Enum):
    IDENTITY = "identity-based"
    RESOURCE = "resource-based"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    statement: Statement | None = None
    policy_type: PolicyType | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW


def _listed(patterns: tuple[str, ...], value: str, ctx: Context, *, ignore_case: bool) -> bool:
    for pattern in patterns:
        resolved = substitute(pattern, ctx)
        if resolved is not None and _match(resolved, value, ignore_case=ignore_case):
            return True
    return False


def _applies(st: Statement, req: Request, ctx: Context, resource_policy: bool) -> bool:
    if resource_policy and st.principal is not None:
        named = st.principal.names(req.identities(), req.account, st.effect)
        if named == st.not_principal:
            return False
    if _listed(st.actions, req.action, {}, ignore_case=True) == st.not_action:
        return False
    if _listed(st.resources, req.resource, ctx, ignore_case=False) == st.not_resource:
        return False
    return all(c.matches(ctx) for c in st.conditions)


def evaluate(
    request: Request, identity_policies: Sequence[Policy], resource_policy: Policy | None = None
) -> Decision:
    """Decide a single-account request; the returned statement explains the outcome."""
    ctx = request.condition_context()
    sources = [(PolicyType.IDENTITY, p, False) for p in identity_policies]
    if resource_policy is not None:
        sources.append((PolicyType.RESOURCE, resource_policy, True))
    allow: Decision | None = None
    for policy_type, policy, is_resource in sources:
        for st in policy.statements:
            if not _applies(st, request, ctx, is_resource):
                continue
            if st.effect == "Deny":
                return Decision(Outcome.EXPLICIT_DENY, st, policy_type)
            allow = allow or Decision(Outcome.ALLOW, st, policy_type)
    return allow or Decision(Outcome.IMPLICIT_DENY)


def access_denied_message(request: Request, decision: Decision, *, detailed: bool = True) -> str:
    """AWS's AccessDenied text, with the policy-type suffix AWS added in 2021."""
    base = (
        f"User: {request.principal} is not authorized to perform: {request.action} "
        f"on resource: {request.resource}"
    )
    if not detailed or decision.outcome is Outcome.ALLOW:
        return base
    if decision.outcome is Outcome.EXPLICIT_DENY:
        kind = (decision.policy_type or PolicyType.IDENTITY).value
        article = "an" if kind.startswith("i") else "a"
        return f"{base} with an explicit deny in {article} {kind} policy"
    return f"{base} because no identity-based policy allows the {request.action} action"
