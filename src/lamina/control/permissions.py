"""Resource-based policies of functions, versions and aliases (AddPermission, RemovePermission,
GetPolicy), and the parsed policy an invoke is authorised against.

Each policy is one JSON document in the metadata store, keyed by function and qualifier: ``""``
for the function itself (which is also what ``$LATEST`` addresses: AWS keeps no separate
``$LATEST`` policy and refuses AddPermission on it), a version number, or an alias name.

AWS has no revision of its own for a policy: GetPolicy's RevisionId is the RevisionId of the
resource it belongs to ($LATEST's for the function, else the version's or the alias's), and
adding or removing a statement gives that resource a new RevisionId. Lamina does the same, so
a RevisionId read from GetFunction/GetAlias also guards a permission change, and vice versa.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any

from lamina.control import arns
from lamina.control.functions import REVISION_MISMATCH, Functions
from lamina.control.model import LATEST
from lamina.errors import (
    ApiError,
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from lamina.iam.policy import Policy, parse_policy
from lamina.store.metadata import Transaction

__all__ = [
    "MAX_POLICY_BYTES",
    "Grant",
    "Permissions",
    "PolicyLengthExceeded",
    "drop_policy",
    "principal_element",
    "statement_for",
]

MAX_POLICY_BYTES = 20480
NOT_FOUND = "The resource you requested does not exist."
NO_POLICY = "No policy is associated with the given resource."
LATEST_UNSUPPORTED = "We currently do not support adding policies for $LATEST."
INVALID_PRINCIPAL = "The provided principal was invalid. Please check the principal and try again."

_ACCOUNT = re.compile(r"\d{12}", re.ASCII)
_IAM_PRINCIPAL = re.compile(
    r"arn:aws[a-zA-Z-]*:(?:iam::\d{12}:(?:root|user/\S+|role/\S+)|sts::\d{12}:assumed-role/\S+)",
    re.ASCII,
)
_OWN_ENTITY = re.compile(r"arn:aws:iam::(?P<account>\d{12}):(?P<kind>role|user)/(?P<path>\S+)", re.ASCII)
# Service principals are DNS names AWS defines (s3.amazonaws.com, alexa-appkit.amazon.com).
_SERVICE = re.compile(r"[a-z0-9][a-z0-9.-]*\.amazon(?:aws)?\.com(?:\.cn)?", re.ASCII)


class PolicyLengthExceeded(ApiError):
    """AWS's PolicyLengthExceededException. Lives here because errors.py is closed to this change;
    it belongs beside the other ApiError classes there."""

    code = "PolicyLengthExceededException"
    status = 400


@dataclass(frozen=True)
class Grant:
    """One AddPermission request: who may do what, and under which conditions."""

    statement_id: str
    action: str
    principal: str
    source_arn: str | None = None
    source_account: str | None = None
    principal_org_id: str | None = None
    event_source_token: str | None = None
    function_url_auth_type: str | None = None
    invoked_via_function_url: bool | None = None


def principal_element(principal: str) -> object:
    """The Principal element AWS writes for AddPermission's Principal string."""
    if principal == "*":
        return "*"
    if _ACCOUNT.fullmatch(principal):
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if _IAM_PRINCIPAL.fullmatch(principal):
        return {"AWS": principal}
    if _SERVICE.fullmatch(principal):
        return {"Service": principal}
    raise InvalidParameterValue(INVALID_PRINCIPAL)


def statement_for(grant: Grant, resource: str) -> dict[str, Any]:
    """The statement in AWS's own key order (GetPolicy shows it back byte for byte)."""
    equals: dict[str, str] = {}
    if grant.function_url_auth_type:
        equals["lambda:FunctionUrlAuthType"] = grant.function_url_auth_type
    if grant.principal_org_id:
        equals["aws:PrincipalOrgID"] = grant.principal_org_id
    if grant.source_account:
        equals["AWS:SourceAccount"] = grant.source_account
    if grant.event_source_token:
        equals["lambda:EventSourceToken"] = grant.event_source_token
    condition: dict[str, dict[str, str]] = {}
    if equals:
        condition["StringEquals"] = equals
    if grant.source_arn:
        condition["ArnLike"] = {"AWS:SourceArn": grant.source_arn}
    if grant.invoked_via_function_url:
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": "true"}
    statement: dict[str, Any] = {
        "Sid": grant.statement_id,
        "Effect": "Allow",
        "Principal": principal_element(grant.principal),
        "Action": grant.action,
        "Resource": resource,
    }
    if condition:
        statement["Condition"] = condition
    return statement


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def _key(qualifier: str | None) -> str:
    """The store key of a policy: the function's own for no qualifier and for $LATEST."""
    return "" if qualifier in (None, "", LATEST) else str(qualifier)


def drop_policy(tx: Transaction, function: str, qualifier: str) -> None:
    """Deletes the policy of a version or alias being deleted, in the caller's transaction
    (a deleted function's policies go with its row)."""
    tx.delete_function_policy(function, _key(qualifier))


class Permissions:
    def __init__(self, functions: Functions) -> None:
        self.functions = functions
        self.store = functions.store
        self._cache: dict[tuple[str, str], Policy | None] = {}
        self._cache_generation = -1

    # -- the resource a request addresses ------------------------------------------------

    def _revision(self, tx: Transaction, name: str, key: str, fn_arn: str) -> str:
        """The RevisionId of the resource holding policy ``key``; ResourceNotFound if it is gone."""
        if key == "" or arns.is_version(key):
            version = tx.get_version(name, key or LATEST)
            if version is None:
                raise ResourceNotFound(f"Function not found: {fn_arn}:{key}")
            return version.revision_id
        alias = tx.get_alias(name, key)
        if alias is None:
            raise ResourceNotFound(f"Cannot find alias arn: {fn_arn}:{key}")
        return alias.revision_id

    def _bump(self, tx: Transaction, name: str, key: str) -> None:
        """A policy change is a change of its resource: it gets a new RevisionId."""
        revision = str(uuid.uuid4())
        if key == "" or arns.is_version(key):
            version = tx.get_version(name, key or LATEST)
            assert version is not None  # checked by _revision in the same transaction
            tx.put_version(version.replace(revision_id=revision))
        else:
            alias = tx.get_alias(name, key)
            assert alias is not None
            tx.put_alias(replace(alias, revision_id=revision))

    def _statements(self, tx: Transaction, name: str, key: str) -> list[dict[str, Any]]:
        raw = tx.get_function_policy(name, key)
        if raw is None:
            return []
        statements = json.loads(raw).get("Statement", [])
        return list(statements) if isinstance(statements, list) else [statements]

    @staticmethod
    def _write(tx: Transaction, name: str, key: str, statements: list[dict[str, Any]]) -> None:
        if not statements:
            tx.delete_function_policy(name, key)
            return
        document = _dump({"Version": "2012-10-17", "Id": "default", "Statement": statements})
        size = len(document.encode())
        if size > MAX_POLICY_BYTES:
            raise PolicyLengthExceeded(
                f"The final policy size ({size}) is bigger than the limit ({MAX_POLICY_BYTES})."
            )
        tx.put_function_policy(name, key, document)

    def _check_principal(self, tx: Transaction, principal: str) -> None:
        """AWS binds an IAM user or role principal to the entity when the statement is added,
        so one that does not exist is refused; Lamina can know that only for its own account."""
        match = _OWN_ENTITY.fullmatch(principal)
        if match is None or match["account"] != self.functions.settings.account_id:
            return
        name = match["path"].rsplit("/", 1)[-1]
        entity = tx.get_role(name) if match["kind"] == "role" else tx.get_user(name)
        if entity is None or entity.arn.lower() != principal.lower():
            raise InvalidParameterValue(INVALID_PRINCIPAL)

    # -- the API -------------------------------------------------------------------------

    def add(
        self, function_name: str, grant: Grant, qualifier: str | None = None, revision_id: str | None = None
    ) -> dict[str, Any]:
        """AddPermission; returns the statement added (its JSON is the response's Statement)."""
        ref = self.functions.ref(function_name, qualifier)
        if ref.qualifier == LATEST:
            raise InvalidParameterValue(LATEST_UNSUPPORTED)
        key = _key(ref.qualifier)
        fn_arn = self.functions.arn(ref.name)
        with self.store.transaction() as tx:
            self.functions._require(tx, ref.name)
            current = self._revision(tx, ref.name, key, fn_arn)
            if revision_id is not None and revision_id != current:
                raise PreconditionFailed(REVISION_MISMATCH)
            self._check_principal(tx, grant.principal)
            statements = self._statements(tx, ref.name, key)
            if any(s.get("Sid") == grant.statement_id for s in statements):
                raise ResourceConflict(
                    f"The statement id ({grant.statement_id}) provided already exists. Please provide "
                    "a new statement id, or remove the existing statement."
                )
            statement = statement_for(grant, self.functions.arn(ref.name, key or None))
            self._write(tx, ref.name, key, [*statements, statement])
            self._bump(tx, ref.name, key)
        self.functions.history.record("AddPermission", ref.name, None, {"Qualifier": key, **statement})
        return statement

    def remove(
        self, function_name: str, statement_id: str, qualifier: str | None = None, revision_id: str | None = None
    ) -> None:
        ref = self.functions.ref(function_name, qualifier)
        key = _key(ref.qualifier)
        fn_arn = self.functions.arn(ref.name)
        with self.store.transaction() as tx:
            if tx.get_function(ref.name) is None:
                raise ResourceNotFound(f"No policy found for: {fn_arn}")
            current = self._revision(tx, ref.name, key, fn_arn)
            statements = self._statements(tx, ref.name, key)
            if not statements:
                raise ResourceNotFound(NO_POLICY)
            kept = [s for s in statements if s.get("Sid") != statement_id]
            if len(kept) == len(statements):
                raise ResourceNotFound(f"Statement {statement_id} is not found in resource policy.")
            if revision_id is not None and revision_id != current:
                raise PreconditionFailed(REVISION_MISMATCH)
            self._write(tx, ref.name, key, kept)
            self._bump(tx, ref.name, key)
        removed = next(s for s in statements if s.get("Sid") == statement_id)
        self.functions.history.record("RemovePermission", ref.name, {"Qualifier": key, **removed}, None)

    def get(self, function_name: str, qualifier: str | None = None) -> tuple[str, str]:
        """GetPolicy: (the policy document as compact JSON, the RevisionId of its resource)."""
        ref = self.functions.ref(function_name, qualifier)
        key = _key(ref.qualifier)
        with self.store.transaction() as tx:
            self.functions._require(tx, ref.name)
            document = tx.get_function_policy(ref.name, key)
            if document is None:
                raise ResourceNotFound(NOT_FOUND)
            try:
                revision = self._revision(tx, ref.name, key, self.functions.arn(ref.name))
            except ResourceNotFound:
                raise ResourceNotFound(NOT_FOUND) from None  # a leftover of a deleted resource
        return document, revision

    # -- enforcement ---------------------------------------------------------------------

    def resource_policy(self, function: str, qualifier: str | None) -> Policy | None:
        """The policy an invoke of ``function[:qualifier]`` is checked against (``function`` is a
        name): the function's own when unqualified or $LATEST, else the version's or alias's.

        Cached until the store's next write, like Functions.resolve, so invokes read no rows."""
        if self._cache_generation != self.store.generation:
            self._cache.clear()
            self._cache_generation = self.store.generation
        key = (function, _key(qualifier))
        if key not in self._cache:
            with self.store.transaction() as tx:
                raw = tx.get_function_policy(*key)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = None if raw is None else parse_policy(raw, kind="resource")
        return self._cache[key]
