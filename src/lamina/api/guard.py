"""Every signed API call passes here between parsing and its handler: is the caller allowed?

The service decides how a refusal reads: Lambda and CloudWatch Logs answer 403
``AccessDeniedException``, IAM and STS 403 ``AccessDenied`` — each with AWS's text
("User: ARN is not authorized to perform: ACTION on resource: ARN because ...").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from lamina.api import actions
from lamina.api.sigv4 import Identity
from lamina.control.arns import FunctionRef
from lamina.errors import AccessDenied, IamError
from lamina.iam.access import Access
from lamina.iam.authorizer import Authorizer


class Guard:
    def __init__(
        self, authorizer: Authorizer, region: str, account: str,
        resolve: Callable[[str, str | None], FunctionRef],
        entity_arn: Callable[[str], str] = lambda arn: arn,
    ) -> None:
        # A request names a role or user without its path; policies name it by its full ARN.
        self.entity_arn = entity_arn
        self.authorizer = authorizer
        self.region = region
        self.account = account
        self.resolve = resolve

    def check(
        self, service: str, identity: Identity, operation: str, params: Mapping[str, Any],
        context: Mapping[str, str] | None = None,
    ) -> None:
        principal = identity.principal_arn
        if self.authorizer.is_admin(principal):
            return
        if service == "lambda":
            needed = actions.lambda_access(operation, params, self.region, self.account, self.resolve)
        elif service == "logs":
            needed = actions.logs_access(operation, params, self.region, self.account)
        elif service == "iam":
            if isinstance(params.get("PolicyArn"), str):
                context = {**(context or {}), "iam:PolicyARN": params["PolicyArn"]}
            needed = [
                dataclasses.replace(a, resource=self.entity_arn(a.resource))
                for a in actions.iam_access(operation, params, self.account, principal)
            ]
        elif service == "sts":
            context = {**(context or {}), **actions.sts_conditions(params)}
            needed = actions.sts_access(operation, params)
        else:
            needed = [Access(f"{service}:{operation}", "*")]
        denial = self.authorizer.check(principal, needed, context)
        if denial is None:
            return
        if service == "sts":
            raise IamError("AccessDenied", denial.brief_message, 403)
        if service == "iam":
            raise IamError("AccessDenied", denial.message, 403)
        raise AccessDenied(denial.message)
