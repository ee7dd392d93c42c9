"""AWS's query protocol (IAM, STS), driven by botocore's service models.

A request is a flat form (``Action=CreateRole&Version=2010-05-08&Tags.member.1.Key=k``, in a
form-encoded POST body or a GET query string). The model says how the flat names nest: lists
are ``Name.member.N`` (``Name.N`` when flattened), maps ``Name.entry.N.key``/``.value``,
structures ``Name.Sub``. ``parse`` rebuilds the nested params that botocore's query serializer
flattened, keyed by the model's member names, so handlers see the same dicts a boto3 caller
passed; ``validate`` applies the model's constraints and words failures as IAM does; the
response side (XML) lives in :mod:`lamina.api.query_xml`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import botocore.loaders

from lamina.api import query_xml
from lamina.api.patterns import compile_java
from lamina.errors import ApiError, IamError

if TYPE_CHECKING:
    from lamina.api.http import Handler

Shape = dict[str, Any]

_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")  # fits a long; longer is no number IAM takes
_INDEX = re.compile(r"[0-9]{1,9}")  # a list or map position (1-based)
# No IAM or STS input nests deeper than this; names with more dots cannot name a member, and
# indexing their prefixes would cost quadratic time on a hostile body.
_MAX_DEPTH = 12


@dataclass
class QueryService:
    """One query-protocol service on Lamina's port: its model and its operation handlers."""

    model: QueryModel
    handlers: dict[str, Handler]
    body_limit: int = 1024 * 1024


@dataclass(frozen=True)
class QueryOperation:
    name: str
    input_shape: str | None
    output_shape: str | None
    result_wrapper: str | None  # the ``<{Op}Result>`` element, absent for output-less operations


@functools.lru_cache(maxsize=8)
def _raw_model(service: str, api_version: str) -> dict[str, Any]:
    """The parsed JSON is big (IAM's is ~1 MB); every QueryModel of a process shares one copy."""
    model: dict[str, Any] = botocore.loaders.Loader().load_service_model(service, "service-2", api_version)
    return model


class QueryModel:
    """One query-protocol service's model: the operations and the shapes that nest their params."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        metadata = raw["metadata"]
        self.name: str = metadata["endpointPrefix"]
        self.api_version: str = metadata["apiVersion"]
        self.xmlns: str = metadata["xmlNamespace"]
        self.shapes: Mapping[str, Shape] = raw["shapes"]
        self.operations: Mapping[str, QueryOperation] = {
            name: QueryOperation(
                name=name,
                input_shape=op.get("input", {}).get("shape"),
                output_shape=op.get("output", {}).get("shape"),
                result_wrapper=op.get("output", {}).get("resultWrapper"),
            )
            for name, op in raw["operations"].items()
        }

    @classmethod
    def load(cls, service: str, api_version: str) -> QueryModel:
        """``QueryModel.load("iam", "2010-05-08")`` or ``("sts", "2011-06-15")``."""
        return cls(_raw_model(service, api_version))

    # -- input ---------------------------------------------------------------------------

    def parse(self, form: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
        """(operation, params) from a decoded form. Names the model does not know are ignored."""
        action = form.get("Action")
        if not action:
            raise IamError("MissingAction", "The request is missing an action or a required parameter.")
        version = form.get("Version") or self.api_version
        op = self.operations.get(action)
        if op is None or version != self.api_version:
            raise IamError("InvalidAction", f"Could not find operation {action} for version {version}")
        if op.input_shape is None:
            return action, {}
        children: dict[str, set[str]] = {}
        for key in form:
            parts = key.split(".", _MAX_DEPTH)
            for i, part in enumerate(parts[:_MAX_DEPTH]):
                children.setdefault(".".join(parts[:i]), set()).add(part)
        reader = _FormReader(self.shapes, form, children)
        return action, reader.structure(self.shapes[op.input_shape], "", "")

    def validate(self, operation: str, params: Mapping[str, Any]) -> None:
        """The model's constraints, every failure counted in one ValidationError (AWS's wording)."""
        shape_name = self.operations[operation].input_shape
        if shape_name is None:
            return
        failures: list[str] = []
        _Checker(self.shapes, failures).check(self.shapes[shape_name], params, "")
        if failures:
            noun = "error" if len(failures) == 1 else "errors"
            raise IamError(
                "ValidationError", f"{len(failures)} validation {noun} detected: " + "; ".join(failures)
            )

    # -- output --------------------------------------------------------------------------

    def serialize(self, operation: str, result: Mapping[str, Any] | None, request_id: str) -> bytes:
        """The ``<{Op}Response>`` document for a handler's result."""
        op = self.operations[operation]
        return query_xml.response(self.shapes, self.xmlns, op, result, request_id)

    def error(self, exc: IamError | ApiError, request_id: str) -> bytes:
        """The ``<ErrorResponse>`` document; status is ``exc.status``."""
        return query_xml.error(self.xmlns, exc, request_id)


class _FormReader:
    """Rebuilds nested params from flat form names, walking the input shape."""

    def __init__(self, shapes: Mapping[str, Shape], form: Mapping[str, str], children: dict[str, set[str]]):
        self.shapes = shapes
        self.form = form
        self.children = children

    def _present(self, member: Mapping[str, Any], key: str) -> bool:
        """A scalar is present when named; a container also when any name nests under it."""
        nested = self.shapes[member["shape"]]["type"] in ("structure", "list", "map")
        return key in self.form or (nested and key in self.children)

    def read(self, member: Mapping[str, Any], key: str, path: str) -> Any:
        shape = self.shapes[member["shape"]]
        kind = shape["type"]
        if kind == "structure":
            return self.structure(shape, key, path)
        if kind == "list":
            return self.list(shape, key, path)
        if kind == "map":
            return self.map(shape, key, path)
        return _scalar(kind, self.form.get(key, ""), path)

    def structure(self, shape: Shape, prefix: str, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, member in shape.get("members", {}).items():
            wire = member.get("locationName", name)
            key = f"{prefix}.{wire}" if prefix else wire
            if self._present(member, key):
                out[name] = self.read(
                    member, key, f"{path}.{_lower_first(name)}" if path else _lower_first(name)
                )
        return out

    def list(self, shape: Shape, key: str, path: str) -> list[Any]:
        member = shape["member"]
        if shape.get("flattened"):
            name = member.get("locationName")
            items = ".".join([*key.split(".")[:-1], name]) if name else key
        else:
            items = f"{key}.{member.get('locationName', 'member')}"
        indices = sorted(int(i) for i in self.children.get(items, ()) if _INDEX.fullmatch(i) and int(i) > 0)
        return [self.read(member, f"{items}.{i}", f"{path}.{i}.member") for i in indices]

    def map(self, shape: Shape, key: str, path: str) -> dict[str, Any]:
        entries = key if shape.get("flattened") else f"{key}.entry"
        key_name = shape["key"].get("locationName", "key")
        value_name = shape["value"].get("locationName", "value")
        out: dict[str, Any] = {}
        indices = sorted(int(i) for i in self.children.get(entries, ()) if _INDEX.fullmatch(i))
        for i in indices:
            k = self.form.get(f"{entries}.{i}.{key_name}")
            value_key = f"{entries}.{i}.{value_name}"
            if k is not None and self._present(shape["value"], value_key):
                out[k] = self.read(shape["value"], value_key, f"{path}.value")
        return out


def _scalar(kind: str, raw: str, path: str) -> Any:
    if kind in ("integer", "long"):
        if not _INTEGER.fullmatch(raw):
            raise _invalid(raw, path, "Member must be a number")
        return int(raw)
    if kind == "boolean":
        if raw.lower() not in ("true", "false"):
            raise _invalid(raw, path, "Member must be a boolean")
        return raw.lower() == "true"
    if kind in ("float", "double"):
        try:
            return float(raw)
        except ValueError:
            raise _invalid(raw, path, "Member must be a number") from None
    if kind == "blob":
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise _invalid("***", path, "Member must be base64-encoded") from None
    return raw  # string, timestamp (as sent)


def _invalid(raw: str, path: str, constraint: str) -> IamError:
    return IamError(
        "ValidationError",
        f"1 validation error detected: Value '{raw}' at '{path}' failed to satisfy constraint: {constraint}",
    )


class _Checker:
    """Constraint checks over parsed params, collecting AWS-worded failures."""

    def __init__(self, shapes: Mapping[str, Shape], out: list[str]) -> None:
        self.shapes = shapes
        self.out = out

    def fail(self, value: Any, path: str, constraint: str) -> None:
        shown = "null" if value is None else f"'{_show(value)}'"
        self.out.append(f"Value {shown} at '{path}' failed to satisfy constraint: Member must {constraint}")

    def check(self, shape: Shape, value: Any, path: str) -> None:
        kind = shape["type"]
        # Secrets (passwords, tokens, SAML assertions) must not come back in error text or logs.
        shown = "***" if shape.get("sensitive") else value
        if kind == "structure":
            if isinstance(value, Mapping):
                self.structure(shape, value, path)
        elif kind == "list":
            if isinstance(value, list):
                self.bounds(shape, len(value), shown, path, "length")
                for i, item in enumerate(value, 1):
                    self.check(self.shapes[shape["member"]["shape"]], item, f"{path}.{i}.member")
        elif kind == "map":
            if isinstance(value, Mapping):
                self.bounds(shape, len(value), shown, path, "length")
                for k, v in value.items():
                    self.check(self.shapes[shape["key"]["shape"]], k, f"{path}.key")
                    self.check(self.shapes[shape["value"]["shape"]], v, f"{path}.value")
        elif kind == "string":
            self.string(shape, value, shown, path)
        elif kind in ("integer", "long", "float", "double"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(shown, path, "be a number")
                return
            if "min" in shape and value < shape["min"]:
                self.fail(shown, path, f"have value greater than or equal to {shape['min']}")
            if "max" in shape and value > shape["max"]:
                self.fail(shown, path, f"have value less than or equal to {shape['max']}")
        elif kind == "blob" and isinstance(value, (bytes, bytearray)):
            self.bounds(shape, len(value), "***", path, "length")

    def structure(self, shape: Shape, value: Mapping[str, Any], path: str) -> None:
        required = shape.get("required", ())
        for name, member in shape.get("members", {}).items():
            sub = f"{path}.{_lower_first(name)}" if path else _lower_first(name)
            if value.get(name) is not None:
                self.check(self.shapes[member["shape"]], value[name], sub)
            elif name in required:
                self.fail(None, sub, "not be null")

    def string(self, shape: Shape, value: Any, shown: Any, path: str) -> None:
        if not isinstance(value, str):
            self.fail(shown, path, "be a string")
            return
        self.bounds(shape, len(value), shown, path, "length")
        pattern = shape.get("pattern")
        if pattern and not _fullmatch(pattern, value):
            self.fail(shown, path, f"satisfy regular expression pattern: {pattern}")
        enum = shape.get("enum")
        if enum and value not in enum:
            self.fail(shown, path, f"satisfy enum value set: [{', '.join(enum)}]")

    def bounds(self, shape: Shape, size: int, shown: Any, path: str, what: str) -> None:
        if "min" in shape and size < shape["min"]:
            self.fail(shown, path, f"have {what} greater than or equal to {shape['min']}")
        if "max" in shape and size > shape["max"]:
            self.fail(shown, path, f"have {what} less than or equal to {shape['max']}")


def _show(value: Any) -> str:
    """Values as the Java front end prints them: lists ``[a, b]``, maps ``{k=v}``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _fullmatch(pattern: str, value: str) -> bool:
    """The model's Java pattern, with Java's meaning (see ``api.patterns``)."""
    return compile_java(pattern).fullmatch(value) is not None


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (or query string) as a dict; last value wins."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise IamError("MalformedQueryString", "The query string contains a syntax error.", 404) from exc
    return dict(pairs)
