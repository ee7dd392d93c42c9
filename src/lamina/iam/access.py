"""One permission a request needs: an IAM action on a resource (what the authorizer decides)."""

from __future__ import annotations

from dataclasses import dataclass

from lamina.control.arns import FunctionRef


@dataclass(frozen=True)
class Access:
    """One permission a request needs: ``action`` on ``resource``.

    ``function`` names the Lambda function (and qualifier) whose resource-based policy also
    applies; ``role`` the IAM role whose trust policy does (sts:AssumeRole).
    """

    action: str
    resource: str
    function: FunctionRef | None = None
    role: str | None = None
