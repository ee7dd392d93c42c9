"""Lamina's one error hierarchy.

    LaminaError                      anything Lamina raises on purpose
    ├── ApiError                     reaches the client as an AWS error (code + HTTP status)
    │   ├── AuthError                403, SigV4 and IAM failures
    │   │   ├── MissingAuthenticationToken
    │   │   ├── IncompleteSignature
    │   │   ├── UnrecognizedClient
    │   │   ├── InvalidSignature
    │   │   ├── SignatureExpired     (an InvalidSignature with AWS's "Signature expired" text)
    │   │   ├── ExpiredToken         temporary credentials past their expiry
    │   │   └── AccessDenied
    │   ├── ResourceNotFound         404
    │   ├── InvalidParameterValue    400
    │   ├── ValidationError          400 (botocore model constraints: "1 validation error detected")
    │   ├── ResourceConflict         409
    │   ├── ResourceInUse            400
    │   ├── PreconditionFailed       412
    │   ├── CodeStorageExceeded      400
    │   ├── RequestTooLarge          413
    │   ├── InvalidRequestContent    400
    │   ├── UnsupportedMediaType     415
    │   ├── TooManyRequests          429
    │   ├── UnknownOperation         404 (no route for the method and path)
    │   ├── NotImplementedOperation  501 (in AWS's model, not in Lamina yet)
    │   ├── IamError                 IAM/STS (query protocol) errors by AWS code: NoSuchEntity, ...
    │   └── ServiceError             500
    └── InternalError                never shown to clients verbatim
        ├── StoreError               the metadata store failed
        ├── IntegrityError           authenticated decryption failed: tampered or misbound data
        ├── ArchiveError             an uploaded zip is unsafe or corrupt (the API maps it to 400)
        └── SandboxError             a sandbox setup step failed (names the step, path and errno)

Backend errors (sqlite3, OSError, cryptography) are translated into this tree at exactly one
seam per backend with ``raise ... from exc``. A function's own failure is a result, not an
exception.
"""

from __future__ import annotations

from typing import Any


class LaminaError(Exception):
    """Base of every error Lamina raises on purpose."""


class ApiError(LaminaError):
    """An error the API reports to the client in AWS's shape.

    ``code`` is the AWS error code (``x-amzn-ErrorType``), ``status`` the HTTP status,
    ``error_type`` AWS's ``Type`` field (``User`` or ``Service``), and ``fields`` extra
    members of the JSON body (``Reason`` for throttles, for example).
    """

    code: str = "ServiceException"
    status: int = 500
    error_type: str = "User"
    # Lambda's own errors say "Message"; the front end's (validation, auth, throttling) "message".
    message_key: str = "Message"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def body(self) -> dict[str, Any]:
        """The JSON error body as AWS Lambda writes it."""
        return {"Type": self.error_type, self.message_key: self.message, **self.fields}


class AuthError(ApiError):
    status = 403
    message_key = "message"


class MissingAuthenticationToken(AuthError):
    code = "MissingAuthenticationTokenException"


class IncompleteSignature(AuthError):
    code = "IncompleteSignatureException"


class UnrecognizedClient(AuthError):
    code = "UnrecognizedClientException"


class InvalidSignature(AuthError):
    code = "InvalidSignatureException"


class SignatureExpired(InvalidSignature):
    """AWS reports an expired or future-dated signature as InvalidSignatureException."""


class ExpiredToken(AuthError):
    code = "ExpiredTokenException"


class AccessDenied(AuthError):
    code = "AccessDeniedException"


class ResourceNotFound(ApiError):
    code = "ResourceNotFoundException"
    status = 404


class InvalidParameterValue(ApiError):
    code = "InvalidParameterValueException"
    status = 400


class ValidationError(ApiError):
    code = "ValidationException"
    status = 400
    message_key = "message"


class ResourceConflict(ApiError):
    code = "ResourceConflictException"
    status = 409


class ResourceInUse(ApiError):
    code = "ResourceInUseException"
    status = 400


class PreconditionFailed(ApiError):
    code = "PreconditionFailedException"
    status = 412


class CodeStorageExceeded(ApiError):
    code = "CodeStorageExceededException"
    status = 400


class RequestTooLarge(ApiError):
    code = "RequestTooLargeException"
    status = 413


class InvalidRequestContent(ApiError):
    code = "InvalidRequestContentException"
    status = 400


class UnsupportedMediaType(ApiError):
    code = "UnsupportedMediaTypeException"
    status = 415


class TooManyRequests(ApiError):
    code = "TooManyRequestsException"
    status = 429
    message_key = "message"


class UnknownOperation(ApiError):
    code = "UnknownOperationException"
    status = 404
    message_key = "message"


class NotImplementedOperation(ApiError):
    """An operation of the AWS model that Lamina does not implement (yet)."""

    code = "NotImplementedException"
    status = 501
    message_key = "message"


class IamError(ApiError):
    """An error of the IAM or STS APIs (AWS's query protocol, XML body), by AWS code.

    ``sender`` is the XML ``Type`` (Sender for the caller's mistakes, Receiver for ours).
    The same codes reach Lambda callers only through their own translations.
    """

    def __init__(self, code: str, message: str, status: int = 400, *, sender: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.error_type = "Sender" if sender else "Receiver"


class ServiceError(ApiError):
    code = "ServiceException"
    status = 500
    error_type = "Service"


class InternalError(LaminaError):
    """A failure inside Lamina; the API reports it as a ServiceException without details."""


class StoreError(InternalError):
    pass


class IntegrityError(InternalError):
    """Authenticated decryption failed: the data was tampered with or bound to another identity."""


class ArchiveError(InternalError):
    """An uploaded archive is unsafe, corrupt or over a limit. ``reason`` is client-safe text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SandboxError(InternalError):
    """A sandbox setup or teardown step failed; the message names the step, path and errno."""

    def __init__(self, step: str, detail: str, errno: int | None = None) -> None:
        super().__init__(f"{step}: {detail}" + (f" (errno {errno})" if errno is not None else ""))
        self.step = step
        self.detail = detail
        self.errno = errno
