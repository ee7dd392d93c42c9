"""IAM API handlers (thin: query-protocol parameters in, IAM's output shapes out).

Policy documents go out URL-encoded, as IAM sends them (botocore decodes them). Without a
``UserName`` the user operations act on the caller: its own user, or the account's root user
for the root's key, as AWS does; role sessions must name the user.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

from lamina.api.app import Handler, RequestContext
from lamina.control.model import AccessKey
from lamina.errors import IamError
from lamina.iam.directory import Directory, user_name_of
from lamina.iam.model import Role, User

P = ParamSpec("P")
T = TypeVar("T")
DEFAULT_MAX_ITEMS = 100


async def _run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Store calls fsync on write: keep them off the event loop."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


def encoded(document: str) -> str:
    return quote(document, safe="")


def when(text: str) -> datetime:
    """A stored timestamp (IAM's or the older Lambda-style text of bootstrap keys) as UTC."""
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def tags_out(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tags_in(p: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in p.get("Tags") or []}


def role_out(role: Role, *, with_tags: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Path": role.path,
        "RoleName": role.name,
        "RoleId": role.role_id,
        "Arn": role.arn,
        "CreateDate": when(role.created),
        "AssumeRolePolicyDocument": encoded(role.assume_role_policy),
        "MaxSessionDuration": role.max_session_duration,
    }
    if role.description:
        out["Description"] = role.description
    if with_tags and role.tags:
        out["Tags"] = tags_out(role.tags)
    return out


def user_out(user: User, *, with_tags: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Path": user.path,
        "UserName": user.name,
        "UserId": user.user_id,
        "Arn": user.arn,
        "CreateDate": when(user.created),
    }
    if with_tags and user.tags:
        out["Tags"] = tags_out(user.tags)
    return out


def key_out(key: AccessKey, user: str | None, *, secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AccessKeyId": key.access_key_id,
        "Status": key.status,
        "CreateDate": when(key.created),
    }
    if user is not None:
        out["UserName"] = user
    if secret:
        out["SecretAccessKey"] = key.secret_access_key
    return out


def paginate(items: Sequence[T], name: Callable[[T], str], p: dict[str, Any]) -> tuple[list[T], str | None]:
    """One page after ``Marker`` (the name of the page's first item), and the next marker."""
    limit = p.get("MaxItems") or DEFAULT_MAX_ITEMS
    marker = p.get("Marker")
    start = 0
    if marker is not None:
        start = next((i for i, item in enumerate(items) if name(item).lower() >= marker.lower()), len(items))
    page = list(items[start : start + limit])
    rest = items[start + limit :]
    return page, name(rest[0]) if rest else None


def page_out(key: str, page: list[Any], marker: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {key: page, "IsTruncated": marker is not None}
    if marker is not None:
        out["Marker"] = marker
    return out


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
        }

    # roles

    async def create_role(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        role = await _run(
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
        return {"Role": role_out(await _run(self.directory.get_role, p["RoleName"]))}

    async def list_roles(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        roles = await _run(self.directory.list_roles, p.get("PathPrefix") or "/")
        page, marker = paginate(roles, lambda r: r.name, p)
        return page_out("Roles", [role_out(r, with_tags=False) for r in page], marker)

    async def delete_role(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await _run(self.directory.delete_role, p["RoleName"])

    async def update_assume_role_policy(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await _run(self.directory.update_assume_role_policy, p["RoleName"], p["PolicyDocument"])

    async def put_role_policy(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await _run(self.directory.put_role_policy, p["RoleName"], p["PolicyName"], p["PolicyDocument"])

    async def get_role_policy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        role, document = await _run(self.directory.get_role_policy, p["RoleName"], p["PolicyName"])
        return {"RoleName": role.name, "PolicyName": p["PolicyName"], "PolicyDocument": encoded(document)}

    async def delete_role_policy(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await _run(self.directory.delete_role_policy, p["RoleName"], p["PolicyName"])

    async def list_role_policies(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        names = await _run(self.directory.list_role_policies, p["RoleName"])
        return page_out("PolicyNames", *paginate(names, str, p))

    # users

    async def create_user(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        user = await _run(
            self.directory.create_user, p["UserName"], path=p.get("Path") or "/", tags=tags_in(p)
        )
        return {"User": user_out(user)}

    async def get_user(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        name = p.get("UserName") or self._caller_user(ctx)
        if name is None:
            return {"User": await _run(self._root_user)}
        return {"User": user_out(await _run(self.directory.get_user, name))}

    async def list_users(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        users = await _run(self.directory.list_users, p.get("PathPrefix") or "/")
        page, marker = paginate(users, lambda u: u.name, p)
        return page_out("Users", [user_out(u, with_tags=False) for u in page], marker)

    async def delete_user(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await _run(self.directory.delete_user, p["UserName"])

    async def put_user_policy(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await _run(self.directory.put_user_policy, p["UserName"], p["PolicyName"], p["PolicyDocument"])

    async def get_user_policy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        user, document = await _run(self.directory.get_user_policy, p["UserName"], p["PolicyName"])
        return {"UserName": user.name, "PolicyName": p["PolicyName"], "PolicyDocument": encoded(document)}

    async def delete_user_policy(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await _run(self.directory.delete_user_policy, p["UserName"], p["PolicyName"])

    async def list_user_policies(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        names = await _run(self.directory.list_user_policies, p["UserName"])
        return page_out("PolicyNames", *paginate(names, str, p))

    # access keys

    async def create_access_key(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        user = self._key_owner(ctx, p)
        key = await _run(self.directory.create_access_key, user)
        return {"AccessKey": key_out(key, user, secret=True)}

    async def list_access_keys(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        user = self._key_owner(ctx, p)
        keys = await _run(self.directory.list_access_keys, user)
        page, marker = paginate(keys, lambda k: k.access_key_id, p)
        return page_out("AccessKeyMetadata", [key_out(k, user) for k in page], marker)

    async def update_access_key(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        user = self._key_owner(ctx, p)
        await _run(self.directory.update_access_key, user, p["AccessKeyId"], p["Status"])

    async def delete_access_key(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await _run(self.directory.delete_access_key, self._key_owner(ctx, p), p["AccessKeyId"])

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
