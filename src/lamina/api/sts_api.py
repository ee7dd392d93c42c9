"""STS API handlers: GetCallerIdentity and AssumeRole.

AssumeRole checks what only STS can: the role's trust policy and its MaxSessionDuration. The
caller's own permission for sts:AssumeRole (its identity policies) is checked before any
handler runs, by the enforcement layer. As on AWS, a trust policy that names the account
(``arn:aws:iam::<account>:root``) delegates the decision to those identity policies, so it
admits any principal of the account; an explicit Deny for the caller still wins.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

from lamina.api.actions import sts_conditions
from lamina.api.app import Handler, RequestContext
from lamina.api.iam_api import when
from lamina.errors import IamError
from lamina.iam.credentials import Credentials
from lamina.iam.directory import Directory, parse_trust_policy, role_arn_of, user_name_of
from lamina.iam.policy import Policy, Request, evaluate

MIN_DURATION = 900
DEFAULT_DURATION = 3600
CHAINED_LIMIT = 3600  # role chaining: a session assuming a role gets at most one hour


def delegating(trust: Policy, root_arn: str, caller: str) -> Policy:
    """The trust policy with the account principal also naming ``caller`` (AWS's delegation)."""
    statements = []
    for st in trust.statements:
        p = st.principal
        if p is not None and not st.not_principal and root_arn in p.aws:
            st = dataclasses.replace(st, principal=dataclasses.replace(p, aws=p.aws | {caller}))
        statements.append(st)
    return dataclasses.replace(trust, statements=tuple(statements))


class StsHandlers:
    def __init__(self, directory: Directory, credentials: Credentials) -> None:
        self.directory = directory
        self.credentials = credentials

    def handlers(self) -> dict[str, Handler]:
        return {"GetCallerIdentity": self.get_caller_identity, "AssumeRole": self.assume_role}

    async def get_caller_identity(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        principal = ctx.identity.principal_arn
        user_id = await asyncio.to_thread(self._user_id, principal, ctx.identity.access_key_id)
        return {"UserId": user_id, "Account": self.directory.account, "Arn": principal}

    def _user_id(self, principal: str, access_key_id: str) -> str:
        if principal == self.directory.root_arn:
            return self.directory.account
        user = user_name_of(principal)
        if user is not None:
            return self.directory.get_user(user).user_id
        role_arn = role_arn_of(principal)
        if role_arn is not None and ":assumed-role/" in principal:
            try:
                role = self.directory.get_role(role_arn.rsplit("/", 1)[-1])
            except IamError:
                return access_key_id  # the role was deleted under a live session
            return f"{role.role_id}:{principal.rsplit('/', 1)[-1]}"
        return access_key_id  # a platform key's principal has no IAM entity behind it

    async def assume_role(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        context = {**ctx.conditions, **sts_conditions(p)}
        return await asyncio.to_thread(self._assume_role, ctx.identity.principal_arn, p, context)

    def _assume_role(self, caller: str, p: dict[str, Any], context: Mapping[str, str]) -> dict[str, Any]:
        if p.get("Policy") or p.get("PolicyArns"):
            # Granting the role's full rights when the caller asked for less would be wrong.
            raise IamError("ValidationError", "Session policies (Policy, PolicyArns) are not supported by Lamina.")
        role_arn: str = p["RoleArn"]
        session: str = p["RoleSessionName"]
        duration: int = p.get("DurationSeconds") or DEFAULT_DURATION
        denied = IamError(
            "AccessDenied",
            f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
            403,
        )
        role = self.directory.role_by_arn(role_arn)
        if role is None:
            raise denied  # AWS does not tell callers whether a role exists
        trust = delegating(parse_trust_policy(role.assume_role_policy), self.directory.root_arn, caller)
        request = Request(
            caller, self.directory.account, "sts:AssumeRole", role.arn, context, self.directory.clock(),
            role=self.directory.session_role_arn(caller),
        )
        if not evaluate(request, [], trust).allowed:
            raise denied
        if duration < MIN_DURATION:
            raise IamError(
                "ValidationError",
                f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to "
                f"satisfy constraint: Member must have value greater than or equal to {MIN_DURATION}",
            )
        if ":assumed-role/" in caller and duration > CHAINED_LIMIT:
            raise IamError(
                "ValidationError",
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed "
                "by role chaining.",
            )
        if duration > role.max_session_duration:
            raise IamError(
                "ValidationError",
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            )
        key, assumed_role_id = self.credentials.assume_role(role.arn, session, duration)
        assert key.session_token is not None and key.expires is not None  # minted with both
        return {
            "Credentials": {
                "AccessKeyId": key.access_key_id,
                "SecretAccessKey": key.secret_access_key,
                "SessionToken": key.session_token,
                "Expiration": when(key.expires),
            },
            "AssumedRoleUser": {"AssumedRoleId": assumed_role_id, "Arn": key.principal_arn},
        }
