"""Layers: publish, read, list, delete and share layer versions; resolve a function's layers.

A layer version is immutable once published (only its resource policy changes). Its zip gets
the same hostile-archive checks as function code and is stored encrypted in the artifact store
under ``layer/<layer version ARN>/<sha256 hex>``, bound to that ARN and digest.

Deletion follows AWS: the version disappears from the layer API at once (GetLayerVersion answers
404, numbers are never reused), but function versions that already reference it keep working.
So a delete only marks the version (``deleted_at``); :meth:`Layers.sweep` later removes marked
versions, row and artifact, once no function version references them and a grace period has
passed (the grace covers a CreateFunction that validated the layer just before the delete and
stores its version just after). Sweeping runs after every delete; call it at start-up as well.

Blocking methods (publish, read_layer_key, sweep) do file I/O: call them via asyncio.to_thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from lamina.control import arns
from lamina.control.archives import ArchiveLimits, inspect_zip
from lamina.control.functions import aws_timestamp, code_sha256
from lamina.control.model import LayerVersion
from lamina.errors import (
    AccessDenied,
    ArchiveError,
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from lamina.settings import Settings
from lamina.store.artifacts import ArtifactStore
from lamina.store.metadata import MetadataStore, Transaction
from lamina.telemetry.history import NO_HISTORY, Recorder

MAX_LAYERS_PER_FUNCTION = 5
GET_LAYER_VERSION = "lambda:GetLayerVersion"
NOT_FOUND = "The resource you requested does not exist."
NO_POLICY = "No policy is associated with the given resource."
POLICY_REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetLayerPolicy API to retrieve the latest Revision Id"
)
COMBINED_TOO_LARGE = (
    "Function code combined with layers exceeds the maximum allowed size of {limit} bytes. "
    "The actual size is {actual} bytes."
)


def layer_aad(version_arn: str, digest_hex: str) -> bytes:
    return f"lamina:layer:{version_arn}:{digest_hex}".encode()


def matches(layer: LayerVersion, runtime: str | None, architecture: str | None) -> bool:
    """ListLayers/ListLayerVersions filters: a version must declare the runtime/architecture."""
    return (runtime is None or runtime in layer.compatible_runtimes) and (
        architecture is None or architecture in layer.compatible_architectures
    )


class Layers:
    def __init__(
        self,
        settings: Settings,
        store: MetadataStore,
        artifacts: ArtifactStore,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        sweep_grace_seconds: float = 60.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.artifacts = artifacts
        self.clock = clock
        self.sweep_grace_seconds = sweep_grace_seconds
        self._archive_limits = ArchiveLimits.from_settings(settings.limits)
        # Set by the server assembly: publishes, deletes and policy changes are recorded.
        self.history: Recorder = NO_HISTORY

    # -- names -----------------------------------------------------------------------------

    def _name(self, name_or_arn: str) -> str:
        """The layer name a LayerName member (name or layer ARN) addresses in this account."""
        if not name_or_arn.startswith("arn:"):
            return name_or_arn
        region, account, name = _split_layer_arn(name_or_arn)
        if account != self.settings.account_id:
            raise AccessDenied(f"Not authorized to access {name_or_arn}: it belongs to another account.")
        if region != self.settings.region:
            raise ResourceNotFound(NOT_FOUND)
        return name

    def layer_arn(self, name: str) -> str:
        return arns.layer_arn(self.settings.region, self.settings.account_id, name)

    def version_arn(self, name: str, version: int) -> str:
        return arns.layer_version_arn(self.settings.region, self.settings.account_id, name, version)

    # -- publish / read --------------------------------------------------------------------

    def publish(
        self,
        name_or_arn: str,
        zip_bytes: bytes,
        description: str = "",
        compatible_runtimes: Sequence[str] = (),
        compatible_architectures: Sequence[str] = (),
        license_info: str | None = None,
    ) -> LayerVersion:
        name = self._name(name_or_arn)
        try:
            summary = inspect_zip(zip_bytes, self._archive_limits)
        except ArchiveError as exc:
            raise InvalidParameterValue(exc.reason) from exc
        # The number is reserved first and never reused: a failed upload burns it, as on AWS.
        with self.store.transaction() as tx:
            number = tx.next_layer_version(name)
        version_arn = self.version_arn(name, number)
        digest = hashlib.sha256(zip_bytes).hexdigest()
        key = f"layer/{version_arn}/{digest}"
        self.artifacts.put(key, zip_bytes, layer_aad(version_arn, digest))
        layer = LayerVersion(
            name=name,
            version=number,
            layer_arn=self.layer_arn(name),
            version_arn=version_arn,
            created=aws_timestamp(self.clock()),
            code_sha256=code_sha256(zip_bytes),
            code_size=len(zip_bytes),
            code_key=key,
            unzipped_size=summary.unzipped_bytes,
            description=description,
            compatible_runtimes=tuple(compatible_runtimes),
            compatible_architectures=tuple(compatible_architectures),
            license_info=license_info,
        )
        with self.store.transaction() as tx:
            tx.put_layer_version(layer)
        self.history.record("PublishLayerVersion", name, None, layer, kind="layer")
        return layer

    def get(self, name_or_arn: str, version: int) -> LayerVersion:
        if version < 1:
            raise InvalidParameterValue("Layer Version Cannot be less than 1")
        name = self._name(name_or_arn)
        with self.store.transaction() as tx:
            layer = tx.get_layer_version(name, version)
        if layer is None or layer.deleted_at is not None:
            raise ResourceNotFound(NOT_FOUND)
        return layer

    def get_by_arn(self, version_arn: str) -> LayerVersion:
        ref = arns.parse_layer_version_arn(version_arn)
        if ref is None or ref.account != self.settings.account_id or ref.region != self.settings.region:
            raise ResourceNotFound(NOT_FOUND)  # AWS-managed (awslayer) and foreign layers: none here
        return self.get(ref.name, ref.version)

    def read_layer_key(self, key: str) -> bytes:
        """The plaintext zip stored under ``layer/<layer version arn>/<sha256 hex>``."""
        _, rest = key.split("/", 1)
        version_arn, digest = rest.rsplit("/", 1)
        return self.artifacts.get(key, layer_aad(version_arn, digest))

    def read(self, layer: LayerVersion) -> bytes:
        return self.read_layer_key(layer.code_key)

    # -- list ------------------------------------------------------------------------------

    def list_layers(
        self, runtime: str | None, architecture: str | None, marker: str | None, max_items: int | None
    ) -> tuple[list[LayerVersion], str | None]:
        """Per layer, its newest version that matches the filters (LatestMatchingVersion)."""
        limit = min(max_items or 50, 50)
        out: list[LayerVersion] = []
        with self.store.transaction() as tx:
            for name in _names(tx, _decode(marker)):
                latest = next((v for v in _live(tx, name) if matches(v, runtime, architecture)), None)
                if latest is None:
                    continue
                if len(out) == limit:
                    return out, _encode(out[-1].name)
                out.append(latest)
        return out, None

    def list_versions(
        self, name_or_arn: str, runtime: str | None, architecture: str | None,
        marker: str | None, max_items: int | None,
    ) -> tuple[list[LayerVersion], str | None]:
        """Matching versions, newest first; an unknown layer has none (not an error on AWS)."""
        name = self._name(name_or_arn)
        limit = min(max_items or 50, 50)
        before = _decode(marker)
        with self.store.transaction() as tx:
            versions = [v for v in _live(tx, name) if matches(v, runtime, architecture)]
        if before is not None:
            if not before.isdigit():
                raise InvalidParameterValue(f"Invalid marker: {marker}")
            versions = [v for v in versions if v.version < int(before)]
        page = versions[:limit]
        return page, _encode(str(page[-1].version)) if len(versions) > limit else None

    # -- delete ----------------------------------------------------------------------------

    def delete(self, name_or_arn: str, version: int) -> None:
        """Idempotent, as on AWS: deleting a missing or deleted version succeeds."""
        if version < 1:
            raise InvalidParameterValue("Layer Version Cannot be less than 1")
        name = self._name(name_or_arn)
        with self.store.transaction() as tx:
            layer = tx.get_layer_version(name, version)
            if layer is not None and layer.deleted_at is None:
                tx.put_layer_version(replace(layer, deleted_at=time.time()))
            else:
                layer = None  # already gone: nothing changed
        if layer is not None:
            self.history.record("DeleteLayerVersion", name, layer, None, kind="layer")
        self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Removes deleted versions no function version references any more; returns how many."""
        now = time.time() if now is None else now
        doomed: list[LayerVersion] = []
        with self.store.transaction() as tx:
            deleted = [
                v for name in _names(tx, None) for v in tx.list_layer_versions(name)
                if v.deleted_at is not None and now - v.deleted_at >= self.sweep_grace_seconds
            ]
            if deleted:
                used = _referenced(tx)
                doomed = [v for v in deleted if v.version_arn not in used]
            for layer in doomed:
                tx.delete_layer_version(layer.name, layer.version)
        for layer in doomed:
            self.artifacts.delete(layer.code_key)
        return len(doomed)

    # -- permissions -----------------------------------------------------------------------

    def _for_policy(self, tx: Transaction, name_or_arn: str, version: int) -> LayerVersion:
        name = self._name(name_or_arn)
        layer = tx.get_layer_version(name, version)
        if layer is None or layer.deleted_at is not None:
            raise ResourceNotFound(f"Layer version {self.version_arn(name, version)} does not exist.")
        return layer

    def add_permission(
        self, name_or_arn: str, version: int, statement_id: str, action: str, principal: str,
        organization_id: str | None = None, revision_id: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Adds a statement; returns (the statement as AWS shows it, the policy's new RevisionId)."""
        with self.store.transaction() as tx:
            layer = self._for_policy(tx, name_or_arn, version)
            statements, current = _policy(layer)
            if any(s["Sid"] == statement_id for s in statements):
                raise ResourceConflict(
                    f"The statement id ({statement_id}) provided already exists. Please provide a new "
                    "statement id, or remove the existing statement."
                )
            if revision_id is not None and revision_id != current:
                raise PreconditionFailed(POLICY_REVISION_MISMATCH)
            statement = _statement(statement_id, action, principal, organization_id, layer.version_arn)
            revision = str(uuid.uuid4())
            changed = replace(layer, policy={"revision_id": revision, "statements": [*statements, statement]})
            tx.put_layer_version(changed)
        self.history.record("AddLayerVersionPermission", layer.name, layer, changed, kind="layer")
        return statement, revision

    def remove_permission(
        self, name_or_arn: str, version: int, statement_id: str, revision_id: str | None = None
    ) -> None:
        with self.store.transaction() as tx:
            layer = self._for_policy(tx, name_or_arn, version)
            statements, current = _policy(layer)
            if revision_id is not None and revision_id != current:
                raise PreconditionFailed(POLICY_REVISION_MISMATCH)
            kept = [s for s in statements if s["Sid"] != statement_id]
            if len(kept) == len(statements):
                raise ResourceNotFound(f"Statement {statement_id} is not found in resource policy.")
            policy = {"revision_id": str(uuid.uuid4()), "statements": kept} if kept else None
            changed = replace(layer, policy=policy)
            tx.put_layer_version(changed)
        self.history.record("RemoveLayerVersionPermission", layer.name, layer, changed, kind="layer")

    def get_policy(self, name_or_arn: str, version: int) -> tuple[dict[str, Any], str]:
        """(the policy document, its RevisionId)."""
        with self.store.transaction() as tx:
            layer = self._for_policy(tx, name_or_arn, version)
        statements, revision = _policy(layer)
        if not statements or revision is None:
            raise ResourceNotFound(NO_POLICY)
        return {"Version": "2012-10-17", "Id": "default", "Statement": statements}, revision

    def allows(self, layer: LayerVersion, account: str, organization_id: str | None = None) -> bool:
        """Whether ``account`` may use the layer version (the owner always may)."""
        if account == self.settings.account_id:
            return True
        for s in _policy(layer)[0]:
            principal = s["Principal"]
            org = s.get("Condition", {}).get("StringEquals", {}).get("aws:PrincipalOrgID")
            if principal == "*" and (org is None or org == organization_id):
                return True
            if isinstance(principal, dict) and principal.get("AWS") == f"arn:aws:iam::{account}:root":
                return True
        return False

    # -- functions -------------------------------------------------------------------------

    def resolve_for_function(
        self, layer_arns: Sequence[str], *, caller_account: str | None = None
    ) -> tuple[LayerVersion, ...]:
        """The layer versions a CreateFunction/UpdateFunctionConfiguration names, AWS's checks."""
        if len(layer_arns) > MAX_LAYERS_PER_FUNCTION:
            raise InvalidParameterValue("Cannot reference more than 5 layers.")
        seen: dict[str, str] = {}
        out: list[LayerVersion] = []
        with self.store.transaction() as tx:
            for arn in layer_arns:
                ref = arns.parse_layer_version_arn(arn)
                if ref is not None and ref.region != self.settings.region:
                    raise InvalidParameterValue(
                        "Layers are not in the same region as the function. "
                        f"Layers are expected to be in region {self.settings.region}."
                    )
                layer = None
                if ref is not None and ref.account == self.settings.account_id:
                    layer = tx.get_layer_version(ref.name, ref.version)
                if layer is None or layer.deleted_at is not None:
                    raise InvalidParameterValue(f"Layer version {arn} does not exist.")
                if caller_account is not None and not self.allows(layer, caller_account):
                    raise AccessDenied(
                        f"User: arn:aws:iam::{caller_account}:root is not authorized to perform: "
                        f"{GET_LAYER_VERSION} on resource: {arn} because no resource-based policy "
                        f"allows the {GET_LAYER_VERSION} action"
                    )
                if layer.layer_arn in seen:
                    raise InvalidParameterValue(
                        "Two different versions of the same layer are not allowed to be referenced "
                        f"in the same function. {seen[layer.layer_arn]} and {arn} are versions of the "
                        "same layer."
                    )
                seen[layer.layer_arn] = arn
                out.append(layer)
        return tuple(out)

    def for_function(self, layer_arns: Sequence[str]) -> tuple[LayerVersion, ...]:
        """The layer versions a stored function version uses, deleted ones included (worker side).

        Raises ResourceNotFound if one is gone entirely, which only a swept version can be."""
        out: list[LayerVersion] = []
        with self.store.transaction() as tx:
            for arn in layer_arns:
                ref = arns.parse_layer_version_arn(arn)
                layer = tx.get_layer_version(ref.name, ref.version) if ref is not None else None
                if layer is None:
                    raise ResourceNotFound(f"Layer version {arn} does not exist.")
                out.append(layer)
        return tuple(out)

    def check_combined_size(self, code_unzipped: int, layers: Sequence[LayerVersion]) -> None:
        """AWS's 250 MB quota on a function's code plus all its layers, unzipped."""
        limit = self.settings.limits.unzipped_max_bytes
        actual = code_unzipped + sum(layer.unzipped_size for layer in layers)
        if actual > limit:
            raise InvalidParameterValue(COMBINED_TOO_LARGE.format(limit=limit, actual=actual))


def _split_layer_arn(arn: str) -> tuple[str, str, str]:
    """(region, account, name) of a layer ARN (the model's pattern was checked at the edge)."""
    parts = arn.split(":")
    if len(parts) != 7 or parts[5] != "layer":
        raise ResourceNotFound(NOT_FOUND)
    return parts[3], parts[4], parts[6]


def _names(tx: Transaction, after: str | None) -> Iterator[str]:
    while page := tx.list_layer_names(after, 100):
        yield from page
        after = page[-1]


def _live(tx: Transaction, name: str) -> list[LayerVersion]:
    return [v for v in tx.list_layer_versions(name) if v.deleted_at is None]


def _referenced(tx: Transaction) -> set[str]:
    """Every layer version ARN some stored function version references."""
    used: set[str] = set()
    after = None
    while page := tx.list_functions(after, 500):
        for function in page:
            for version in tx.list_versions(function.name):
                used.update(version.layers)
        after = page[-1].name
    return used


def _policy(layer: LayerVersion) -> tuple[list[dict[str, Any]], str | None]:
    """(statements, revision id) of a layer version's stored policy."""
    if not layer.policy:
        return [], None
    statements = layer.policy.get("statements")
    revision = layer.policy.get("revision_id")
    return (list(statements) if isinstance(statements, list) else [],
            revision if isinstance(revision, str) else None)


def _statement(sid: str, action: str, principal: str, org: str | None, resource: str) -> dict[str, Any]:
    """One statement in AWS's form: an account id becomes its root ARN, "*" stays "*"."""
    who: object = "*" if principal == "*" else {
        "AWS": principal if principal.startswith("arn:") else f"arn:aws:iam::{principal}:root"
    }
    statement: dict[str, Any] = {
        "Sid": sid, "Effect": "Allow", "Principal": who, "Action": action, "Resource": resource,
    }
    if org:
        statement["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": org}}
    return statement


def _encode(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _decode(marker: str | None) -> str | None:
    if not marker:
        return None
    try:
        return base64.urlsafe_b64decode(marker.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidParameterValue(f"Invalid marker: {marker}") from None


def policy_json(statement: dict[str, Any]) -> str:
    """The compact JSON AWS returns in AddLayerVersionPermission's ``Statement``."""
    return json.dumps(statement, separators=(",", ":"))
