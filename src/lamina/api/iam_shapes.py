"""IAM's output shapes and the helpers every IAM handler module shares.

Policy documents go out URL-encoded, as IAM sends them (botocore decodes them); timestamps as
UTC datetimes (the query serializer writes them); list results page by ``Marker``/``MaxItems``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

from lamina.control.model import AccessKey
from lamina.iam.model import Role, User

P = ParamSpec("P")
T = TypeVar("T")
DEFAULT_MAX_ITEMS = 100


async def run_blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
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
    """One page after ``Marker`` (the name of the page's first item), and the next marker.
    Items are paged in name order (case-insensitive), whatever order they come in, so a marker
    always moves forward."""
    items = sorted(items, key=lambda item: name(item).lower())
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
