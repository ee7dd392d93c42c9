"""IAM condition operators and wildcard matching, kept apart from the policy grammar.

A condition block is parsed once into ``Condition`` values so that an unknown operator or a
malformed number, date or CIDR in a policy fails when the policy is stored, not when a request
is being authorised. Evaluation takes the request context as a mapping from lower-cased key to
a tuple of strings: condition keys are case-insensitive in AWS, values are not.

Semantics follow the IAM User Guide: keys in one block AND, values of one key OR; a missing key
makes a positive operator false and a negated one true; ``...IfExists`` turns a missing key into
true; ``ForAnyValue:`` is false on an empty set and ``ForAllValues:`` true on it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from lamina.errors import LaminaError

Context = Mapping[str, tuple[str, ...]]


class MalformedPolicy(LaminaError, ValueError):
    """A policy document IAM would reject; the message is AWS's MalformedPolicyDocument text.

    It lives here rather than in ``lamina.errors`` because it is a validation result of this
    package; the API layer that accepts policies maps it to its 400 error.
    """


@lru_cache(maxsize=4096)
def _wildcard_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """``*`` matches any run of characters (colons included), ``?`` exactly one."""
    return _wildcard_regex(pattern, ignore_case).fullmatch(value) is not None


def arn_like(pattern: str, value: str) -> bool:
    """ArnLike/ArnEquals: each of the six colon-separated components is matched on its own."""
    if pattern == "*":
        return True
    p_parts, v_parts = pattern.split(":", 5), value.split(":", 5)
    if len(p_parts) != 6 or len(v_parts) != 6:
        return False
    return all(wildcard_match(p, v) for p, v in zip(p_parts, v_parts, strict=True))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> datetime | None:
    """ISO 8601 (``Z`` allowed) or epoch seconds, as AWS accepts in Date conditions."""
    number = _number(text)
    if number is not None:
        return datetime.fromtimestamp(number, tz=timezone.utc)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _ip(value: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _compare(parse: Callable[[str], Any], test: Callable[[Any, Any], bool]) -> Callable[[str, str], bool]:
    def check(value: str, expected: str) -> bool:
        left, right = parse(value), parse(expected)
        return left is not None and right is not None and bool(test(left, right))

    return check


def _binary(value: str, expected: str) -> bool:
    try:
        return base64.b64decode(value, validate=True) == base64.b64decode(expected, validate=True)
    except (binascii.Error, ValueError):
        return False


_BASE: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda v, e: v == e,
    "StringEqualsIgnoreCase": lambda v, e: v.casefold() == e.casefold(),
    "StringLike": lambda v, e: wildcard_match(e, v),
    "ArnLike": lambda v, e: arn_like(e, v),
    "NumericEquals": _compare(_number, lambda a, b: a == b),
    "NumericLessThan": _compare(_number, lambda a, b: a < b),
    "NumericLessThanEquals": _compare(_number, lambda a, b: a <= b),
    "NumericGreaterThan": _compare(_number, lambda a, b: a > b),
    "NumericGreaterThanEquals": _compare(_number, lambda a, b: a >= b),
    "DateEquals": _compare(_date, lambda a, b: a == b),
    "DateLessThan": _compare(_date, lambda a, b: a < b),
    "DateLessThanEquals": _compare(_date, lambda a, b: a <= b),
    "DateGreaterThan": _compare(_date, lambda a, b: a > b),
    "DateGreaterThanEquals": _compare(_date, lambda a, b: a >= b),
    "Bool": lambda v, e: v.lower() == e.lower(),
    "IpAddress": _ip,
    "BinaryEquals": _binary,
}

# operator -> (base test, negated). ArnEquals allows wildcards exactly like ArnLike in AWS.
OPERATORS: dict[str, tuple[str, bool]] = {
    **{name: (name, False) for name in _BASE},
    "ArnEquals": ("ArnLike", False),
    "StringNotEquals": ("StringEquals", True),
    "StringNotEqualsIgnoreCase": ("StringEqualsIgnoreCase", True),
    "StringNotLike": ("StringLike", True),
    "ArnNotEquals": ("ArnLike", True),
    "ArnNotLike": ("ArnLike", True),
    "NumericNotEquals": ("NumericEquals", True),
    "DateNotEquals": ("DateEquals", True),
    "NotIpAddress": ("IpAddress", True),
}


@dataclass(frozen=True)
class Condition:
    """One ``operator: {key: values}`` pair of a Condition block."""

    operator: str  # as written, e.g. "ForAllValues:StringLikeIfExists"
    key: str  # lower-cased condition key
    values: tuple[str, ...]
    base: str  # the positive test, or "Null"
    negated: bool
    if_exists: bool
    set_operator: str | None  # "ForAnyValue", "ForAllValues" or None

    def matches(self, context: Context) -> bool:
        present = context.get(self.key, ())
        if self.base == "Null":
            return any((v.lower() == "true") != bool(present) for v in self.values)
        test = _BASE[self.base]
        wanted = [s for v in self.values if (s := substitute(v, context)) is not None]

        def ok(value: str) -> bool:
            hit = any(test(value, expected) for expected in wanted)
            return hit != self.negated

        if self.set_operator == "ForAllValues":
            return all(ok(v) for v in present)
        if self.set_operator == "ForAnyValue":
            return any(ok(v) for v in present)
        if not present:
            return self.if_exists or self.negated
        return all(ok(v) for v in present) if self.negated else any(ok(v) for v in present)


def _strings(raw: object) -> tuple[str, ...]:
    """Condition values may be strings, numbers or booleans in JSON; IAM compares their text."""
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str | int | float):
            out.append(str(item))
        else:
            raise MalformedPolicy("Syntax errors in policy.")
    return tuple(out)


def _parse_operator(operator: str) -> tuple[str, bool, bool, str | None]:
    name, set_operator = operator, None
    if ":" in name:
        set_operator, _, name = name.partition(":")
        if set_operator not in ("ForAnyValue", "ForAllValues"):
            raise MalformedPolicy(f"Invalid Condition type : {operator}")
    if_exists = name.endswith("IfExists") and name != "IfExists"
    if if_exists:
        name = name.removesuffix("IfExists")
    if name == "Null":
        if if_exists or set_operator:
            raise MalformedPolicy(f"Invalid Condition type : {operator}")
        return "Null", False, False, None
    if name not in OPERATORS:
        raise MalformedPolicy(f"Invalid Condition type : {operator}")
    base, negated = OPERATORS[name]
    return base, negated, if_exists, set_operator


def parse_conditions(raw: object) -> tuple[Condition, ...]:
    """Parse a statement's Condition element; errors carry AWS's MalformedPolicyDocument texts."""
    if not isinstance(raw, dict):
        raise MalformedPolicy("Syntax errors in policy.")
    conditions: list[Condition] = []
    for operator, block in raw.items():
        if not isinstance(block, dict):
            raise MalformedPolicy("Syntax errors in policy.")
        base, negated, if_exists, set_operator = _parse_operator(operator)
        for key, values in block.items():
            parsed = _strings(values)
            check: Callable[[str], object] | None = (
                _number if base.startswith("Numeric") else _date if base.startswith("Date") else None
            )
            if check is not None and any(check(v) is None for v in parsed if "${" not in v):
                raise MalformedPolicy(f"Invalid value for condition {operator}: {key}")
            if base == "IpAddress":
                for v in parsed:
                    try:
                        ipaddress.ip_network(v, strict=False)
                    except ValueError as exc:
                        raise MalformedPolicy(f"Invalid value for condition {operator}: {key}") from exc
            conditions.append(
                Condition(operator, key.lower(), parsed, base, negated, if_exists, set_operator)
            )
    return tuple(conditions)


_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def substitute(text: str, context: Context) -> str | None:
    """Replace ``${key}`` policy variables; None when a key is missing or multi-valued.

    AWS treats an element whose variable cannot be resolved as not matching, so callers skip
    the value rather than match the literal text.
    """
    if "${" not in text:
        return text
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name in ("*", "?", "$"):
            return name
        values = context.get(name.lower(), ())
        if len(values) != 1:
            missing = True
            return ""
        return values[0]

    result = _VARIABLE.sub(replace, text)
    return None if missing else result
