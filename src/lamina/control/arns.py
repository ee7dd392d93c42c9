"""Lambda ARNs: building them, and resolving what a client names a function by.

A client may name a function by its name (``my-fn``), a name with a qualifier (``my-fn:prod``),
a partial ARN (``123456789012:function:my-fn[:qual]``) or a full ARN, and may pass a separate
``Qualifier`` as well. :func:`parse_function_ref` turns all of those into one
:class:`FunctionRef`, with AWS's errors for the ways they can disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lamina.control import validation
from lamina.errors import AccessDenied, InvalidParameterValue, ResourceNotFound, ValidationError

LATEST = "$LATEST"
PARTITION = "aws"

_REGION = r"(?:eusc-)?[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d"
# The model's FunctionName pattern with named groups; NamespacedFunctionName adds '.' in
# names and the $LATEST.PUBLISHED qualifier.
_FUNCTION_REF = re.compile(
    rf"(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?(?:(?P<region>{_REGION}):)?(?:(?P<account>\d{{12}}):)?"
    r"(?:function:)?(?P<name>[a-zA-Z0-9-_.]+)(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?"
    r"|[a-zA-Z0-9-_]+))?",
    re.ASCII,
)
_LAYER_VERSION_ARN = re.compile(
    rf"arn:(?:aws[a-zA-Z-]*)?:lambda:(?P<region>{_REGION}):(?P<account>\d{{12}}):layer:"
    r"(?P<name>[a-zA-Z0-9-_]+):(?P<version>[0-9]+)",
    re.ASCII,
)


@dataclass(frozen=True)
class FunctionRef:
    """A function as a request names it: ``qualifier`` is None for the unqualified function."""

    name: str
    qualifier: str | None = None


@dataclass(frozen=True)
class LayerVersionRef:
    region: str
    account: str
    name: str
    version: int


def function_arn(region: str, account: str, name: str, qualifier: str | None = None) -> str:
    arn = f"arn:{PARTITION}:lambda:{region}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def layer_arn(region: str, account: str, name: str) -> str:
    return f"arn:{PARTITION}:lambda:{region}:{account}:layer:{name}"


def layer_version_arn(region: str, account: str, name: str, version: int) -> str:
    return f"{layer_arn(region, account, name)}:{version}"


def is_latest(qualifier: str | None) -> bool:
    return qualifier == LATEST


def is_version(qualifier: str | None) -> bool:
    """True for ``$LATEST`` and published version numbers; false for aliases and None."""
    if qualifier is None:
        return False
    return qualifier == LATEST or (qualifier.isascii() and qualifier.isdigit())


def parse_function_ref(
    ref: str,
    qualifier: str | None,
    *,
    region: str,
    account: str,
    namespaced: bool = False,
    caller: str | None = None,
    action: str | None = None,
) -> FunctionRef:
    """Resolve a FunctionName (+ Qualifier) of a request served in ``region`` for ``account``.

    Errors, in AWS's order: the model constraints of both members together
    (ValidationException); an ARN of another account (AccessDeniedException; the IAM-style
    text when ``caller`` and ``action`` are known); an ARN of another region
    (ResourceNotFoundException); a qualifier in the name that differs from ``qualifier``
    (InvalidParameterValueException). An empty ``qualifier`` counts as none.
    """
    qualifier = qualifier or None
    checks = validation.ConstraintCollector()
    validation.check_function_name(checks, ref, namespaced=namespaced)
    validation.check_qualifier(checks, qualifier)
    checks.raise_if_any()
    match = _FUNCTION_REF.fullmatch(ref)
    if match is None or (not namespaced and "." in match["name"]):
        # Unreachable after the pattern check; kept so a drift between the two patterns fails loud.
        raise ValidationError(f"1 validation error detected: Value '{ref}' at 'functionName' "
                              "failed to satisfy constraint: Member must satisfy regular "
                              f"expression pattern: {validation.FUNCTION_NAME.pattern}")
    name, arn_qualifier = match["name"], match["qualifier"]
    ref_account, ref_region = match["account"], match["region"]
    if ref_account is not None and ref_account != account:
        arn = function_arn(ref_region or region, ref_account, name, arn_qualifier)
        if caller and action:
            raise AccessDenied(
                f"User: {caller} is not authorized to perform: {action} on resource: {arn}"
            )
        raise AccessDenied(f"Not authorized to access {arn}: it belongs to another account.")
    if ref_region is not None and ref_region != region:
        raise ResourceNotFound(
            f"Functions from '{ref_region}' are not reachable in this region ('{region}')"
        )
    if arn_qualifier is not None and qualifier is not None and arn_qualifier != qualifier:
        raise InvalidParameterValue(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    return FunctionRef(name, arn_qualifier or qualifier)


def parse_layer_version_arn(arn: str) -> LayerVersionRef | None:
    """The parts of a layer version ARN, or None when ``arn`` is not one."""
    match = _LAYER_VERSION_ARN.fullmatch(arn)
    if match is None:
        return None
    return LayerVersionRef(match["region"], match["account"], match["name"], int(match["version"]))
