"""IAM API handlers for managed policies (customer- and AWS-managed, their versions and
attachments to roles and users) and for role and user tags.

ListPolicies pages by policy ARN: names alone are not unique across the AWS and Local scopes.
ListInstanceProfilesForRole answers an empty list for an existing role (Lamina has no instance
profiles; Terraform asks before deleting a role).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from lamina.api.app import Handler, RequestContext
from lamina.api.iam_shapes import (
    DEFAULT_MAX_ITEMS,
    encoded,
    page_out,
    paginate,
    run_blocking,
    tags_in,
    tags_out,
    when,
)
from lamina.iam.directory import Directory
from lamina.iam.managed import ManagedPolicies, Owner
from lamina.iam.model import ManagedPolicy, PolicyVersion
from lamina.iam.tagging import Tagging

T = TypeVar("T")


def policy_out(policy: ManagedPolicy, attachments: int, *, detail: bool = True) -> dict[str, Any]:
    """IAM's Policy shape; Description and Tags only where AWS returns them (not in lists)."""
    out: dict[str, Any] = {
        "PolicyName": policy.name,
        "PolicyId": policy.policy_id,
        "Arn": policy.arn,
        "Path": policy.path,
        "DefaultVersionId": policy.default_version,
        "AttachmentCount": attachments,
        "PermissionsBoundaryUsageCount": 0,
        "IsAttachable": True,
        "CreateDate": when(policy.created),
        "UpdateDate": when(policy.updated),
    }
    if detail and policy.description:
        out["Description"] = policy.description
    if detail and policy.tags:
        out["Tags"] = tags_out(policy.tags)
    return out


def version_out(version: PolicyVersion, default: str, *, document: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "VersionId": version.version_id,
        "IsDefaultVersion": version.version_id == default,
        "CreateDate": when(version.created),
    }
    if document:
        out["Document"] = encoded(version.document)
    return out


def page_by_key(items: Sequence[T], key: Callable[[T], str], p: dict[str, Any]) -> tuple[list[T], str | None]:
    """One page starting at the item whose key is ``Marker``, and the next page's marker."""
    limit = p.get("MaxItems") or DEFAULT_MAX_ITEMS
    marker = p.get("Marker")
    start = next((i for i, item in enumerate(items) if key(item) == marker), 0) if marker else 0
    page = list(items[start : start + limit])
    rest = items[start + limit :]
    return page, key(rest[0]) if rest else None


class PolicyHandlers:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.policies = ManagedPolicies(directory.store, directory.account, directory.clock)
        self.tagging = Tagging(directory.store)

    def handlers(self) -> dict[str, Handler]:
        return {
            "CreatePolicy": self.create_policy,
            "GetPolicy": self.get_policy,
            "ListPolicies": self.list_policies,
            "DeletePolicy": self.delete_policy,
            "GetPolicyVersion": self.get_policy_version,
            "CreatePolicyVersion": self.create_policy_version,
            "ListPolicyVersions": self.list_policy_versions,
            "DeletePolicyVersion": self.delete_policy_version,
            "SetDefaultPolicyVersion": self.set_default_policy_version,
            "AttachRolePolicy": self._attach("role"),
            "DetachRolePolicy": self._detach("role"),
            "ListAttachedRolePolicies": self._list_attached("role"),
            "AttachUserPolicy": self._attach("user"),
            "DetachUserPolicy": self._detach("user"),
            "ListAttachedUserPolicies": self._list_attached("user"),
            "TagRole": self.tag_role,
            "UntagRole": self.untag_role,
            "ListRoleTags": self.list_role_tags,
            "TagUser": self.tag_user,
            "UntagUser": self.untag_user,
            "ListUserTags": self.list_user_tags,
            "ListInstanceProfilesForRole": self.list_instance_profiles_for_role,
        }

    # policies

    async def create_policy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        policy = await run_blocking(
            self.policies.create_policy,
            p["PolicyName"],
            p["PolicyDocument"],
            path=p.get("Path") or "/",
            description=p.get("Description") or "",
            tags=tags_in(p),
        )
        return {"Policy": policy_out(policy, 0)}

    async def get_policy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        policy, attachments = await run_blocking(self.policies.get_policy, p["PolicyArn"])
        return {"Policy": policy_out(policy, attachments)}

    async def list_policies(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        found = await run_blocking(
            self.policies.list_policies,
            p.get("Scope") or "All",
            only_attached=bool(p.get("OnlyAttached")),
            path_prefix=p.get("PathPrefix") or "/",
        )
        page, marker = page_by_key(found, lambda item: item[0].arn, p)
        return page_out("Policies", [policy_out(x, n, detail=False) for x, n in page], marker)

    async def delete_policy(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.policies.delete_policy, p["PolicyArn"])

    # versions

    async def get_policy_version(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        policy, version = await run_blocking(self.policies.get_policy_version, p["PolicyArn"], p["VersionId"])
        return {"PolicyVersion": version_out(version, policy.default_version)}

    async def create_policy_version(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        version = await run_blocking(
            self.policies.create_policy_version,
            p["PolicyArn"],
            p["PolicyDocument"],
            bool(p.get("SetAsDefault")),
        )
        default = version.version_id if p.get("SetAsDefault") else ""
        return {"PolicyVersion": version_out(version, default, document=False)}

    async def list_policy_versions(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        policy, versions = await run_blocking(self.policies.list_policy_versions, p["PolicyArn"])
        page, marker = page_by_key(versions, lambda v: v.version_id, p)
        out = [version_out(v, policy.default_version, document=False) for v in page]
        return page_out("Versions", out, marker)

    async def delete_policy_version(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.policies.delete_policy_version, p["PolicyArn"], p["VersionId"])

    async def set_default_policy_version(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.policies.set_default_policy_version, p["PolicyArn"], p["VersionId"])

    # attachments (the same three operations for roles and users)

    def _attach(self, owner: Owner) -> Handler:
        key = "RoleName" if owner == "role" else "UserName"

        async def attach(ctx: RequestContext, p: dict[str, Any]) -> None:
            await run_blocking(self.policies.attach, owner, p[key], p["PolicyArn"])

        return attach

    def _detach(self, owner: Owner) -> Handler:
        key = "RoleName" if owner == "role" else "UserName"

        async def detach(ctx: RequestContext, p: dict[str, Any]) -> None:
            await run_blocking(self.policies.detach, owner, p[key], p["PolicyArn"])

        return detach

    def _list_attached(self, owner: Owner) -> Handler:
        key = "RoleName" if owner == "role" else "UserName"

        async def list_attached(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
            found = await run_blocking(self.policies.list_attached, owner, p[key], p.get("PathPrefix") or "/")
            page, marker = page_by_key(found, lambda x: x.arn, p)
            out = [{"PolicyName": x.name, "PolicyArn": x.arn} for x in page]
            return page_out("AttachedPolicies", out, marker)

        return list_attached

    # tags

    async def tag_role(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.tagging.tag_role, p["RoleName"], tags_in(p))

    async def untag_role(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.tagging.untag_role, p["RoleName"], p["TagKeys"])

    async def list_role_tags(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        tags = tags_out(await run_blocking(self.tagging.role_tags, p["RoleName"]))
        return page_out("Tags", *paginate(tags, lambda t: t["Key"], p))

    async def tag_user(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.tagging.tag_user, p["UserName"], tags_in(p))

    async def untag_user(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await run_blocking(self.tagging.untag_user, p["UserName"], p["TagKeys"])

    async def list_user_tags(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        tags = tags_out(await run_blocking(self.tagging.user_tags, p["UserName"]))
        return page_out("Tags", *paginate(tags, lambda t: t["Key"], p))

    async def list_instance_profiles_for_role(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        await run_blocking(self.directory.get_role, p["RoleName"])
        return page_out("InstanceProfiles", [], None)
