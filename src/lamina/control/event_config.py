"""Asynchronous invocation settings: retries, maximum event age and destinations.

A config belongs to one qualifier of a function: the unqualified function (stored and reported
as ``$LATEST``), a published version or an alias. Nothing is inherited between qualifiers: an
Event invoke of an alias uses the alias's config or the defaults, never the function's.

Destinations: Lamina can deliver only to its own functions, so a destination must be a Lamina
function ARN (of this account and region, existing, not the function itself). SQS, SNS,
EventBridge and S3 ARNs are valid in AWS but refused here with a message that says why, rather
than accepted and silently never delivered. The same rule, as a Lamina extension, lets a
function ARN be a function's ``DeadLetterConfig.TargetArn`` (:func:`check_dead_letter_target`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from lamina.control import arns, validation
from lamina.control.model import LATEST, EventInvokeConfig
from lamina.errors import InvalidParameterValue, ResourceNotFound
from lamina.store.metadata import Transaction

if TYPE_CHECKING:
    from lamina.control.functions import Functions

DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_AGE_SECONDS = 21_600
LIST_MAX_ITEMS = 50

NOTHING_TO_SET = "You must specify at least one of error handling or destination setting."
FUNCTION_MISSING = "The function doesn't exist."
SELF_DESTINATION = "You can't specify the function as a destination for itself."

# Services whose ARNs AWS accepts as destinations but Lamina has no delivery for (yet).
_UNDELIVERABLE = {"sqs": "SQS", "sns": "SNS", "events": "EventBridge", "s3": "S3"}
_FUNCTION_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[a-zA-Z0-9-_]+)(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?",
    re.ASCII,
)

# A destination request member: {"OnSuccess": {"Destination": arn}, "OnFailure": {...}}.
DestinationConfig = Mapping[str, Mapping[str, str]]


class AsyncPolicy(NamedTuple):
    """What the poller needs for one event: its retry budget, age limit and destinations."""

    max_retries: int
    max_age: int  # seconds
    on_success: str | None
    on_failure: str | None  # the OnFailure destination, else the version's dead-letter target


class EventInvokeConfigs:
    def __init__(self, functions: Functions, clock: Callable[[], float] = time.time) -> None:
        self.functions = functions
        self.store = functions.store
        self.clock = clock
        self._cache: dict[tuple[str, str], AsyncPolicy] = {}
        self._generation = -1

    # -- API operations ------------------------------------------------------------------

    def put(
        self, function_name: str, qualifier: str | None, max_retries: int | None,
        max_age: int | None, destination_config: DestinationConfig | None,
    ) -> EventInvokeConfig:
        """PutFunctionEventInvokeConfig: replaces the qualifier's whole config."""
        if max_retries is None and max_age is None and destination_config is None:
            raise InvalidParameterValue(NOTHING_TO_SET)
        name, q = self._target(function_name, qualifier)
        on_success, on_failure = self._destinations(name, q, destination_config, None, None)
        with self.store.transaction() as tx:
            self._require_qualifier(tx, name, q)
            before = tx.get_event_invoke_config(name, q)
            config = self._config(name, q, max_retries, max_age, on_success, on_failure)
            tx.put_event_invoke_config(config)
        self.functions.history.record("PutFunctionEventInvokeConfig", name, before, config)
        return config

    def update(
        self, function_name: str, qualifier: str | None, max_retries: int | None,
        max_age: int | None, destination_config: DestinationConfig | None,
    ) -> EventInvokeConfig:
        """UpdateFunctionEventInvokeConfig: changes the given settings of an existing config.

        A destination named in the request replaces that destination; one left out stays."""
        if max_retries is None and max_age is None and destination_config is None:
            raise InvalidParameterValue(NOTHING_TO_SET)
        name, q = self._target(function_name, qualifier)
        with self.store.transaction() as tx:
            self._require_qualifier(tx, name, q)
            current = tx.get_event_invoke_config(name, q)
            if current is None:
                raise ResourceNotFound(self._no_config(name, q))
        on_success, on_failure = self._destinations(
            name, q, destination_config, current.on_success, current.on_failure
        )
        config = self._config(
            name, q,
            current.maximum_retry_attempts if max_retries is None else max_retries,
            current.maximum_event_age_seconds if max_age is None else max_age,
            on_success, on_failure,
        )
        with self.store.transaction() as tx:
            if tx.get_event_invoke_config(name, q) is None:  # deleted meanwhile
                raise ResourceNotFound(self._no_config(name, q))
            tx.put_event_invoke_config(config)
        self.functions.history.record("UpdateFunctionEventInvokeConfig", name, current, config)
        return config

    def get(self, function_name: str, qualifier: str | None) -> EventInvokeConfig:
        name, q = self._target(function_name, qualifier)
        with self.store.transaction() as tx:
            config = tx.get_event_invoke_config(name, q) if tx.get_function(name) else None
        if config is None:
            raise ResourceNotFound(self._no_config(name, q))
        return config

    def delete(self, function_name: str, qualifier: str | None) -> None:
        name, q = self._target(function_name, qualifier)
        with self.store.transaction() as tx:
            before = tx.get_event_invoke_config(name, q) if tx.get_function(name) is not None else None
            if before is None:
                raise ResourceNotFound(self._no_config(name, q))
            tx.delete_event_invoke_config(name, q)
        self.functions.history.record("DeleteFunctionEventInvokeConfig", name, before, None)

    def list(
        self, function_name: str, marker: str | None, max_items: int | None
    ) -> tuple[list[EventInvokeConfig], str | None]:
        """A page of the function's configs, ordered by qualifier, and the next marker."""
        name, _ = self._target(function_name, None)
        after = validation.decode_marker(marker)
        limit = min(max_items or LIST_MAX_ITEMS, LIST_MAX_ITEMS)
        with self.store.transaction() as tx:
            if tx.get_function(name) is None:
                raise ResourceNotFound(FUNCTION_MISSING)
            configs = tx.list_event_invoke_configs(name)
        if after is not None:
            configs = [c for c in configs if c.qualifier > after]
        page = configs[:limit]
        more = len(configs) > limit
        return page, validation.encode_marker(page[-1].qualifier) if more else None

    # -- for the poller --------------------------------------------------------------------

    def config_for(self, function: str, qualifier: str | None) -> AsyncPolicy:
        """The policy for an Event invoke of ``function`` as the caller qualified it.

        Cached until the store's next write. Raises ResourceNotFound when the function or
        qualifier no longer exists (the poller decides what that means for the event)."""
        q = qualifier or LATEST
        if self._generation != self.store.generation:
            self._cache.clear()
            self._generation = self.store.generation
        policy = self._cache.get((function, q))
        if policy is None:
            policy = self._cache[(function, q)] = self._policy(function, q)
        return policy

    def _policy(self, function: str, q: str) -> AsyncPolicy:
        resolved = self.functions.resolve(function, q)
        with self.store.transaction() as tx:
            config = tx.get_event_invoke_config(function, q)
        dead_letter = resolved.version.dead_letter_target or None
        if config is None:
            return AsyncPolicy(DEFAULT_MAX_RETRIES, DEFAULT_MAX_AGE_SECONDS, None, dead_letter)
        return AsyncPolicy(
            DEFAULT_MAX_RETRIES if config.maximum_retry_attempts is None else config.maximum_retry_attempts,
            DEFAULT_MAX_AGE_SECONDS if config.maximum_event_age_seconds is None
            else config.maximum_event_age_seconds,
            config.on_success,
            config.on_failure or dead_letter,
        )

    # -- helpers ---------------------------------------------------------------------------

    def _target(self, function_name: str, qualifier: str | None) -> tuple[str, str]:
        """(function name, qualifier) a request addresses; the unqualified function is $LATEST."""
        settings = self.functions.settings
        ref = arns.parse_function_ref(
            function_name, qualifier, region=settings.region, account=settings.account_id,
            namespaced=True,
        )
        return ref.name, ref.qualifier or LATEST

    def _require_qualifier(self, tx: Transaction, name: str, q: str) -> None:
        if tx.get_function(name) is None:
            raise ResourceNotFound(FUNCTION_MISSING)
        if tx.get_version(name, q) is None and tx.get_alias(name, q) is None:
            raise ResourceNotFound(FUNCTION_MISSING)

    def _no_config(self, name: str, q: str) -> str:
        return f"The function {self.functions.arn(name, q)} doesn't have an EventInvokeConfig"

    def _config(
        self, name: str, q: str, max_retries: int | None, max_age: int | None,
        on_success: str | None, on_failure: str | None,
    ) -> EventInvokeConfig:
        return EventInvokeConfig(
            function=name, qualifier=q, function_arn=self.functions.arn(name, q),
            last_modified=round(self.clock(), 3), maximum_retry_attempts=max_retries,
            maximum_event_age_seconds=max_age, on_success=on_success, on_failure=on_failure,
        )

    def _destinations(
        self, name: str, qualifier: str, config: DestinationConfig | None,
        on_success: str | None, on_failure: str | None,
    ) -> tuple[str | None, str | None]:
        """The (OnSuccess, OnFailure) ARNs after applying a request's DestinationConfig."""
        if config is None:
            return on_success, on_failure
        if "OnSuccess" in config:
            on_success = config["OnSuccess"].get("Destination") or None
        if "OnFailure" in config:
            on_failure = config["OnFailure"].get("Destination") or None
        bad = [arn for arn in (on_success, on_failure) if arn and not self._deliverable(name, arn)]
        if bad:
            success = f"OnSuccess(destination={on_success})" if on_success else "null"
            failure = f"OnFailure(destination={on_failure})" if on_failure else "null"
            raise InvalidParameterValue(
                f"The provided destination config DestinationConfig(onSuccess={success}, "
                f"onFailure={failure}) is invalid."
            )
        check = self.functions.delivery_check
        if check is not None:
            role = self.functions.resolve(name, qualifier).version.role
            for arn in {on_success, on_failure} - {None}:
                check(role, name, str(arn))
        return on_success, on_failure

    def _deliverable(self, name: str, arn: str) -> bool:
        """True for a Lamina function ARN; raises for ones AWS knows but Lamina cannot serve."""
        parts = arn.split(":")
        service = parts[2] if len(parts) > 2 else ""
        if service in _UNDELIVERABLE:
            raise InvalidParameterValue(
                f"Lamina has no {_UNDELIVERABLE[service]} service yet and cannot deliver to "
                f"{arn}; use the ARN of a Lamina function as the destination."
            )
        if service != "lambda":
            return False
        target = _function_target(self.functions, arn)
        if target is None:
            raise InvalidParameterValue(f"The destination ARN {arn} is invalid.")
        if target == name:
            raise InvalidParameterValue(SELF_DESTINATION)
        return True


def _function_target(functions: Functions, arn: str) -> str | None:
    """The name of the existing Lamina function (and qualifier) ``arn`` names, else None."""
    match = _FUNCTION_ARN.fullmatch(arn)
    settings = functions.settings
    if match is None or match["region"] != settings.region or match["account"] != settings.account_id:
        return None
    try:
        functions.resolve(match["name"], match["qualifier"])
    except ResourceNotFound:
        return None
    return match["name"]


def check_dead_letter_target(
    functions: Functions, name: str, target: str | None, role: str | None = None
) -> None:
    """DeadLetterConfig.TargetArn of CreateFunction/UpdateFunctionConfiguration.

    AWS takes an SQS queue or SNS topic; Lamina has neither, so it refuses those with a message
    that says so and, as an extension, takes the ARN of another existing Lamina function, which
    then receives the failed event. An empty ARN removes the dead-letter target."""
    if not target:
        return
    service = target.split(":")[2] if target.count(":") >= 2 else ""
    if service in ("sqs", "sns"):
        raise InvalidParameterValue(
            f"Invalid dead letter queue ARN: Lamina has no {service.upper()} service yet and cannot "
            f"deliver to {target}. Name a Lamina function instead (a Lamina extension), or "
            "configure an OnFailure destination with PutFunctionEventInvokeConfig."
        )
    if service != "lambda":
        raise InvalidParameterValue(
            f"Invalid dead letter queue ARN: {target} is not an SQS queue or SNS topic."
        )
    found = _function_target(functions, target)
    if found is None:
        raise InvalidParameterValue(f"Invalid dead letter queue ARN: function not found: {target}")
    if found == name:
        raise InvalidParameterValue("Invalid dead letter queue ARN: a function cannot be its own dead-letter target.")
    if functions.delivery_check is not None:
        # The role the function will run with: the request's, else the current one.
        functions.delivery_check(role or functions.resolve(name).version.role, name, target)

