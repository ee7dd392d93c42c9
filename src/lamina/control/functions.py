"""Functions and their versions: create, read, update, publish, delete.

The control plane knows nothing of HTTP. It validates semantic rules (model constraints were
checked at the API edge), stores code as encrypted artifacts, and keeps each function's
$LATEST moving through AWS's states: a create or update leaves it Pending/InProgress until
the code has been read back and checked, then Active/Successful.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import platform
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lamina.control import arns, validation
from lamina.control.archives import ArchiveLimits, ArchiveSummary, inspect_zip
from lamina.control.changes import ConfigChange
from lamina.control.event_config import check_dead_letter_target
from lamina.control.model import LATEST, Alias, Function, FunctionVersion
from lamina.errors import (
    ArchiveError,
    InternalError,
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from lamina.settings import Settings
from lamina.store.artifacts import ArtifactStore
from lamina.store.metadata import MetadataStore, Transaction
from lamina.telemetry.history import NO_HISTORY, Recorder

if TYPE_CHECKING:
    from lamina.control.layers import Layers

log = logging.getLogger(__name__)

REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


def host_architecture() -> str:
    """The Lambda architecture name of this machine (functions run natively only)."""
    return {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())


def aws_timestamp(moment: datetime) -> str:
    """AWS Lambda's LastModified format: 2024-01-31T12:34:56.789+0000."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def code_sha256(data: bytes) -> str:
    """CodeSha256 as AWS reports it: base64 of the SHA-256 digest of the zip."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@dataclass(frozen=True)
class Resolved:
    function: Function
    version: FunctionVersion
    alias: str | None = None

    @property
    def arn(self) -> str:
        """The ARN the caller addressed: qualified by alias or version, or unqualified."""
        if self.alias:
            return f"{self.function.arn}:{self.alias}"
        return self.version.arn if self.version.version == LATEST else self.version.qualified_arn


class Functions:
    def __init__(
        self,
        settings: Settings,
        store: MetadataStore,
        artifacts: ArtifactStore,
        runtimes: tuple[str, ...],
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.settings = settings
        self.store = store
        self.artifacts = artifacts
        self.runtimes = runtimes
        self.clock = clock
        self._archive_limits = ArchiveLimits(
            max_zip_bytes=settings.limits.zip_max_bytes,
            max_unzipped_bytes=settings.limits.unzipped_max_bytes,
            max_entries=settings.limits.zip_max_entries,
            max_name_bytes=settings.limits.zip_max_name_bytes,
            max_depth=settings.limits.zip_max_depth,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._cache: dict[tuple[str, str | None], Resolved] = {}
        self._refs: dict[tuple[str, str | None], arns.FunctionRef] = {}  # pure parse: never stale
        self._cache_generation = -1
        self._aliases: dict[tuple[str, str], Alias] = {}
        # Observers told when a function's code or configuration changes (the worker pool
        # retires environments of the old one).
        self.on_change: list[Callable[[str], None]] = []
        # Set by the server assembly; without it, Layers are stored unchecked (unit tests).
        self.layers: Layers | None = None
        # Set by the server assembly: every successful change is recorded (who, when, before/after).
        self.history: Recorder = NO_HISTORY
        # Set by the server assembly: raises when Lambda may not assume the role (it does not
        # exist or does not trust lambda.amazonaws.com). Unset, roles are only checked by form.
        self.role_check: Callable[[str], None] | None = None
        # Set by the server assembly: raises when a function running as role ``role`` (named
        # second) may not invoke the destination (third) — destinations and dead-letter
        # targets are invoked with the source function's execution role, as on AWS.
        self.delivery_check: Callable[[str, str, str], None] | None = None

    # -- helpers ---------------------------------------------------------------------------

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return arns.function_arn(self.settings.region, self.settings.account_id, name, qualifier)

    def ref(self, function_name: str, qualifier: str | None = None) -> arns.FunctionRef:
        """The name and qualifier a FunctionName (name, partial or full ARN) and Qualifier mean.
        Parsed once per distinct pair: the invoke path resolves the same few names all day."""
        key = (function_name, qualifier)
        ref = self._refs.get(key)
        if ref is None:
            ref = arns.parse_function_ref(
                function_name, qualifier, region=self.settings.region, account=self.settings.account_id
            )
            if len(self._refs) > 4096:
                self._refs.clear()
            self._refs[key] = ref
        return ref

    def _now(self) -> str:
        return aws_timestamp(self.clock())

    @staticmethod
    def _revision() -> str:
        return str(uuid.uuid4())

    def _require(self, tx: Transaction, name: str) -> Function:
        function = tx.get_function(name)
        if function is None:
            raise ResourceNotFound(f"Function not found: {self.arn(name)}")
        return function

    def _store_code(self, arn: str, version: str, data: bytes) -> tuple[str, str, int]:
        """Encrypts and stores a zip; returns (artifact key, CodeSha256, CodeSize)."""
        digest = hashlib.sha256(data).hexdigest()
        key = f"code/{arn}/{version}/{digest}"
        self.artifacts.put(key, data, self.code_aad(arn, version, digest))
        return key, code_sha256(data), len(data)

    @staticmethod
    def code_aad(arn: str, version: str, digest_hex: str) -> bytes:
        return f"lamina:code:{arn}:{version}:{digest_hex}".encode()

    def read_code(self, version: FunctionVersion) -> bytes:
        """The plaintext zip of a version (decrypted and authenticated)."""
        return self.read_code_key(version.code_key)

    def read_code_key(self, code_key: str) -> bytes:
        """The plaintext zip stored under ``code/<function arn>/<version>/<sha256 hex>``."""
        _, rest = code_key.split("/", 1)
        arn, version, digest = rest.rsplit("/", 2)
        return self.artifacts.get(code_key, self.code_aad(arn, version, digest))

    def check_zip(self, data: bytes) -> ArchiveSummary:
        try:
            return inspect_zip(data, self._archive_limits)
        except ArchiveError as exc:
            raise InvalidParameterValue(exc.reason) from exc

    def _layer_fields(self, layers: tuple[str, ...] | None, unzipped: int) -> dict[str, Any]:
        """Checks a new Layers list (AWS's errors, 250 MB with the code); its stored fields."""
        if layers is None or self.layers is None:
            return {}
        resolved = self.layers.resolve_for_function(layers)
        self.layers.check_combined_size(unzipped, resolved)
        return {"layer_code_sizes": tuple(layer.code_size for layer in resolved)}

    def _check_code_with_layers(self, latest: FunctionVersion, unzipped: int) -> None:
        """New code must fit in 250 MB beside the layers the function already uses."""
        if latest.layers and self.layers is not None:
            self.layers.check_combined_size(unzipped, self.layers.for_function(latest.layers))

    def _check_config(self, change: ConfigChange) -> None:
        validation.validate_function_config(
            available_runtimes=self.runtimes,
            allowed_architectures=(host_architecture(),),
            runtime=change.runtime,
            handler=change.handler,
            role=change.role,
            description=change.description,
            memory_size=change.memory_size,
            timeout=change.timeout,
            ephemeral_storage=change.ephemeral_storage,
            environment=change.environment,
            architectures=change.architectures,
        )
        if change.role is not None and self.role_check is not None:
            self.role_check(change.role)

    # -- create / read ---------------------------------------------------------------------

    async def create(
        self,
        function_name: str,
        code: bytes,
        change: ConfigChange,
        *,
        publish: bool = False,
        tags: dict[str, str] | None = None,
    ) -> FunctionVersion:
        ref = self.ref(function_name)
        if ref.qualifier is not None:
            raise InvalidParameterValue("Function name cannot include a qualifier on creation.")
        if change.runtime is None:
            raise InvalidParameterValue("Runtime is required for .zip file deployment packages.")
        if change.handler is None:
            raise InvalidParameterValue("Handler is required for .zip file deployment packages.")
        self._check_config(change)
        check_dead_letter_target(self, ref.name, change.dead_letter_target, change.role)
        summary = self.check_zip(code)
        layer_fields = self._layer_fields(change.layers, summary.unzipped_bytes)
        arn = self.arn(ref.name)
        with self.store.transaction() as tx:
            if tx.get_function(ref.name) is not None:
                raise ResourceConflict(f"Function already exist: {ref.name}")
        key, sha, size = await asyncio.to_thread(self._store_code, arn, LATEST, code)
        now = self._now()
        latest = FunctionVersion(
            name=ref.name,
            version=LATEST,
            arn=arn,
            code_sha256=sha,
            code_size=size,
            code_key=key,
            revision_id=self._revision(),
            last_modified=now,
            state="Pending",
            state_reason="The function is being created.",
            state_reason_code="Creating",
            unzipped_size=summary.unzipped_bytes,
            **change.values(),
            **layer_fields,
        )
        with self.store.transaction() as tx:
            if tx.get_function(ref.name) is not None:
                raise ResourceConflict(f"Function already exist: {ref.name}")
            tx.put_function(Function(name=ref.name, arn=arn, created=now, tags=tags or {}))
            tx.put_version(latest)
        self.history.record("CreateFunction", ref.name, None, latest)
        if publish:
            published = await self.publish(ref.name, pending_ok=True)
            self._activate_later(ref.name, LATEST, published.version)
            return published
        self._activate_later(ref.name, LATEST)
        return latest

    def resolve(self, function_name: str, qualifier: str | None = None) -> Resolved:
        """The function and the version a name/ARN and qualifier address (aliases followed).

        Answers are cached until the store's next write, which keeps the invoke path free of
        database reads while nothing changes."""
        self._sync_cache()
        key = (function_name, qualifier)
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            cached = self._cache[key] = self._resolve(function_name, qualifier)
        return cached

    def _sync_cache(self) -> None:
        """Drops every cached read once the store has been written to."""
        if self._cache_generation != self.store.generation:
            self._cache.clear()
            self._aliases.clear()
            self._cache_generation = self.store.generation

    def _resolve(self, function_name: str, qualifier: str | None) -> Resolved:
        ref = self.ref(function_name, qualifier)
        with self.store.transaction() as tx:
            function = self._require(tx, ref.name)
            q = ref.qualifier or LATEST
            version = tx.get_version(ref.name, q)
            if version is not None:
                return Resolved(function, version)
            alias = tx.get_alias(ref.name, q)
            if alias is None:
                raise ResourceNotFound(f"Function not found: {self.arn(ref.name, q)}")
            target = tx.get_version(ref.name, alias.function_version)
            if target is None:
                raise ResourceNotFound(f"Function not found: {self.arn(ref.name, alias.function_version)}")
            return Resolved(function, target, alias=alias.name)

    def alias(self, function: str, name: str) -> Alias:
        self._sync_cache()
        alias = self._aliases.get((function, name))
        if alias is None:
            with self.store.transaction() as tx:
                alias = tx.get_alias(function, name)
            if alias is None:
                raise ResourceNotFound(f"Cannot find alias arn: {self.arn(function, name)}")
            self._aliases[(function, name)] = alias
        return alias

    def page(
        self, marker: str | None, max_items: int | None, all_versions: bool
    ) -> tuple[list[FunctionVersion], str | None]:
        """A page of $LATEST configurations (or of every version), ordered by name then version."""
        limit = min(max_items or 50, 50)
        after = _decode_marker(marker)
        out: list[FunctionVersion] = []

        def add(function_name: str) -> None:
            versions = tx.list_versions(function_name)
            for v in versions if all_versions else versions[:1]:
                if after is None or (v.name, _seq(v.version)) > (after[0], _seq(after[1])):
                    out.append(v)

        with self.store.transaction() as tx:
            if after is not None and all_versions:
                add(after[0])  # the rest of the versions of the function the last page ended in
            cursor = after[0] if after else None
            while len(out) <= limit:
                page = tx.list_functions(cursor, limit + 1)
                if not page:
                    break
                for function in page:
                    add(function.name)
                cursor = page[-1].name
        page_items = out[:limit]
        more = len(out) > limit
        return page_items, _encode_marker(page_items[-1].name, page_items[-1].version) if more else None

    def versions(self, function_name: str, marker: str | None, max_items: int | None) -> tuple[list[FunctionVersion], str | None]:
        ref = self.ref(function_name)
        if ref.qualifier is not None:
            raise InvalidParameterValue("Qualifier is not supported by ListVersionsByFunction.")
        limit = min(max_items or 50, 50)
        after = _decode_marker(marker)
        with self.store.transaction() as tx:
            self._require(tx, ref.name)
            versions = tx.list_versions(ref.name)
        if after:
            versions = [v for v in versions if _seq(v.version) > _seq(after[1])]
        page = versions[:limit]
        next_marker = _encode_marker(ref.name, page[-1].version) if len(versions) > limit else None
        return page, next_marker

    # -- update ----------------------------------------------------------------------------

    def _latest_for_update(self, tx: Transaction, name: str, revision_id: str | None) -> FunctionVersion:
        self._require(tx, name)
        latest = tx.get_version(name, LATEST)
        assert latest is not None
        if revision_id is not None and revision_id != latest.revision_id:
            raise PreconditionFailed(REVISION_MISMATCH)
        if latest.state == "Pending" or latest.last_update_status == "InProgress":
            raise ResourceConflict(
                "The operation cannot be performed at this time. An update is in progress "
                f"for resource: {latest.arn}"
            )
        return latest

    async def update_code(
        self, function_name: str, code: bytes, *, publish: bool = False, revision_id: str | None = None,
        dry_run: bool = False,
    ) -> FunctionVersion:
        ref = self.ref(function_name)
        if ref.qualifier is not None:
            raise InvalidParameterValue("Qualifier is not supported by UpdateFunctionCode.")
        summary = self.check_zip(code)
        with self.store.transaction() as tx:
            latest = self._latest_for_update(tx, ref.name, revision_id)
        self._check_code_with_layers(latest, summary.unzipped_bytes)
        if dry_run:
            return latest.replace(code_sha256=code_sha256(code), code_size=len(code))
        key, sha, size = await asyncio.to_thread(self._store_code, latest.arn, LATEST, code)
        with self.store.transaction() as tx:
            latest = self._latest_for_update(tx, ref.name, revision_id)
            updated = self._updating(
                latest, code_key=key, code_sha256=sha, code_size=size, unzipped_size=summary.unzipped_bytes
            )
            tx.put_version(updated)
        self.history.record("UpdateFunctionCode", ref.name, latest, updated)
        if latest.code_key != key and not self._key_in_use(ref.name, latest.code_key):
            self.artifacts.delete(latest.code_key)
        self._changed(ref.name)
        if publish:
            published = await self.publish(ref.name, pending_ok=True)
            self._activate_later(ref.name, LATEST, published.version)
            return published
        self._activate_later(ref.name, LATEST)
        return updated

    async def update_configuration(
        self, function_name: str, change: ConfigChange, *, revision_id: str | None = None
    ) -> FunctionVersion:
        ref = self.ref(function_name)
        if ref.qualifier is not None:
            raise InvalidParameterValue("Qualifier is not supported by UpdateFunctionConfiguration.")
        self._check_config(change)
        check_dead_letter_target(self, ref.name, change.dead_letter_target, change.role)
        layer_fields: dict[str, Any] = {}
        if change.layers is not None:
            with self.store.transaction() as tx:
                current = self._latest_for_update(tx, ref.name, revision_id)
            layer_fields = self._layer_fields(change.layers, current.unzipped_size)
        with self.store.transaction() as tx:
            latest = self._latest_for_update(tx, ref.name, revision_id)
            updated = self._updating(latest, **change.values(), **layer_fields)
            tx.put_version(updated)
        self.history.record("UpdateFunctionConfiguration", ref.name, latest, updated)
        self._changed(ref.name)
        self._activate_later(ref.name, LATEST)
        return updated

    def _updating(self, latest: FunctionVersion, **changes: Any) -> FunctionVersion:
        """$LATEST with ``changes`` applied, a new RevisionId and LastUpdateStatus InProgress
        (what UpdateFunctionCode and UpdateFunctionConfiguration answer until it settles)."""
        return latest.replace(
            **changes,
            revision_id=self._revision(),
            last_modified=self._now(),
            last_update_status="InProgress",
            last_update_status_reason="The function is being created.",
            last_update_status_reason_code="Creating",
        )

    def _key_in_use(self, name: str, key: str) -> bool:
        with self.store.transaction() as tx:
            return any(v.code_key == key for v in tx.list_versions(name))

    def _changed(self, name: str) -> None:
        for observer in self.on_change:
            observer(name)

    # -- state transitions -----------------------------------------------------------------

    def _activate_later(self, name: str, *versions: str) -> None:
        task = asyncio.get_running_loop().create_task(self._activate(name, versions))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _activate(self, name: str, versions: tuple[str, ...]) -> None:
        """Reads the stored code back (authenticated), then marks the versions ready."""
        for v in versions:
            with self.store.transaction() as tx:
                current = tx.get_version(name, v)
            if current is None:
                continue
            try:
                await asyncio.to_thread(self.read_code, current)
                ok = True
            except InternalError:
                log.exception("stored code of %s:%s cannot be read back", name, v)
                ok = False
            with self.store.transaction() as tx:
                latest = tx.get_version(name, v)
                if latest is None or latest.code_key != current.code_key:
                    continue
                if latest.state == "Pending":
                    latest = latest.replace(
                        state="Active" if ok else "Failed",
                        state_reason=None if ok else "Lamina could not read back the stored code.",
                        state_reason_code=None if ok else "InternalError",
                        last_update_status="Successful" if ok else "Failed",
                    )
                elif latest.last_update_status == "InProgress":
                    latest = latest.replace(
                        last_update_status="Successful" if ok else "Failed",
                        last_update_status_reason=None if ok else "Lamina could not read back the stored code.",
                        last_update_status_reason_code=None if ok else "InternalError",
                    )
                else:
                    continue
                tx.put_version(latest.replace(revision_id=self._revision()))

    async def settle(self) -> None:
        """Waits until pending state transitions are done (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- publish / delete ------------------------------------------------------------------

    async def publish(
        self,
        function_name: str,
        *,
        code_sha: str | None = None,
        description: str | None = None,
        revision_id: str | None = None,
        pending_ok: bool = False,
    ) -> FunctionVersion:
        ref = self.ref(function_name)
        if ref.qualifier is not None:
            raise InvalidParameterValue("Qualifier is not supported by PublishVersion.")
        with self.store.transaction() as tx:
            function = self._require(tx, ref.name)
            latest = tx.get_version(ref.name, LATEST)
            assert latest is not None
            if revision_id is not None and revision_id != latest.revision_id:
                raise PreconditionFailed(REVISION_MISMATCH)
            if code_sha is not None and code_sha != latest.code_sha256:
                raise InvalidParameterValue(
                    f"CodeSHA256 ({code_sha}) is different from current CodeSHA256 in $LATEST "
                    f"({latest.code_sha256}). Please try again with the CodeSHA256 in $LATEST."
                )
            if not pending_ok and (latest.state == "Pending" or latest.last_update_status == "InProgress"):
                raise ResourceConflict(
                    "The operation cannot be performed at this time. An update is in progress "
                    f"for resource: {latest.arn}"
                )
            versions = tx.list_versions(ref.name)
            newest = versions[-1] if len(versions) > 1 else None
            if newest is not None and _same_config(newest, latest) and description in (None, newest.description):
                return newest
        code = await asyncio.to_thread(self.read_code, latest)
        with self.store.transaction() as tx:
            function = self._require(tx, ref.name)
            current = tx.get_version(ref.name, LATEST)
            if current is None or current.revision_id != latest.revision_id:
                raise PreconditionFailed(REVISION_MISMATCH)
            number = str(function.last_version + 1)
            key, _, _ = self._store_code(latest.arn, number, code)
            published = latest.replace(
                version=number,
                code_key=key,
                description=latest.description if description is None else description,
                revision_id=self._revision(),
                last_modified=self._now(),
                last_update_status=latest.last_update_status or "Successful",
            )
            tx.put_version(published)
            tx.put_function(_with(function, last_version=function.last_version + 1))
        self.history.record("PublishVersion", ref.name, None, published)
        return published

    def delete(self, function_name: str, qualifier: str | None = None) -> None:
        ref = self.ref(function_name, qualifier)
        with self.store.transaction() as tx:
            function = self._require(tx, ref.name)
            versions = tx.list_versions(ref.name)
            if ref.qualifier is None:
                tx.delete_function(ref.name)
                keys = [v.code_key for v in versions]
            else:
                if ref.qualifier == LATEST:
                    raise InvalidParameterValue(
                        "$LATEST version cannot be deleted without deleting the function."
                    )
                version = tx.get_version(ref.name, ref.qualifier)
                if version is None:
                    if not arns.is_version(ref.qualifier):
                        raise InvalidParameterValue("Deletion of aliases is not currently supported.")
                    raise ResourceNotFound(f"Function not found: {self.arn(ref.name, ref.qualifier)}")
                using = [
                    a.name
                    for a in tx.list_aliases(ref.name)
                    if a.function_version == ref.qualifier or ref.qualifier in a.routing
                ]
                if using:
                    raise ResourceConflict(
                        "Unable to delete version because the following aliases reference it: "
                        f"[{', '.join(using)}]"
                    )
                tx.delete_version(ref.name, ref.qualifier)
                tx.delete_event_invoke_config(ref.name, ref.qualifier)
                tx.delete_function_policy(ref.name, ref.qualifier)
                keys = [version.code_key] if not any(
                    v.code_key == version.code_key for v in versions if v.version != ref.qualifier
                ) else []
            del function
        deleted = [v for v in versions if ref.qualifier in (None, v.version)]
        self.history.record("DeleteFunction", ref.name, deleted, None)
        for key in keys:
            self.artifacts.delete(key)
        self._changed(ref.name)

    # -- tags ------------------------------------------------------------------------------

    def _tagged(self, resource: str) -> str:
        ref = self.ref(resource)
        if ref.qualifier is not None:
            raise InvalidParameterValue("Tags on function aliases and versions are not supported.")
        return ref.name

    def tag(self, resource: str, tags: dict[str, str]) -> None:
        name = self._tagged(resource)
        with self.store.transaction() as tx:
            function = self._require(tx, name)
            tagged = _with(function, tags={**function.tags, **tags})
            tx.put_function(tagged)
        self.history.record("TagResource", name, function, tagged)

    def untag(self, resource: str, keys: list[str]) -> None:
        name = self._tagged(resource)
        with self.store.transaction() as tx:
            function = self._require(tx, name)
            untagged = _with(function, tags={k: v for k, v in function.tags.items() if k not in keys})
            tx.put_function(untagged)
        self.history.record("UntagResource", name, function, untagged)

    def tags(self, resource: str) -> dict[str, str]:
        name = self._tagged(resource)
        with self.store.transaction() as tx:
            return dict(self._require(tx, name).tags)

    def set_reserved_concurrency(self, name: str, value: int | None) -> None:
        with self.store.transaction() as tx:
            function = self._require(tx, name)
            changed = _with(function, reserved_concurrency=value)
            tx.put_function(changed)
        operation = "DeleteFunctionConcurrency" if value is None else "PutFunctionConcurrency"
        self.history.record(operation, name, function, changed)
        if value == 0:
            # Throttled for good: its environments can serve nothing, so they end now, and
            # their role credentials with them.
            self._changed(name)

    def reservations(self) -> dict[str, int]:
        """Reserved concurrency of every function that has one (loaded at start)."""
        out: dict[str, int] = {}
        after = None
        with self.store.transaction() as tx:
            while page := tx.list_functions(after, 500):
                out.update({f.name: f.reserved_concurrency for f in page if f.reserved_concurrency is not None})
                after = page[-1].name
        return out

    def usage(self) -> tuple[int, int]:
        """(total code size in bytes, function count) for GetAccountSettings."""
        total, count, after = 0, 0, None
        with self.store.transaction() as tx:
            while True:
                page = tx.list_functions(after, 500)
                if not page:
                    break
                for function in page:
                    count += 1
                    total += sum(v.code_size for v in tx.list_versions(function.name))
                after = page[-1].name
        return total, count


def _with(function: Function, **changes: object) -> Function:
    from dataclasses import replace

    return replace(function, **changes)  # type: ignore[arg-type]


_SAME_IGNORES = {"version", "code_key", "revision_id", "last_modified", "state", "state_reason",
                 "state_reason_code", "last_update_status", "last_update_status_reason",
                 "last_update_status_reason_code", "description"}


def _same_config(a: FunctionVersion, b: FunctionVersion) -> bool:
    da, db = a.to_doc(), b.to_doc()
    for k in _SAME_IGNORES:
        da.pop(k, None)
        db.pop(k, None)
    return da == db and dict(a.environment) == dict(b.environment)


def _seq(version: str) -> int:
    return 0 if version == LATEST else int(version)


def _encode_marker(name: str, version: str) -> str:
    return base64.urlsafe_b64encode(f"{name}\x00{version}".encode()).decode()


def _decode_marker(marker: str | None) -> tuple[str, str] | None:
    if not marker:
        return None
    try:
        name, version = base64.urlsafe_b64decode(marker.encode()).decode().split("\x00")
        _seq(version)
    except ValueError:
        raise InvalidParameterValue("Invalid marker: " + marker) from None
    return name, version
