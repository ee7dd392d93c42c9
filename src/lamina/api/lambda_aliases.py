"""Lambda API adapters for aliases, tags and account settings."""

from __future__ import annotations

from typing import Any

from lamina.api import shapes
from lamina.api.app import Handler, RequestContext
from lamina.control.aliases import Aliases
from lamina.control.functions import Functions
from lamina.settings import Settings


class AliasHandlers:
    def __init__(self, aliases: Aliases) -> None:
        self.aliases = aliases

    def handlers(self) -> dict[str, Handler]:
        return {
            "CreateAlias": self.create_alias,
            "GetAlias": self.get_alias,
            "UpdateAlias": self.update_alias,
            "DeleteAlias": self.delete_alias,
            "ListAliases": self.list_aliases,
        }

    async def create_alias(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        alias = self.aliases.create(
            p["FunctionName"],
            p["Name"],
            p["FunctionVersion"],
            p.get("Description", ""),
            (p.get("RoutingConfig") or {}).get("AdditionalVersionWeights"),
        )
        return shapes.alias_configuration(alias)

    async def get_alias(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return shapes.alias_configuration(self.aliases.get(p["FunctionName"], p["Name"]))

    async def update_alias(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        routing = p.get("RoutingConfig")
        alias = self.aliases.update(
            p["FunctionName"],
            p["Name"],
            version=p.get("FunctionVersion"),
            description=p.get("Description"),
            routing=None if routing is None else routing.get("AdditionalVersionWeights") or {},
            revision_id=p.get("RevisionId"),
        )
        return shapes.alias_configuration(alias)

    async def delete_alias(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        self.aliases.delete(p["FunctionName"], p["Name"])

    async def list_aliases(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        page, marker = self.aliases.list(
            p["FunctionName"], p.get("FunctionVersion"), p.get("Marker"), p.get("MaxItems")
        )
        out: dict[str, Any] = {"Aliases": [shapes.alias_configuration(a) for a in page]}
        if marker:
            out["NextMarker"] = marker
        return out


class AccountHandlers:
    def __init__(self, functions: Functions, settings: Settings) -> None:
        self.functions = functions
        self.settings = settings

    def handlers(self) -> dict[str, Handler]:
        return {
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTags": self.list_tags,
            "GetAccountSettings": self.get_account_settings,
        }

    async def tag_resource(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        self.functions.tag(p["Resource"], p["Tags"])

    async def untag_resource(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        self.functions.untag(p["Resource"], p["TagKeys"])

    async def list_tags(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": self.functions.tags(p["Resource"])}

    async def get_account_settings(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        limits = self.settings.limits
        total, count = self.functions.usage()
        return {
            "AccountLimit": {
                "TotalCodeSize": limits.code_storage_bytes,
                "CodeSizeUnzipped": limits.unzipped_max_bytes,
                "CodeSizeZipped": limits.zip_max_bytes,
                "ConcurrentExecutions": limits.account_concurrency,
                "UnreservedConcurrentExecutions": limits.account_concurrency
                - sum(self.functions.reservations().values()),
            },
            "AccountUsage": {"TotalCodeSize": total, "FunctionCount": count},
        }
