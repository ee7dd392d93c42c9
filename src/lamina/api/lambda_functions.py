"""Lambda API adapters for functions and versions (thin: wire dicts in, wire dicts out)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lamina.api import shapes
from lamina.api.app import Handler, RequestContext
from lamina.control.functions import Functions
from lamina.errors import InvalidParameterValue

# (endpoint, function name, version) -> a presigned URL that downloads that version's zip
Presigner = Callable[[str, str, str], str]


def _code(params: dict[str, Any]) -> bytes:
    code = params.get("Code") or {}
    if code.get("S3Bucket") or code.get("S3Key"):
        raise InvalidParameterValue(
            "Lamina has no S3 service yet: upload the deployment package with Code.ZipFile "
            "(the AWS CLI's --zip-file fileb://function.zip)."
        )
    if code.get("ImageUri"):
        raise InvalidParameterValue("Lamina runs .zip file deployment packages only; ImageUri is not supported.")
    data = code.get("ZipFile")
    if not data:
        raise InvalidParameterValue("Please provide a source for function code.")
    return bytes(data)


class FunctionHandlers:
    def __init__(self, functions: Functions, presign: Presigner) -> None:
        self.functions = functions
        self.presign = presign

    def handlers(self) -> dict[str, Handler]:
        return {
            "CreateFunction": self.create_function,
            "GetFunction": self.get_function,
            "GetFunctionConfiguration": self.get_function_configuration,
            "ListFunctions": self.list_functions,
            "UpdateFunctionCode": self.update_function_code,
            "UpdateFunctionConfiguration": self.update_function_configuration,
            "DeleteFunction": self.delete_function,
            "PublishVersion": self.publish_version,
            "ListVersionsByFunction": self.list_versions_by_function,
        }

    async def create_function(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("PackageType", "Zip") != "Zip":
            raise InvalidParameterValue("Lamina runs .zip file deployment packages only; PackageType Image is not supported.")
        version = await self.functions.create(
            p["FunctionName"],
            _code(p),
            shapes.config_change(p),
            publish=bool(p.get("Publish")),
            tags=p.get("Tags"),
        )
        return shapes.function_configuration(version)

    async def get_function(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        resolved = self.functions.resolve(p["FunctionName"], p.get("Qualifier"))
        v = resolved.version
        out: dict[str, Any] = {
            "Configuration": shapes.function_configuration(v, resolved.arn),
            "Code": {
                "RepositoryType": "S3",
                "Location": self.presign(ctx.endpoint, v.name, v.version),
            },
        }
        if resolved.function.tags:
            out["Tags"] = dict(resolved.function.tags)
        if resolved.function.reserved_concurrency is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": resolved.function.reserved_concurrency}
        return out

    async def get_function_configuration(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        resolved = self.functions.resolve(p["FunctionName"], p.get("Qualifier"))
        return shapes.function_configuration(resolved.version, resolved.arn)

    async def list_functions(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        all_versions = p.get("FunctionVersion") == "ALL"
        page, marker = self.functions.page(p.get("Marker"), p.get("MaxItems"), all_versions)
        out: dict[str, Any] = {"Functions": [shapes.function_configuration(v) for v in page]}
        if marker:
            out["NextMarker"] = marker
        return out

    async def update_function_code(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("ImageUri"):
            raise InvalidParameterValue("Lamina runs .zip file deployment packages only; ImageUri is not supported.")
        version = await self.functions.update_code(
            p["FunctionName"],
            _code({"Code": p}),
            publish=bool(p.get("Publish")),
            revision_id=p.get("RevisionId"),
            dry_run=bool(p.get("DryRun")),
        )
        return shapes.function_configuration(version)

    async def update_function_configuration(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        version = await self.functions.update_configuration(
            p["FunctionName"], shapes.config_change(p), revision_id=p.get("RevisionId")
        )
        return shapes.function_configuration(version)

    async def delete_function(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        self.functions.delete(p["FunctionName"], p.get("Qualifier"))
        return {"StatusCode": 204}

    async def publish_version(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        version = await self.functions.publish(
            p["FunctionName"],
            code_sha=p.get("CodeSha256"),
            description=p.get("Description"),
            revision_id=p.get("RevisionId"),
        )
        return shapes.function_configuration(version)

    async def list_versions_by_function(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        page, marker = self.functions.versions(p["FunctionName"], p.get("Marker"), p.get("MaxItems"))
        # Here (unlike ListFunctions) AWS qualifies $LATEST's ARN too.
        out: dict[str, Any] = {"Versions": [shapes.function_configuration(v, v.qualified_arn) for v in page]}
        if marker:
            out["NextMarker"] = marker
        return out

