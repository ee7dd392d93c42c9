"""The REST-JSON wire protocol, driven by botocore's service model.

Routing, input parsing, model-constraint validation and output serialization all read the
operation definitions that botocore ships, so paths, locations (uri, querystring, header,
payload), status codes and shapes are AWS's by construction. Handlers see plain dicts keyed
by the model's member names and return plain dicts of output members.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import botocore.loaders

from lamina.api.patterns import compile_java
from lamina.errors import InvalidRequestContent, UnknownOperation, ValidationError

Shape = dict[str, Any]

# Enums the service checks itself, after the front end, with its own error (AWS Lambda reports
# an unknown runtime as InvalidParameterValueException, not as a model violation).
SEMANTIC_ENUMS: dict[str, tuple[str, ...]] = {"lambda": ("Runtime",)}


@dataclass(frozen=True)
class Member:
    name: str
    shape: str
    location: str  # "uri" | "querystring" | "header" | "headers" | "statusCode" | "body" | "payload"
    wire_name: str


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    path_regex: re.Pattern[str]
    query_literals: tuple[tuple[str, str], ...]
    success_status: int
    input_shape: str | None
    output_shape: str | None
    input_members: tuple[Member, ...]
    output_members: tuple[Member, ...]
    input_payload: str | None
    output_payload: str | None
    required: frozenset[str] = field(default_factory=frozenset)


class ServiceModel:
    """One AWS service's model: shapes and operations, with a router over the operations."""

    def __init__(self, service: str, api_version: str) -> None:
        raw = botocore.loaders.Loader().load_service_model(service, "service-2", api_version)
        self.metadata: dict[str, Any] = raw["metadata"]
        self.shapes: dict[str, Shape] = raw["shapes"]
        for name in SEMANTIC_ENUMS.get(service, ()):
            self.shapes[name] = {**self.shapes[name], "x-lamina-semantic": True}
        self.operations: dict[str, Operation] = {
            name: self._compile(name, op) for name, op in raw["operations"].items()
        }
        # Operations with literal query requirements first, so they win over the bare path.
        self._routes = sorted(
            self.operations.values(), key=lambda o: (-len(o.query_literals), o.name)
        )

    def _members(self, shape_name: str | None) -> tuple[tuple[Member, ...], str | None]:
        if shape_name is None:
            return (), None
        shape = self.shapes[shape_name]
        payload = shape.get("payload")
        members = []
        for name, m in shape.get("members", {}).items():
            location = m.get("location") or ("payload" if name == payload else "body")
            members.append(Member(name, m["shape"], location, m.get("locationName", name)))
        return tuple(members), payload

    def _compile(self, name: str, op: dict[str, Any]) -> Operation:
        http = op["http"]
        uri, _, query = http["requestUri"].partition("?")
        pattern = "^" + re.sub(
            r"\\\{([A-Za-z0-9_]+)\+?\\\}", r"(?P<\1>[^/]+)", re.escape(uri)
        ) + "$"
        literals = tuple(
            (k, v) for k, _, v in (p.partition("=") for p in query.split("&") if p)
        )
        input_shape = op.get("input", {}).get("shape")
        output_shape = op.get("output", {}).get("shape")
        in_members, in_payload = self._members(input_shape)
        out_members, out_payload = self._members(output_shape)
        required = frozenset(self.shapes[input_shape].get("required", ())) if input_shape else frozenset()
        return Operation(
            name=name,
            method=http["method"],
            path_regex=re.compile(pattern),
            query_literals=literals,
            success_status=int(http.get("responseCode", 200)),
            input_shape=input_shape,
            output_shape=output_shape,
            input_members=in_members,
            output_members=out_members,
            input_payload=in_payload,
            output_payload=out_payload,
            required=required,
        )

    def route(self, method: str, path: str, query: Mapping[str, list[str]]) -> tuple[Operation, dict[str, str]]:
        """The operation for a request, and its (percent-decoded) path parameters."""
        for op in self._routes:
            if op.method != method:
                continue
            match = op.path_regex.match(path)
            if match is None:
                continue
            if any(query.get(k, [None])[0] != v for k, v in op.query_literals):
                continue
            return op, {k: unquote(v) for k, v in match.groupdict().items()}
        if len(path) > 1 and path.endswith("/"):
            return self.route(method, path.rstrip("/"), query)
        raise UnknownOperation("Unable to determine service/operation name to be authorized")

    # -- input ---------------------------------------------------------------------------

    def parse_input(
        self,
        op: Operation,
        path_params: Mapping[str, str],
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {}
        json_body: dict[str, Any] | None = None
        for m in op.input_members:
            if m.location == "uri":
                if m.wire_name in path_params:
                    params[m.name] = self._scalar(m.shape, path_params[m.wire_name], m.name)
            elif m.location == "querystring":
                values = query.get(m.wire_name)
                if values is not None:
                    if self.shapes[m.shape]["type"] == "list":
                        params[m.name] = list(values)
                    else:
                        params[m.name] = self._scalar(m.shape, values[0], m.name)
            elif m.location == "header":
                value = headers.get(m.wire_name.lower())
                if value is not None:
                    params[m.name] = self._scalar(m.shape, value, m.name)
            elif m.location == "payload":
                if self.shapes[m.shape]["type"] == "blob":
                    params[m.name] = body
                elif body:
                    params[m.name] = self._from_json(m.shape, _load_json(body))
            elif m.location == "body":
                if json_body is None:
                    json_body = _load_json(body) if body else {}
                if m.wire_name in json_body and json_body[m.wire_name] is not None:
                    params[m.name] = self._from_json(m.shape, json_body[m.wire_name])
        return params

    def _scalar(self, shape_name: str, raw: str, member: str) -> Any:
        kind = self.shapes[shape_name]["type"]
        if kind in ("integer", "long"):
            try:
                return int(raw)
            except ValueError:
                raise ValidationError(
                    f"1 validation error detected: Value '{raw}' at '{_lower_first(member)}' "
                    "failed to satisfy constraint: Member must be a number"
                ) from None
        if kind == "boolean":
            return raw.lower() == "true"
        if kind == "double":
            return float(raw)
        return raw

    def _from_json(self, shape_name: str, value: Any) -> Any:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if kind == "structure":
            if not isinstance(value, dict):
                raise InvalidRequestContent("Could not parse request body into json: expected an object")
            out = {}
            for name, m in shape.get("members", {}).items():
                key = m.get("locationName", name)
                if key in value and value[key] is not None:
                    out[name] = self._from_json(m["shape"], value[key])
            return out
        if kind == "list":
            if not isinstance(value, list):
                raise InvalidRequestContent("Could not parse request body into json: expected a list")
            return [self._from_json(shape["member"]["shape"], v) for v in value]
        if kind == "map":
            if not isinstance(value, dict):
                raise InvalidRequestContent("Could not parse request body into json: expected a map")
            return {str(k): self._from_json(shape["value"]["shape"], v) for k, v in value.items()}
        if kind == "blob":
            if not isinstance(value, str):
                raise InvalidRequestContent("Could not parse request body into json: expected base64 text")
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise InvalidRequestContent(
                    "Could not parse request body into json: invalid base64 in a blob member"
                ) from None
        if kind in ("integer", "long") and isinstance(value, bool):
            raise InvalidRequestContent("Could not parse request body into json: expected a number")
        return value

    # -- validation ----------------------------------------------------------------------

    def validate(self, op: Operation, params: Mapping[str, Any]) -> None:
        """AWS's model-constraint check: all failures, counted, in one ValidationException."""
        if op.input_shape is None:
            return
        failures: list[str] = []
        self._check(self.shapes[op.input_shape], params, "", failures, top=True)
        if failures:
            count = len(failures)
            noun = "error" if count == 1 else "errors"
            raise ValidationError(f"{count} validation {noun} detected: " + "; ".join(failures))

    def _check(self, shape: Shape, value: Any, path: str, out: list[str], top: bool = False) -> None:
        kind = shape["type"]
        if kind == "structure":
            if not isinstance(value, Mapping):
                return
            for name, m in shape.get("members", {}).items():
                sub = f"{path}.{_lower_first(name)}" if path else _lower_first(name)
                if name in value:
                    self._check(self.shapes[m["shape"]], value[name], sub, out)
                elif name in shape.get("required", ()):
                    out.append(f"Value null at '{sub}' failed to satisfy constraint: Member must not be null")
            return
        if kind == "list":
            if isinstance(value, list):
                self._bounds(shape, len(value), value, path, out, "length")
                for i, item in enumerate(value):
                    self._check(self.shapes[shape["member"]["shape"]], item, f"{path}.{i + 1}.member", out)
            return
        if kind == "map":
            if isinstance(value, Mapping):
                self._bounds(shape, len(value), value, path, out, "length")
                key_shape = self.shapes[shape["key"]["shape"]]
                val_shape = self.shapes[shape["value"]["shape"]]
                for k, v in value.items():
                    self._check(key_shape, k, f"{path}.key", out)
                    self._check(val_shape, v, f"{path}.value", out)
            return
        if kind == "string":
            if not isinstance(value, str):
                out.append(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must be a string")
                return
            self._bounds(shape, len(value), value, path, out, "length")
            pattern = shape.get("pattern")
            if pattern and not _fullmatch(pattern, value):
                out.append(
                    f"Value '{value}' at '{path}' failed to satisfy constraint: "
                    f"Member must satisfy regular expression pattern: {pattern}"
                )
            enum = shape.get("enum")
            if enum and value not in enum and not shape.get("x-lamina-semantic"):
                out.append(
                    f"Value '{value}' at '{path}' failed to satisfy constraint: "
                    f"Member must satisfy enum value set: [{', '.join(enum)}]"
                )
            return
        if kind in ("integer", "long", "double"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                out.append(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must be a number")
                return
            if "min" in shape and value < shape["min"]:
                out.append(
                    f"Value '{value}' at '{path}' failed to satisfy constraint: "
                    f"Member must have value greater than or equal to {shape['min']}"
                )
            if "max" in shape and value > shape["max"]:
                out.append(
                    f"Value '{value}' at '{path}' failed to satisfy constraint: "
                    f"Member must have value less than or equal to {shape['max']}"
                )
            return
        if kind == "blob" and isinstance(value, (bytes, bytearray)):
            self._bounds(shape, len(value), "***", path, out, "length")

    @staticmethod
    def _bounds(shape: Shape, size: int, value: Any, path: str, out: list[str], what: str) -> None:
        shown = value if isinstance(value, str) else "***" if isinstance(value, bytes) else value
        if "min" in shape and size < shape["min"]:
            out.append(
                f"Value '{shown}' at '{path}' failed to satisfy constraint: "
                f"Member must have {what} greater than or equal to {shape['min']}"
            )
        if "max" in shape and size > shape["max"]:
            out.append(
                f"Value '{shown}' at '{path}' failed to satisfy constraint: "
                f"Member must have {what} less than or equal to {shape['max']}"
            )

    # -- output --------------------------------------------------------------------------

    def serialize_output(
        self, op: Operation, result: Mapping[str, Any] | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, str]:
        """(status, headers, body, content type) for an operation's result dict."""
        status = op.success_status
        headers: list[tuple[bytes, bytes]] = []
        if not result:
            if op.output_shape is None or op.output_payload is not None:
                return status, headers, b"", "application/json"
            return status, headers, b"{}", "application/json"
        doc: dict[str, Any] = {}
        body: bytes | None = None
        content_type = "application/json"
        for m in op.output_members:
            if m.name not in result or result[m.name] is None:
                continue
            value = result[m.name]
            if m.location == "statusCode":
                status = int(value)
            elif m.location == "header":
                headers.append((m.wire_name.encode(), str(value).encode()))
            elif m.location == "payload":
                if isinstance(value, (bytes, bytearray, memoryview)):
                    body = bytes(value)
                    content_type = "application/octet-stream"
                else:
                    body = _dumps(self._to_json(m.shape, value))
            else:
                doc[m.wire_name] = self._to_json(m.shape, value)
        if status == 204:  # no content means no body: a stray one would poison keep-alive
            return status, headers, b"", content_type
        if body is None:
            body = _dumps(doc)
        return status, headers, body, content_type

    def _to_json(self, shape_name: str, value: Any) -> Any:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if kind == "structure":
            return {
                m.get("locationName", name): self._to_json(m["shape"], value[name])
                for name, m in shape.get("members", {}).items()
                if name in value and value[name] is not None
            }
        if kind == "list":
            return [self._to_json(shape["member"]["shape"], v) for v in value]
        if kind == "map":
            return {k: self._to_json(shape["value"]["shape"], v) for k, v in value.items()}
        if kind == "blob":
            return base64.b64encode(value).decode()
        return value


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRequestContent("Could not parse request body into json") from None


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _fullmatch(pattern: str, value: str) -> bool:
    """The model's Java pattern, with Java's meaning (see ``api.patterns``)."""
    return compile_java(pattern).fullmatch(value) is not None


def parse_query(raw: bytes | str) -> dict[str, list[str]]:
    """Query parameters, percent-decoded, keeping blank values (AWS sends ``Qualifier=``)."""
    from urllib.parse import parse_qs

    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    return parse_qs(text, keep_blank_values=True)


def header_map(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-cased header names to values (repeated headers joined with ',')."""
    out: dict[str, str] = {}
    for k, v in headers:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        out[name] = f"{out[name]},{value}" if name in out else value
    return out
