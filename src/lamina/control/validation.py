"""Request validation for the Lambda control plane, with AWS's limits and AWS's texts.

AWS checks a request in two passes and Lamina does the same:

1. Model constraints (botocore's ``service-2.json``: patterns, lengths, ranges, enums). Every
   failure in the request is gathered and reported at once as one ``ValidationException``:
   ``"2 validation errors detected: Value 'x' at 'functionName' failed to satisfy constraint:
   ...; Value '0' at 'timeout' ..."``. The ``check_*`` functions add to a
   :class:`ConstraintCollector`; the caller raises once with
   :meth:`ConstraintCollector.raise_if_any`.
2. Lambda's own semantic rules (runtimes, reserved environment keys, the 4 KB environment,
   package type, ...) raise ``InvalidParameterValueException`` at the first failure. These are
   the ``validate_*`` functions; call them after pass 1 has passed.

Everything here is pure: no I/O, no clock, no HTTP. Paths in messages are the member names
with a lower-case first letter joined by dots (``environment.variables``), as AWS writes them.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from lamina.errors import InvalidParameterValue, ValidationError


@dataclass(frozen=True)
class StringShape:
    """A string shape of the Lambda model; ``pattern`` is the model's text, shown in messages."""

    min: int
    max: int | None = None
    pattern: str | None = None

    def matches(self, value: str) -> bool:
        # Java's \d is ASCII-only and the model's patterns are whole-string matches.
        return self.pattern is None or re.fullmatch(self.pattern, value, re.ASCII) is not None


_REGION = r"(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}"

# Copied from botocore's Lambda model; tests/control/test_validation.py checks they still agree.
FUNCTION_NAME = StringShape(
    1, 140,
    rf"(arn:(aws[a-zA-Z-]*)?:lambda:)?({_REGION}:)?(\d{{12}}:)?(function:)?([a-zA-Z0-9-_]+)"
    r"(:(\$LATEST|[a-zA-Z0-9-_]+))?",
)
NAMESPACED_FUNCTION_NAME = StringShape(
    1, 256,
    rf"(arn:(aws[a-zA-Z-]*)?:lambda:)?({_REGION}:)?(\d{{12}}:)?(function:)?([a-zA-Z0-9-_\.]+)"
    r"(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?",
)
QUALIFIER = StringShape(1, 128, r"\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+")
ALIAS = StringShape(1, 128, r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)")
VERSION = StringShape(1, 1024, r"(\$LATEST(\.PUBLISHED)?|[0-9]+)")
ADDITIONAL_VERSION = StringShape(1, 1024, r"[0-9]+")
HANDLER = StringShape(0, 128, r"[^\s]+")
DESCRIPTION = StringShape(0, 256)
ROLE = StringShape(0, 10000, r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
ENV_KEY = StringShape(0, None, r"[a-zA-Z]([a-zA-Z0-9_])+")
TAG_KEY = StringShape(1, 128, r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)")
TAG_VALUE = StringShape(0, 256, r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)")

# Lamina's limits are AWS's limits for on-demand functions. The current model allows
# 32768 MB / 5400 s / 32768 MB for Lambda Managed Instances, which Lamina does not offer.
# Lambda's service limits for on-demand functions (InvalidParameterValueException when exceeded)...
MEMORY_SIZE = (128, 10240)
TIMEOUT = (1, 900)
EPHEMERAL_STORAGE = (512, 10240)
# ...and the wider bounds of botocore's model (ValidationException), which also admit
# Lambda Managed Instances.
MODEL_MEMORY_SIZE = (128, 32768)
MODEL_TIMEOUT = (1, 5400)
MODEL_EPHEMERAL_STORAGE = (512, 32768)
MAX_ITEMS = (1, 10000)
FUNCTION_NAME_MAX = 64
ENV_MAX_BYTES = 4096
ARCHITECTURES = ("x86_64", "arm64")
PACKAGE_TYPES = ("Zip", "Image")
_MARKER_TAG = "lamina-marker:"

# Documented as reserved and refused by CreateFunction/UpdateFunctionConfiguration. TZ is
# documented as reserved too, but AWS accepts it (people set it to change the zone).
RESERVED_ENV_KEYS = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})

# Runtimes AWS still names in its enum but refuses for create/update, with the successor
# its message recommends.
DEPRECATED_RUNTIMES: Mapping[str, str] = {
    "python2.7": "python3.12", "python3.6": "python3.12", "python3.7": "python3.12",
    "python3.8": "python3.12", "provided": "provided.al2023", "go1.x": "provided.al2023",
}


class ConstraintCollector:
    """Gathers model-constraint failures of one request and raises them as one error.

    Usable as a context manager: leaving the block without an exception raises the
    collected failures, if any.
    """

    def __init__(self) -> None:
        self._failures: list[str] = []

    @property
    def failures(self) -> tuple[str, ...]:
        return tuple(self._failures)

    def add(self, path: str, value: object, constraint: str, *, sensitive: bool = False) -> None:
        """Record one failure; ``constraint`` follows ``failed to satisfy constraint: ``."""
        if sensitive:
            shown = "Value"
        elif value is None:
            shown = "Value null"
        else:
            shown = f"Value '{_java_str(value)}'"
        self._failures.append(f"{shown} at '{path}' failed to satisfy constraint: {constraint}")

    def string(self, path: str, value: str | None, shape: StringShape) -> None:
        """Length then pattern, each a failure of its own, as AWS reports them."""
        if value is None:
            return
        for constraint in _string_failures(value, shape):
            self.add(path, value, constraint)

    def number(self, path: str, value: int | float | None, bounds: tuple[int, int]) -> None:
        if value is None:
            return
        low, high = bounds
        if value < low:
            self.add(path, value, f"Member must have value greater than or equal to {low}")
        elif value > high:
            self.add(path, value, f"Member must have value less than or equal to {high}")

    def required(self, path: str, value: object) -> None:
        if value is None:
            self.add(path, None, "Member must not be null")

    def raise_if_any(self) -> None:
        if not self._failures:
            return
        count = len(self._failures)
        noun = "error" if count == 1 else "errors"
        raise ValidationError(f"{count} validation {noun} detected: " + "; ".join(self._failures))

    def __enter__(self) -> ConstraintCollector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.raise_if_any()


def _java_str(value: object) -> str:
    """Render a value as the Java service does in its messages (maps as ``{k=v}``)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_java_str(k)}={_java_str(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_java_str(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _string_failures(value: str, shape: StringShape) -> list[str]:
    failures = []
    if shape.max is not None and len(value) > shape.max:
        failures.append(f"Member must have length less than or equal to {shape.max}")
    if len(value) < shape.min:
        failures.append(f"Member must have length greater than or equal to {shape.min}")
    if shape.pattern is not None and not _matches(value, shape):
        failures.append(f"Member must satisfy regular expression pattern: {shape.pattern}")
    return failures


def _matches(value: str, shape: StringShape) -> bool:
    if shape is TAG_KEY or shape is TAG_VALUE:
        # Python's re has no \p{..}: check the Unicode categories by hand.
        return all(unicodedata.category(ch)[0] in "LZN" or ch in "_.:/=+-@" for ch in value)
    return shape.matches(value)


def _all_constraints(shape: StringShape) -> str:
    """The bracketed constraint list AWS prints for a failing map key or value."""
    parts = []
    if shape.max is not None:
        parts.append(f"Member must have length less than or equal to {shape.max}")
    if shape.min > 0 or shape.max is not None:
        parts.append(f"Member must have length greater than or equal to {shape.min}")
    if shape.pattern is not None:
        parts.append(f"Member must satisfy regular expression pattern: {shape.pattern}")
    return "[" + ", ".join(parts) + "]"


# --- pass 1: model constraints -------------------------------------------------------------


def check_function_name(
    c: ConstraintCollector, value: str | None, *, path: str = "functionName",
    namespaced: bool = False, creating: bool = False,
) -> None:
    """FunctionName; ``namespaced`` for the Get/Delete/Invoke family, ``creating`` for
    CreateFunction, where a bare name is limited to 64 characters."""
    if creating and value is not None and ":" not in value and len(value) > FUNCTION_NAME_MAX:
        c.add(path, value, f"Member must have length less than or equal to {FUNCTION_NAME_MAX}")
        if not FUNCTION_NAME.matches(value):
            c.add(path, value, f"Member must satisfy regular expression pattern: "
                               f"{FUNCTION_NAME.pattern}")
        return
    c.string(path, value, NAMESPACED_FUNCTION_NAME if namespaced else FUNCTION_NAME)


def check_qualifier(c: ConstraintCollector, value: str | None, *, path: str = "qualifier") -> None:
    c.string(path, value, QUALIFIER)


def check_alias_name(c: ConstraintCollector, value: str | None, *, path: str = "name") -> None:
    c.string(path, value, ALIAS)


def check_version(
    c: ConstraintCollector, value: str | None, *, path: str = "functionVersion"
) -> None:
    c.string(path, value, VERSION)


def check_handler(c: ConstraintCollector, value: str | None) -> None:
    c.string("handler", value, HANDLER)


def check_description(c: ConstraintCollector, value: str | None) -> None:
    c.string("description", value, DESCRIPTION)


def check_role(c: ConstraintCollector, value: str | None) -> None:
    c.string("role", value, ROLE)


def check_memory_size(c: ConstraintCollector, value: int | None) -> None:
    c.number("memorySize", value, MODEL_MEMORY_SIZE)


def check_timeout(c: ConstraintCollector, value: int | None) -> None:
    c.number("timeout", value, MODEL_TIMEOUT)


def check_ephemeral_storage(c: ConstraintCollector, size: int | None) -> None:
    c.number("ephemeralStorage.size", size, MODEL_EPHEMERAL_STORAGE)


def check_max_items(
    c: ConstraintCollector, value: int | None, bounds: tuple[int, int] = MAX_ITEMS
) -> None:
    c.number("maxItems", value, bounds)


def check_environment(c: ConstraintCollector, variables: Mapping[str, str] | None) -> None:
    """Key pattern only; the map is sensitive, so AWS's message shows no value."""
    if variables and any(not ENV_KEY.matches(key) for key in variables):
        c.add("environment.variables", variables, "Map keys must satisfy constraint: "
              f"[Member must satisfy regular expression pattern: {ENV_KEY.pattern}]",
              sensitive=True)


def check_tags(
    c: ConstraintCollector, tags: Mapping[str, str] | None, *, path: str = "tags"
) -> None:
    if not tags:
        return
    if any(_string_failures(key, TAG_KEY) for key in tags):
        c.add(path, tags, f"Map keys must satisfy constraint: {_all_constraints(TAG_KEY)}")
    if any(_string_failures(value, TAG_VALUE) for value in tags.values()):
        c.add(path, tags, f"Map value must satisfy constraint: {_all_constraints(TAG_VALUE)}")


def check_architectures(c: ConstraintCollector, architectures: Sequence[str] | None) -> None:
    if architectures is None:
        return
    if len(architectures) > 1:
        c.add("architectures", architectures, "Member must have length less than or equal to 1")
    elif len(architectures) < 1:
        c.add("architectures", architectures, "Member must have length greater than or equal to 1")
    if any(arch not in ARCHITECTURES for arch in architectures):
        c.add("architectures", architectures, "Member must satisfy constraint: "
              f"[Member must satisfy enum value set: [{', '.join(ARCHITECTURES)}]]")


def check_package_type(c: ConstraintCollector, value: str | None) -> None:
    if value is not None and value not in PACKAGE_TYPES:
        c.add("packageType", value,
              f"Member must satisfy enum value set: [{', '.join(PACKAGE_TYPES)}]")


def check_routing_config(c: ConstraintCollector, weights: Mapping[str, float] | None) -> None:
    path = "routingConfig.additionalVersionWeights"
    if not weights:
        return
    if any(_string_failures(version, ADDITIONAL_VERSION) for version in weights):
        c.add(path, weights,
              f"Map keys must satisfy constraint: {_all_constraints(ADDITIONAL_VERSION)}")
    if any(not 0.0 <= weight <= 1.0 for weight in weights.values()):
        c.add(path, weights, "Map value must satisfy constraint: [Member must have value less "
              "than or equal to 1.0, Member must have value greater than or equal to 0.0]")


# --- pass 2: Lambda's semantic checks ------------------------------------------------------


def validate_runtime(runtime: str, available: Sequence[str]) -> None:
    """``available`` is what this host can run (python3.X present, provided.*)."""
    if runtime in available:
        return
    if runtime in DEPRECATED_RUNTIMES:
        raise InvalidParameterValue(
            f"The runtime parameter of {runtime} is no longer supported for creating or updating "
            f"AWS Lambda functions. We recommend you use the new runtime "
            f"({DEPRECATED_RUNTIMES[runtime]}) while creating or updating functions."
        )
    raise InvalidParameterValue(
        f"Value {runtime} at 'runtime' failed to satisfy constraint: Member must satisfy enum "
        f"value set: [{', '.join(available)}] or be a valid ARN"
    )


def environment_size(variables: Mapping[str, str]) -> tuple[int, str]:
    """The size AWS measures: the compact JSON object of the variables, in UTF-8 bytes."""
    measured = json.dumps(dict(variables), separators=(",", ":"), ensure_ascii=False)
    return len(measured.encode("utf-8")), measured


def validate_environment(
    variables: Mapping[str, str] | None, *, limit: int = ENV_MAX_BYTES
) -> None:
    if not variables:
        return
    reserved = [key for key in variables if key in RESERVED_ENV_KEYS]
    if reserved:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided contains reserved keys that are currently not supported "
            f"for modification. Reserved keys used in this request: {', '.join(reserved)}"
        )
    size, measured = environment_size(variables)
    if size > limit:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment "
            f"variables you have provided exceeded the 4KB limit. String measured: {measured}"
        )


def validate_architectures(architectures: Sequence[str] | None, allowed: Sequence[str]) -> None:
    """Only the host's architecture can run here; AWS has no such message, so it is Lamina's."""
    for arch in architectures or ():
        if arch not in allowed:
            raise InvalidParameterValue(
                f"Architecture {arch} is not supported by this Lamina host. "
                f"Supported architectures: [{', '.join(allowed)}]"
            )


def validate_package_type(package_type: str | None) -> None:
    if package_type == "Image":
        raise InvalidParameterValue(
            "PackageType Image is not supported by Lamina: container images cannot be run. "
            "Use PackageType Zip with a .zip deployment package."
        )


def validate_tags(tags: Mapping[str, str] | None) -> None:
    for key in tags or {}:
        if key.lower().startswith("aws:"):
            raise InvalidParameterValue(
                "aws: prefixed tag key names are not allowed for external use."
            )


def validate_routing_config(weights: Mapping[str, float] | None) -> None:
    """An alias routes to at most one version besides its own."""
    if weights and len(weights) > 1:
        raise InvalidParameterValue(
            "Number of items in AdditionalVersionWeights cannot be greater than 1"
        )


def encode_marker(position: str) -> str:
    """An opaque pagination marker for the key a listing stopped after."""
    return base64.urlsafe_b64encode(f"{_MARKER_TAG}{position}".encode()).decode("ascii")


def decode_marker(marker: str | None) -> str | None:
    """The position in a marker from :func:`encode_marker`; ``None`` for no marker."""
    if not marker:
        return None
    try:
        text = base64.urlsafe_b64decode(marker.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError) as exc:
        raise InvalidParameterValue(f"Invalid Marker: {marker}") from exc
    if not text.startswith(_MARKER_TAG):
        raise InvalidParameterValue(f"Invalid Marker: {marker}")
    return text[len(_MARKER_TAG):]


def validate_function_config(
    *,
    available_runtimes: Sequence[str],
    allowed_architectures: Sequence[str],
    runtime: str | None = None,
    handler: str | None = None,
    role: str | None = None,
    description: str | None = None,
    memory_size: int | None = None,
    timeout: int | None = None,
    ephemeral_storage: int | None = None,
    environment: Mapping[str, str] | None = None,
    architectures: Sequence[str] | None = None,
    package_type: str | None = None,
) -> None:
    """Both passes over the configuration members of CreateFunction/UpdateFunctionConfiguration
    (None means "not in the request")."""
    with ConstraintCollector() as c:
        check_role(c, role)
        check_handler(c, handler)
        check_description(c, description)
        check_timeout(c, timeout)
        check_memory_size(c, memory_size)
        check_package_type(c, package_type)
        check_environment(c, environment)
        check_architectures(c, architectures)
        check_ephemeral_storage(c, ephemeral_storage)
    validate_package_type(package_type)
    validate_service_limits(memory_size=memory_size, timeout=timeout, ephemeral_storage=ephemeral_storage)
    if runtime is not None:
        validate_runtime(runtime, available_runtimes)
    validate_environment(environment)
    validate_architectures(architectures, allowed_architectures)


def validate_service_limits(
    *, memory_size: int | None, timeout: int | None, ephemeral_storage: int | None
) -> None:
    """Lambda's on-demand limits, checked after the model's wider bounds."""
    for member, value, (low, high) in (
        ("memorySize", memory_size, MEMORY_SIZE),
        ("timeout", timeout, TIMEOUT),
        ("ephemeralStorage.size", ephemeral_storage, EPHEMERAL_STORAGE),
    ):
        if value is not None and value > high:
            raise InvalidParameterValue(
                f"Value '{value}' at '{member}' failed to satisfy constraint: "
                f"Member must have value less than or equal to {high}"
            )
        if value is not None and value < low:
            raise InvalidParameterValue(
                f"Value '{value}' at '{member}' failed to satisfy constraint: "
                f"Member must have value greater than or equal to {low}"
            )
