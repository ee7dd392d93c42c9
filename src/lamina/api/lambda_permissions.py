"""Lambda API adapters for function, version and alias resource policies (thin: wire dicts in,
wire dicts out). Register with ``handlers.update(PermissionHandlers(permissions).handlers())``."""

from __future__ import annotations

import json
from typing import Any

from lamina.api.app import Handler, RequestContext
from lamina.control.permissions import Grant, Permissions


class PermissionHandlers:
    def __init__(self, permissions: Permissions) -> None:
        self.permissions = permissions

    def handlers(self) -> dict[str, Handler]:
        return {
            "AddPermission": self.add_permission,
            "RemovePermission": self.remove_permission,
            "GetPolicy": self.get_policy,
        }

    async def add_permission(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        grant = Grant(
            statement_id=p["StatementId"],
            action=p["Action"],
            principal=p["Principal"],
            source_arn=p.get("SourceArn"),
            source_account=p.get("SourceAccount"),
            principal_org_id=p.get("PrincipalOrgID"),
            event_source_token=p.get("EventSourceToken"),
            function_url_auth_type=p.get("FunctionUrlAuthType"),
            invoked_via_function_url=p.get("InvokedViaFunctionUrl"),
        )
        statement = self.permissions.add(p["FunctionName"], grant, p.get("Qualifier"), p.get("RevisionId"))
        return {"Statement": json.dumps(statement, separators=(",", ":"))}

    async def remove_permission(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        self.permissions.remove(p["FunctionName"], p["StatementId"], p.get("Qualifier"), p.get("RevisionId"))

    async def get_policy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        policy, revision = self.permissions.get(p["FunctionName"], p.get("Qualifier"))
        return {"Policy": policy, "RevisionId": revision}
