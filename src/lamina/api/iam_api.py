"""IAM API handlers (thin: query-protocol parameters in, IAM's output shapes out).

Policy documents go out URL-encoded, as IAM sends them (botocore decodes them). Without a
``UserName`` the user operations act on the caller: its own user, or the account's root user
for the root's key, as AWS does; role sessions must name the user. Managed policies and tags
are in ``iam_policies_api`` (their entries join ``handlers()``); shapes in ``iam_shapes``.
"""

from __future__ import annotations

from typing import Any

from lamina.api.app import Handler, RequestContext
from lamina.api.iam_policies_api import PolicyHandlers
from lamina.api.iam_shapes import (
    encoded,
    key_out,
    page_out,
    paginate,
    role_out,
    run_blocking,
    tags_in,
    user_out,
    when,
)
from lamina.errors import IamError
from lamina.iam.directory import Directory, user_name_of

__all__ = ["IamHandlers", "when"]  # ``when`` is STS's too


class IamHandlers:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def handlers(self) -> dict[str, Handler]:
        return {
            "CreateRole": self.create_role,
            "GetRole": self.get_role,
            "ListRoles": self.list_roles,
            "DeleteRole": self.delete_role,
            "UpdateAssumeRolePolicy": self.update_assume_role_policy,
            "PutRolePolicy": self.put_role_policy,
            "GetRolePolicy": self.get_role_policy,
            "DeleteRolePolicy": self.delete_role_policy,
            "ListRolePolicies": self.list_role_policies,
            "CreateUser": self.create_user,
            "GetUser": self.get_user,
            "ListUsers": self.list_users,
            "DeleteUser": self.delete_user,
            "PutUserPolicy": self.put_user_policy,
            "GetUserPolicy": self.get_user_policy,
            "DeleteUserPolicy": self.delete_user_policy,
            "ListUserPolicies": self.list_user_policies,
            "CreateAccessKey": self.create_access_key,
            "ListAccessKeys": self.list_access_keys,
            "UpdateAccessKey": self.update_access_key,
            "DeleteAccessKey": self.delete_access_key,
            **PolicyHandlers(self.directory).handlers(),
        }

    # roles

    async def create_role(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        role = await run_blocking(
            self.directory.create_role,
            p["RoleName"],
            p["AssumeRolePolicyDocument"],
            path=p.get("Path") or "/",
            description=p.get("Description") or "",
            max_session_duration=p.get("MaxSessionDuration") or 3600,
            tags=tags_in(p),
        )
        return {"Role": role_out(role)}

    async def get_role(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {"Role": role_out(await run_blocking(self.directory.get_role, p["RoleName"]))}

    async def list_roles(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        roles = await run_blocking(self.directory.list_roles, p.get("PathPrefix") or "/")
        page, marker = paginate(roles, lambda r: r.name, p)
        return page_out("Roles", [role_out(r, with_tags=False) for r in page], marker)

    async def delete_role(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.directory.delete_role, p["RoleName"])

    async def update_assume_role_policy(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.directory.update_assume_role_policy, p["RoleName"], p["PolicyDocument"])

    async def put_role_policy(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(
            self.directory.put_role_policy, p["RoleName"], p["PolicyName"], p["PolicyDocument"]
        )

    async def get_role_policy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        role, document = await run_blocking(self.directory.get_role_policy, p["RoleName"], p["PolicyName"])
        return {"RoleName": role.name, "PolicyName": p["PolicyName"], "PolicyDocument": encoded(document)}

    async def delete_role_policy(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.directory.delete_role_policy, p["RoleName"], p["PolicyName"])

    async def list_role_policies(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        names = await run_blocking(self.directory.list_role_policies, p["RoleName"])
        return page_out("PolicyNames", *paginate(names, str, p))

    # users

    async def create_user(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        user = await run_blocking(
            self.directory.create_user, p["UserName"], path=p.get("Path") or "/", tags=tags_in(p)
        )
        return {"User": user_out(user)}

    async def get_user(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        name = p.get("UserName") or self._caller_user(ctx)
        if name is None:
            return {"User": await run_blocking(self._root_user)}
        return {"User": user_out(await run_blocking(self.directory.get_user, name))}

    async def list_users(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        users = await run_blocking(self.directory.list_users, p.get("PathPrefix") or "/")
        page, marker = paginate(users, lambda u: u.name, p)
        return page_out("Users", [user_out(u, with_tags=False) for u in page], marker)

    async def delete_user(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.directory.delete_user, p["UserName"])

    async def put_user_policy(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(
            self.directory.put_user_policy, p["UserName"], p["PolicyName"], p["PolicyDocument"]
        )

    async def get_user_policy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        user, document = await run_blocking(self.directory.get_user_policy, p["UserName"], p["PolicyName"])
        return {"UserName": user.name, "PolicyName": p["PolicyName"], "PolicyDocument": encoded(document)}

    async def delete_user_policy(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.directory.delete_user_policy, p["UserName"], p["PolicyName"])

    async def list_user_policies(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        names = await run_blocking(self.directory.list_user_policies, p["UserName"])
        return page_out("PolicyNames", *paginate(names, str, p))

    # access keys

    async def create_access_key(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        user = self._key_owner(ctx, p)
        key = await run_blocking(self.directory.create_access_key, user)
        return {"AccessKey": key_out(key, user, secret=True)}

    async def list_access_keys(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        user = self._key_owner(ctx, p)
        keys = await run_blocking(self.directory.list_access_keys, user)
        page, marker = paginate(keys, lambda k: k.access_key_id, p)
        return page_out("AccessKeyMetadata", [key_out(k, user) for k in page], marker)

    async def update_access_key(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        user = self._key_owner(ctx, p)
        await run_blocking(self.directory.update_access_key, user, p["AccessKeyId"], p["Status"])

    async def delete_access_key(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.directory.delete_access_key, self._key_owner(ctx, p), p["AccessKeyId"])

    # the caller

    def _caller_user(self, ctx: RequestContext) -> str | None:
        """The caller's user name; None for the root; ValidationError for anyone else."""
        principal = ctx.identity.principal_arn
        if principal == self.directory.root_arn:
            return None
        name = user_name_of(principal)
        if name is None:
            raise IamError("ValidationError", "Must specify userName when calling with non-User credentials")
        return name

    def _key_owner(self, ctx: RequestContext, p: dict[str, Any]) -> str | None:
        name = p.get("UserName")
        return str(name) if name else self._caller_user(ctx)

    def _root_user(self) -> dict[str, Any]:
        """GetUser for the root: no name or path, the account id as UserId (as AWS answers)."""
        keys = self.directory.list_access_keys(None)
        created = when(keys[0].created) if keys else self.directory.clock()
        return {"UserId": self.directory.account, "Arn": self.directory.root_arn, "CreateDate": created}
