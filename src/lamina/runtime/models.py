"""What crosses the Runtime API seam: one invocation in, one result out.

These are the worker's view of an invoke; wire shapes (headers, JSON error bodies) stay in
``api.py`` and the in-sandbox bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

from lamina.errors import InternalError

# Error type the platform reports when a runtime posts a body over the size cap. The env must be
# destroyed afterwards: it has shown it will push more than the API accepts.
RESPONSE_SIZE_TOO_LARGE = "Function.ResponseSizeTooLarge"


@dataclass(frozen=True)
class Invocation:
    """One event handed to the runtime by GET /runtime/invocation/next."""

    request_id: str
    payload: bytes
    deadline_ms: int  # epoch ms
    function_arn: str
    trace_id: str | None = None
    client_context: str | None = None  # base64 JSON as in X-Amz-Client-Context
    cognito_identity: str | None = None


@dataclass(frozen=True)
class InvocationResult:
    """How the runtime ended an invocation.

    ``ok`` is True for /response and False for /error (or an oversize body, an init error
    posted mid-invoke). ``error_type`` is the Lambda-Runtime-Function-Error-Type header, or
    ``RESPONSE_SIZE_TOO_LARGE`` when the env misbehaved and must be destroyed.
    """

    request_id: str
    ok: bool
    body: bytes
    error_type: str | None

    @property
    def env_misbehaved(self) -> bool:
        """True when the env must not be reused (it posted more than the API accepts)."""
        return self.error_type == RESPONSE_SIZE_TOO_LARGE


class InitError(InternalError):
    """The runtime posted /runtime/init/error before asking for its first event.

    ``error_type`` is the Lambda-Runtime-Function-Error-Type header (``Runtime.ImportModuleError``
    and friends); ``body`` the runtime's JSON error document, which the invoke path returns to
    the caller as the function error.
    """

    def __init__(self, error_type: str | None, body: bytes) -> None:
        super().__init__(f"runtime init failed: {error_type or 'unknown error'}")
        self.error_type = error_type
        self.body = body


class ChannelClosed(InternalError):
    """The env's Runtime API channel was closed while someone was still waiting on it."""
