"""Lambda API adapters for layers and their permissions (thin: wire dicts in, wire dicts out).

``Content.Location`` is a presigned Lamina URL, made by the injected ``presign`` callable the
same way GetFunction's code URL is; :func:`layer_path_for` is the path it should sign and
:func:`download` serves it once the server has verified the signature.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, unquote

import botocore.loaders

from lamina.api.app import Handler, RequestContext
from lamina.control.layers import Layers, policy_json
from lamina.control.model import LayerVersion
from lamina.control.validation import ConstraintCollector
from lamina.errors import AccessDenied, InvalidParameterValue, ResourceNotFound

# (endpoint, layer name, version) -> a presigned URL that downloads that layer version's zip
LayerPresigner = Callable[[str, str, int], str]

LAYER_PATH_PREFIX = "/_lamina/layer/"


def layer_path_for(name: str, version: int) -> str:
    return f"{LAYER_PATH_PREFIX}{quote(name, safe='')}/{version}"


async def download(layers: Layers, raw_path: str) -> bytes:
    """The zip a (signature-verified) ``/_lamina/layer/<name>/<version>`` request asks for."""
    parts = raw_path.split("/")
    if len(parts) != 5 or not parts[4].isdigit():
        raise AccessDenied("Access Denied")
    try:
        layer = layers.get(unquote(parts[3]), int(parts[4]))
    except (ResourceNotFound, InvalidParameterValue):
        raise AccessDenied("Access Denied") from None  # as S3 answers for a missing object
    return await asyncio.to_thread(layers.read, layer)


@functools.cache
def _runtime_enum() -> tuple[str, ...]:
    """Every runtime name botocore's model knows (the wire leaves Runtime's enum to us, since
    functions get AWS's semantic error instead; layers get the model's ValidationException)."""
    model = botocore.loaders.Loader().load_service_model("lambda", "service-2", "2015-03-31")
    return tuple(model["shapes"]["Runtime"]["enum"])


def _check_runtimes(path: str, runtimes: Sequence[str], single: bool) -> None:
    known = _runtime_enum()
    if all(r in known for r in runtimes):
        return
    enum = f"Member must satisfy enum value set: [{', '.join(known)}]"
    with ConstraintCollector() as checks:
        if single:
            checks.add(path, runtimes[0], enum)
        else:
            checks.add(path, list(runtimes), f"Member must satisfy constraint: [{enum}]")


def _content(p: dict[str, Any]) -> bytes:
    content = p.get("Content") or {}
    if content.get("S3Bucket") or content.get("S3Key"):
        raise InvalidParameterValue(
            "Lamina has no S3 service yet: upload the layer with Content.ZipFile "
            "(the AWS CLI's --zip-file fileb://layer.zip)."
        )
    data = content.get("ZipFile")
    if not data:
        raise InvalidParameterValue("Missing Content")
    return bytes(data)


def version_item(layer: LayerVersion) -> dict[str, Any]:
    """LayerVersionsListItem: what ListLayers and ListLayerVersions show of a version."""
    out: dict[str, Any] = {
        "LayerVersionArn": layer.version_arn,
        "Version": layer.version,
        "Description": layer.description,
        "CreatedDate": layer.created,
    }
    if layer.compatible_runtimes:
        out["CompatibleRuntimes"] = list(layer.compatible_runtimes)
    if layer.compatible_architectures:
        out["CompatibleArchitectures"] = list(layer.compatible_architectures)
    if layer.license_info is not None:
        out["LicenseInfo"] = layer.license_info
    return out


class LayerHandlers:
    def __init__(self, layers: Layers, presign: LayerPresigner) -> None:
        self.layers = layers
        self.presign = presign

    def handlers(self) -> dict[str, Handler]:
        return {
            "PublishLayerVersion": self.publish_layer_version,
            "GetLayerVersion": self.get_layer_version,
            "GetLayerVersionByArn": self.get_layer_version_by_arn,
            "ListLayers": self.list_layers,
            "ListLayerVersions": self.list_layer_versions,
            "DeleteLayerVersion": self.delete_layer_version,
            "AddLayerVersionPermission": self.add_layer_version_permission,
            "RemoveLayerVersionPermission": self.remove_layer_version_permission,
            "GetLayerVersionPolicy": self.get_layer_version_policy,
        }

    def _version(self, ctx: RequestContext, layer: LayerVersion) -> dict[str, Any]:
        """PublishLayerVersion's and GetLayerVersion's response."""
        return {
            **version_item(layer),
            "LayerArn": layer.layer_arn,
            "Content": {
                "Location": self.presign(ctx.endpoint, layer.name, layer.version),
                "CodeSha256": layer.code_sha256,
                "CodeSize": layer.code_size,
            },
        }

    async def publish_layer_version(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        _check_runtimes("compatibleRuntimes", p.get("CompatibleRuntimes") or (), single=False)
        layer = await asyncio.to_thread(
            self.layers.publish,
            p["LayerName"],
            _content(p),
            p.get("Description", ""),
            p.get("CompatibleRuntimes") or (),
            p.get("CompatibleArchitectures") or (),
            p.get("LicenseInfo"),
        )
        return self._version(ctx, layer)

    async def get_layer_version(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return self._version(ctx, self.layers.get(p["LayerName"], p["VersionNumber"]))

    async def get_layer_version_by_arn(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return self._version(ctx, self.layers.get_by_arn(p["Arn"]))

    async def list_layers(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if "CompatibleRuntime" in p:
            _check_runtimes("compatibleRuntime", [p["CompatibleRuntime"]], single=True)
        page, marker = self.layers.list_layers(
            p.get("CompatibleRuntime"), p.get("CompatibleArchitecture"), p.get("Marker"), p.get("MaxItems")
        )
        out: dict[str, Any] = {
            "Layers": [
                {"LayerName": v.name, "LayerArn": v.layer_arn, "LatestMatchingVersion": version_item(v)}
                for v in page
            ]
        }
        if marker:
            out["NextMarker"] = marker
        return out

    async def list_layer_versions(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if "CompatibleRuntime" in p:
            _check_runtimes("compatibleRuntime", [p["CompatibleRuntime"]], single=True)
        page, marker = self.layers.list_versions(
            p["LayerName"], p.get("CompatibleRuntime"), p.get("CompatibleArchitecture"),
            p.get("Marker"), p.get("MaxItems"),
        )
        out: dict[str, Any] = {"LayerVersions": [version_item(v) for v in page]}
        if marker:
            out["NextMarker"] = marker
        return out

    async def delete_layer_version(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        await asyncio.to_thread(self.layers.delete, p["LayerName"], p["VersionNumber"])

    async def add_layer_version_permission(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        statement, revision = self.layers.add_permission(
            p["LayerName"], p["VersionNumber"], p["StatementId"], p["Action"], p["Principal"],
            p.get("OrganizationId"), p.get("RevisionId"),
        )
        return {"Statement": policy_json(statement), "RevisionId": revision}

    async def remove_layer_version_permission(self, ctx: RequestContext, p: dict[str, Any]) -> None:
        self.layers.remove_permission(
            p["LayerName"], p["VersionNumber"], p["StatementId"], p.get("RevisionId")
        )

    async def get_layer_version_policy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        policy, revision = self.layers.get_policy(p["LayerName"], p["VersionNumber"])
        return {"Policy": policy_json(policy), "RevisionId": revision}
