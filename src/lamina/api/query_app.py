"""The edge of AWS's query protocol (IAM, STS): form parameters in, XML out.

``App`` routes here by the credential scope's service. Errors are answered here in the
service's XML error shape rather than bubbling up to ``App``'s JSON one, because query
clients (botocore's IAM and STS parsers) read only XML.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from lamina.api import sigv4
from lamina.api.guard import Guard
from lamina.api.http import (
    Receive,
    RequestContext,
    Scope,
    Send,
    conditions,
    endpoint,
    http_request,
    read_body,
    send_response,
)
from lamina.api.query import QueryService, parse_form
from lamina.errors import ApiError, IamError, InvalidSignature

log = logging.getLogger(__name__)


async def handle_query(
    service: QueryService, service_name: str, scope: Scope, receive: Receive, send: Send,
    request_id: str, headers: Mapping[str, str], *, verifier: sigv4.Verifier, region: str, guard: Guard | None,
) -> None:
    """AWS's query protocol (IAM, STS): Action and parameters form-encoded, XML answers."""
    model = service.model
    try:
        raw_query: bytes = scope.get("query_string", b"")
        body = await read_query_body(receive, headers, service.body_limit)
        identity = verifier.verify(http_request(scope, body))
        # IAM is global: AWS's own endpoint is signed for us-east-1; a client given Lamina's
        # endpoint signs with its configured region, which must be Lamina's like for Lambda.
        if identity.region not in (region, "us-east-1"):
            raise InvalidSignature("Credential should be scoped to a valid region. ")
        form = parse_form(body) if scope["method"] == "POST" else parse_form(raw_query)
        name, params = model.parse(form)
        handler = service.handlers.get(name)
        if handler is None:
            raise IamError("InvalidAction", f"Lamina does not implement {name} yet.", 400)
        model.validate(name, params)
        context = conditions(scope)
        if guard is not None:
            guard.check(service_name, identity, name, params, context)
        ctx = RequestContext(request_id, identity, endpoint(scope, headers), headers, context)
        result = await handler(ctx, params)
        await send_response(send, 200, model.serialize(name, result, request_id), "text/xml", request_id)
    except ApiError as exc:
        status = exc.status if exc.status < 500 else 500
        await send_response(send, status, model.error(exc, request_id), "text/xml", request_id)
    except Exception:  # a bug: still answered in the service's own shape, and logged
        log.exception("request %s failed", request_id)
        failure = IamError("InternalFailure", "An internal error occurred.", 500, sender=False)
        await send_response(send, 500, model.error(failure, request_id), "text/xml", request_id)


async def read_query_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The form body, refused with IAM's 413 past ``limit`` bytes."""

    def too_large() -> ApiError:
        return IamError("RequestEntityTooLarge", f"Request must be smaller than {limit} bytes", 413)

    return await read_body(receive, headers, limit, too_large)
