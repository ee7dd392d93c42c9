"""Aliases: named pointers to a published version, optionally splitting traffic by weight."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import replace

from lamina.control import arns
from lamina.control.functions import REVISION_MISMATCH, Functions
from lamina.control.model import LATEST, Alias
from lamina.errors import InvalidParameterValue, PreconditionFailed, ResourceConflict, ResourceNotFound
from lamina.store.metadata import Transaction


class Aliases:
    def __init__(self, functions: Functions) -> None:
        self.functions = functions
        self.store = functions.store

    def _function_name(self, function_name: str) -> str:
        ref = self.functions.ref(function_name)
        if ref.qualifier is not None:
            raise InvalidParameterValue("Qualifier is not supported for alias operations.")
        return ref.name

    def _check_targets(
        self, tx: Transaction, name: str, version: str, routing: Mapping[str, float]
    ) -> None:
        if tx.get_version(name, version) is None:
            raise ResourceNotFound(f"Function not found: {self.functions.arn(name, version)}")
        if len(routing) > 1:
            raise InvalidParameterValue("Number of items in AdditionalVersionWeights cannot be greater than 1")
        for extra, weight in routing.items():
            if version == LATEST or extra == LATEST:
                raise InvalidParameterValue(
                    "$LATEST is not supported for an alias pointing to more than 1 version"
                )
            if extra == version:
                raise InvalidParameterValue(
                    f"Invalid function version {extra}. Function version {extra} is already "
                    "included in routing configuration."
                )
            if not 0.0 <= weight <= 1.0:
                raise InvalidParameterValue("Weight must be between 0.0 and 1.0")
            if tx.get_version(name, extra) is None:
                raise ResourceNotFound(f"Function not found: {self.functions.arn(name, extra)}")

    def create(
        self, function_name: str, name: str, version: str, description: str = "",
        routing: Mapping[str, float] | None = None,
    ) -> Alias:
        fname = self._function_name(function_name)
        if arns.is_version(name) or name == LATEST:
            raise InvalidParameterValue(f"Alias name cannot be a version: {name}")
        routing = dict(routing or {})
        with self.store.transaction() as tx:
            self.functions._require(tx, fname)
            if tx.get_alias(fname, name) is not None:
                raise ResourceConflict(f"Alias already exists: {self.functions.arn(fname, name)}")
            self._check_targets(tx, fname, version, routing)
            alias = Alias(
                name=name,
                function=fname,
                arn=self.functions.arn(fname, name),
                function_version=version,
                revision_id=str(uuid.uuid4()),
                description=description,
                routing=routing,
            )
            tx.put_alias(alias)
        self.functions.history.record("CreateAlias", fname, None, alias)
        return alias

    def get(self, function_name: str, name: str) -> Alias:
        fname = self._function_name(function_name)
        with self.store.transaction() as tx:
            return self._existing(tx, fname, name)

    def _existing(self, tx: Transaction, fname: str, name: str) -> Alias:
        """The alias, or AWS's 404 for it (or for its function)."""
        self.functions._require(tx, fname)
        alias = tx.get_alias(fname, name)
        if alias is None:
            raise ResourceNotFound(f"Cannot find alias arn: {self.functions.arn(fname, name)}")
        return alias

    def update(
        self, function_name: str, name: str, *, version: str | None = None,
        description: str | None = None, routing: Mapping[str, float] | None = None,
        revision_id: str | None = None,
    ) -> Alias:
        fname = self._function_name(function_name)
        with self.store.transaction() as tx:
            alias = self._existing(tx, fname, name)
            if revision_id is not None and revision_id != alias.revision_id:
                raise PreconditionFailed(REVISION_MISMATCH)
            new_version = version or alias.function_version
            new_routing = dict(alias.routing if routing is None else routing)
            self._check_targets(tx, fname, new_version, new_routing)
            updated = replace(
                alias,
                function_version=new_version,
                revision_id=str(uuid.uuid4()),
                description=alias.description if description is None else description,
                routing=new_routing,
            )
            tx.put_alias(updated)
        self.functions.history.record("UpdateAlias", fname, alias, updated)
        return updated

    def delete(self, function_name: str, name: str) -> None:
        fname = self._function_name(function_name)
        with self.store.transaction() as tx:
            self.functions._require(tx, fname)
            before = tx.get_alias(fname, name)
            tx.delete_alias(fname, name)
            tx.delete_event_invoke_config(fname, name)
            tx.delete_function_policy(fname, name)
        if before is not None:  # deleting a missing alias changes nothing
            self.functions.history.record("DeleteAlias", fname, before, None)

    def list(
        self, function_name: str, version: str | None, marker: str | None, max_items: int | None
    ) -> tuple[list[Alias], str | None]:
        fname = self._function_name(function_name)
        with self.store.transaction() as tx:
            self.functions._require(tx, fname)
            aliases = tx.list_aliases(fname)
        if version is not None:
            aliases = [a for a in aliases if a.function_version == version or version in a.routing]
        if marker:
            aliases = [a for a in aliases if a.name > marker]
        limit = min(max_items or 50, 50)
        page = aliases[:limit]
        return page, page[-1].name if len(aliases) > limit else None


def pick_version(alias: Alias, rng: random.Random | None = None) -> str:
    """The version an invoke of a weighted alias goes to."""
    roll = (rng or random).random()
    for version, weight in alias.routing.items():
        if roll < weight:
            return version
        roll -= weight
    return alias.function_version
