"""Decides whether a principal may do what a request needs, from the policies in force.

Identity-based policies are the inline policies of the caller's user, or of the role behind an
assumed-role session; resource-based policies are a function's (AddPermission) and a role's
trust policy (for sts:AssumeRole). Parsed policies are cached until the metadata store next
changes, so the invoke path evaluates in memory. The administrator (the account root whose key
is bootstrapped at first start) is allowed everything without evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from lamina.control.arns import FunctionRef
from lamina.iam.access import Access
from lamina.iam.policy import (
    Decision,
    MalformedPolicy,
    Policy,
    Request,
    access_denied_message,
    evaluate,
    parse_policy,
)
from lamina.store.metadata import MetadataStore


@dataclass(frozen=True)
class Denial:
    """Why a request was refused: AWS's message is built from these."""

    request: Request
    decision: Decision

    @property
    def message(self) -> str:
        return access_denied_message(self.request, self.decision)

    @property
    def brief_message(self) -> str:
        """Without the policy-type suffix: STS still words AssumeRole refusals this way."""
        return access_denied_message(self.request, self.decision, detailed=False)


class Authorizer:
    def __init__(
        self,
        store: MetadataStore,
        account: str,
        admins: frozenset[str],
        identity_documents: Callable[[str], Sequence[str]],
        function_policy: Callable[[FunctionRef], Policy | None] | None = None,
        trust_policy: Callable[[str], Policy | None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        session_role: Callable[[str], str | None] | None = None,
    ) -> None:
        self.store = store
        self.account = account
        self.admins = admins
        self._documents = identity_documents
        self._function_policy = function_policy
        self._trust_policy = trust_policy
        self._clock = clock
        # The role (ARN with its path) behind an assumed-role session: resource and trust
        # policies name roles by that ARN, the session ARN carries only the role's name.
        self._session_role = session_role
        self._roles: dict[str, str | None] = {}
        self._identity: dict[str, tuple[Policy, ...]] = {}
        # Accesses allowed by policies whose outcome cannot depend on the request's context (no
        # conditions, no variables): the same caller doing the same thing is not re-evaluated
        # until the store changes. Refusals are always evaluated (they build their message).
        self._allowed: set[tuple[str, Access]] = set()
        self._generation = -1

    def is_admin(self, principal: str) -> bool:
        return principal in self.admins

    def check(
        self, principal: str, accesses: Sequence[Access], context: Mapping[str, str] | None = None
    ) -> Denial | None:
        """None when every access is allowed, else the first refusal."""
        if principal in self.admins or not accesses:
            return None
        identity = self.identity_policies(principal)
        now = self._clock()
        for access in accesses:
            if (principal, access) in self._allowed:
                continue
            resource_policy: Policy | None = None
            if access.function is not None and self._function_policy is not None:
                resource_policy = self._function_policy(access.function)
            elif access.role is not None and self._trust_policy is not None:
                resource_policy = self._trust_policy(access.role)
            request = Request(
                principal, self.account, access.action, access.resource, context or {}, now,
                role=self._role_behind(principal),
            )
            decision = evaluate(request, identity, resource_policy)
            if not decision.allowed:
                return Denial(request, decision)
            if all(_static(p) for p in identity) and (resource_policy is None or _static(resource_policy)):
                if len(self._allowed) > 65536:
                    self._allowed.clear()
                self._allowed.add((principal, access))
        return None

    def _role_behind(self, principal: str) -> str | None:
        if self._session_role is None or ":assumed-role/" not in principal:
            return None
        if principal not in self._roles:  # cleared with the identity cache
            self._roles[principal] = self._session_role(principal)
        return self._roles[principal]

    def identity_policies(self, principal: str) -> tuple[Policy, ...]:
        if self._generation != self.store.generation:
            self._identity.clear()
            self._roles.clear()
            self._allowed.clear()
            self._generation = self.store.generation
        policies = self._identity.get(principal)
        if policies is None:
            policies = tuple(_parsed(d) for d in self._documents(principal))
            self._identity[principal] = policies
        return policies


def _static(policy: Policy) -> bool:
    """Whether the policy decides the same way for any context (time, address, transport)."""
    return not any(
        st.conditions or any("${" in r for r in st.resources) for st in policy.statements
    )


def _parsed(document: str) -> Policy:
    """Stored documents were checked when written; one that no longer parses grants nothing."""
    try:
        return parse_policy(document, kind="identity")
    except MalformedPolicy:
        return Policy((), "2012-10-17", None)
