"""The XML side of AWS's query protocol: success documents by output shape, and error documents.

The writer follows the model exactly as botocore's query parser reads it: element names are a
member's ``locationName`` or its name; lists are ``<Name><member>..</member></Name>`` (repeated
``<Name>`` when flattened); maps ``<entry><key/><value/></entry>``; booleans ``true``/``false``;
timestamps ``YYYY-MM-DDTHH:MM:SSZ`` as IAM writes them. Text is escaped here and nowhere else.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lamina.errors import (
    AccessDenied,
    ApiError,
    IamError,
    IncompleteSignature,
    InternalError,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
    ValidationError,
)

if TYPE_CHECKING:
    from lamina.api.query import QueryOperation

Shape = dict[str, Any]

# XML 1.0 cannot carry these at all, not even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})

# Lamina's protocol-neutral errors (raised before the service is known, e.g. by SigV4) under the
# codes the query services use for the same failures.
_QUERY_CODES: tuple[tuple[type[ApiError], str], ...] = (
    (MissingAuthenticationToken, "MissingAuthenticationToken"),
    (IncompleteSignature, "IncompleteSignature"),
    (UnrecognizedClient, "InvalidClientTokenId"),
    (InvalidSignature, "SignatureDoesNotMatch"),
    (AccessDenied, "AccessDenied"),
    (ValidationError, "ValidationError"),
)


def text(value: str) -> str:
    """Element text: markup escaped, CR kept as a reference (parsers fold a raw one into LF)."""
    return _NOT_XML.sub("\ufffd", value).translate(_ESCAPES)


def query_code(exc: ApiError) -> str:
    """The query-protocol error code for any API error."""
    if isinstance(exc, IamError):
        return exc.code
    for cls, code in _QUERY_CODES:
        if isinstance(exc, cls):
            return code
    if exc.status >= 500:
        return "InternalFailure"
    return exc.code.removesuffix("Exception")


def error(xmlns: str, exc: ApiError, request_id: str) -> bytes:
    """``<ErrorResponse>``: Type is Sender for the caller's mistakes, Receiver for ours."""
    kind = exc.error_type if isinstance(exc, IamError) else "Receiver" if exc.status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{xmlns}"><Error><Type>{kind}</Type>'
        f"<Code>{text(query_code(exc))}</Code><Message>{text(exc.message)}</Message></Error>"
        f"<RequestId>{text(request_id)}</RequestId></ErrorResponse>"
    ).encode()


def response(
    shapes: Mapping[str, Shape],
    xmlns: str,
    op: QueryOperation,
    result: Mapping[str, Any] | None,
    request_id: str,
) -> bytes:
    """``<{Op}Response>`` with the ``<{Op}Result>`` wrapper (when the model has an output)."""
    parts = [f'<{op.name}Response xmlns="{xmlns}">']
    if op.output_shape is not None:
        wrapper = op.result_wrapper or f"{op.name}Result"
        parts.append(f"<{wrapper}>")
        _Writer(shapes, parts).members(shapes[op.output_shape], result or {})
        parts.append(f"</{wrapper}>")
    parts.append(
        f"<ResponseMetadata><RequestId>{text(request_id)}</RequestId></ResponseMetadata></{op.name}Response>"
    )
    return "".join(parts).encode()


class _Writer:
    def __init__(self, shapes: Mapping[str, Shape], out: list[str]) -> None:
        self.shapes = shapes
        self.out = out

    def members(self, shape: Shape, value: Mapping[str, Any]) -> None:
        for name, member in shape.get("members", {}).items():
            if value.get(name) is not None:
                self.element(member.get("locationName", name), member["shape"], value[name])

    def element(self, tag: str, shape_name: str, value: Any) -> None:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if kind == "list":
            member = shape["member"]
            if shape.get("flattened"):
                for item in value:
                    self.element(member.get("locationName", tag), member["shape"], item)
                return
            self.out.append(f"<{tag}>")
            for item in value:
                self.element(member.get("locationName", "member"), member["shape"], item)
            self.out.append(f"</{tag}>")
            return
        if kind == "map":
            self.map(tag, shape, value)
            return
        self.out.append(f"<{tag}>")
        if kind == "structure":
            self.members(shape, value)
        else:
            self.out.append(text(_scalar(kind, value)))
        self.out.append(f"</{tag}>")

    def map(self, tag: str, shape: Shape, value: Mapping[str, Any]) -> None:
        key_tag = shape["key"].get("locationName", "key")
        value_tag = shape["value"].get("locationName", "value")
        flattened = shape.get("flattened", False)
        if not flattened:
            self.out.append(f"<{tag}>")
        for k, v in value.items():
            self.out.append(f"<{tag}>" if flattened else "<entry>")
            self.element(key_tag, shape["key"]["shape"], k)
            self.element(value_tag, shape["value"]["shape"], v)
            self.out.append(f"</{tag}>" if flattened else "</entry>")
        if not flattened:
            self.out.append(f"</{tag}>")


def _scalar(kind: str, value: Any) -> str:
    if kind == "boolean":
        return "true" if value else "false"
    if kind in ("integer", "long"):
        return str(int(value))
    if kind in ("float", "double"):
        return repr(float(value))
    if kind == "timestamp":
        return timestamp(value)
    if kind == "blob":
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def timestamp(value: Any) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` from an aware or UTC-naive datetime, an ISO string or epoch seconds."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InternalError(f"not an ISO-8601 timestamp: {value!r}") from exc
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = datetime.fromtimestamp(value, timezone.utc)
    if not isinstance(value, datetime):
        raise InternalError(f"not a timestamp: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return str(value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
