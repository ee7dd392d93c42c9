"""Assembles identity and access: IAM/STS APIs, credentials, policies and their enforcement.

Part of the server assembly (``lamina.server``), kept apart so that file stays about wiring
the invoke path. On every start the documented default execution role exists:
``arn:aws:iam::<account>:role/lambda-role``, trusted by ``lambda.amazonaws.com``, allowed to
write its logs (AWS's AWSLambdaBasicExecutionRole) — a quick start needs no IAM calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from lamina.api.guard import Guard
from lamina.api.iam_api import IamHandlers
from lamina.api.keys import AccessKeys
from lamina.api.query import QueryModel, QueryService
from lamina.api.sts_api import StsHandlers
from lamina.control import arns
from lamina.control.arns import FunctionRef
from lamina.control.functions import Functions
from lamina.control.model import LATEST
from lamina.control.permissions import Permissions
from lamina.errors import InvalidParameterValue
from lamina.iam.access import Access
from lamina.iam.authorizer import Authorizer
from lamina.iam.credentials import Credentials, session_arn
from lamina.iam.directory import Directory, parse_trust_policy
from lamina.iam.policy import Policy
from lamina.settings import Settings
from lamina.store.metadata import MetadataStore
from lamina.worker.credentials import IssuedCredentials

DEFAULT_ROLE = "lambda-role"
LAMBDA_SERVICE = "lambda.amazonaws.com"
BASIC_EXECUTION_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "*",
    }],
})  # fmt: skip
ROLE_NOT_ASSUMABLE = "The role defined for the function cannot be assumed by Lambda."


@dataclass(frozen=True)
class LambdaRoleIssuer:
    """Environment credentials (worker.credentials.CredentialIssuer), only for a role Lambda
    may assume at the time: a role deleted, or no longer trusting Lambda, after the function
    was configured gets no new credentials — the cold start fails with AWS's text."""

    credentials: Credentials
    check: Callable[[str], None]

    def issue(self, role_arn: str, session_name: str) -> IssuedCredentials:
        self.check(role_arn)
        return self.credentials.issue(role_arn, session_name)

    def refresh(self, access_key_id: str) -> None:
        self.credentials.refresh(access_key_id)

    def revoke(self, access_key_id: str) -> None:
        self.credentials.revoke(access_key_id)


@dataclass
class IdentityPlatform:
    directory: Directory
    credentials: Credentials
    permissions: Permissions
    authorizer: Authorizer
    guard: Guard
    access_keys: AccessKeys
    query_services: dict[str, QueryService]
    issuer: LambdaRoleIssuer  # environment credentials for the worker
    # For the async poller: may the function that produced a record (qualified ARN) invoke
    # the destination? Raises InvalidParameterValue when its role may not.
    authorize_delivery: Callable[[str, str], None]


def build_identity(
    settings: Settings, store: MetadataStore, functions: Functions, admins: frozenset[str], presign_key_id: str,
    admin_key_id: str,
) -> IdentityPlatform:
    account = settings.account_id
    directory = Directory(store, account)
    directory.protected_keys = frozenset({admin_key_id})
    directory.ensure_default_role(DEFAULT_ROLE, LAMBDA_SERVICE, "lamina-basic-execution", BASIC_EXECUTION_POLICY)
    credentials = Credentials(store, account)
    credentials.sweep()  # expired AssumeRole sessions of earlier runs
    directory.on_role_deleted.append(credentials.revoke_sessions)
    permissions = Permissions(functions)

    trusted: dict[str, bool] = {}  # role ARN -> Lambda may assume it; valid for one generation
    seen = [store.generation]

    def role_check(role_arn: str) -> None:
        """Also runs on every cold start (LambdaRoleIssuer): answered from memory until the
        metadata store changes, so a cold start reads no database for it."""
        if seen[0] != store.generation:
            trusted.clear()
            seen[0] = store.generation
        if role_arn not in trusted:
            trusted[role_arn] = directory.role_trusts(role_arn, LAMBDA_SERVICE)
        if not trusted[role_arn]:
            raise InvalidParameterValue(ROLE_NOT_ASSUMABLE)

    functions.role_check = role_check

    def function_policy(ref: FunctionRef) -> Policy | None:
        return permissions.resource_policy(ref.name, ref.qualifier)

    def trust_policy(role_arn: str) -> Policy | None:
        role = directory.role_by_arn(role_arn)
        return parse_trust_policy(role.assume_role_policy) if role is not None else None

    authorizer = Authorizer(
        store, account, admins, directory.policies_for, function_policy, trust_policy,
        clock=lambda: datetime.now(timezone.utc), session_role=directory.session_role_arn,
    )
    guard = Guard(authorizer, settings.region, account, functions.ref, directory.entity_arn)

    def delivery_check(role_arn: str, source: str, destination_arn: str) -> None:
        """Destinations and dead-letter functions are invoked as the source's execution role."""
        ref = functions.ref(destination_arn)
        qualifier = None if ref.qualifier == LATEST else ref.qualifier
        resource = arns.function_arn(settings.region, account, ref.name, qualifier)
        access = Access("lambda:InvokeFunction", resource, FunctionRef(ref.name, qualifier))
        if authorizer.check(session_arn(role_arn, source), [access]) is not None:
            raise InvalidParameterValue(
                f"The function execution role does not have permissions to call InvokeFunction on {destination_arn}"
            )

    functions.delivery_check = delivery_check

    def authorize_delivery(source_arn: str, destination_arn: str) -> None:
        ref = functions.ref(source_arn)
        delivery_check(functions.resolve(ref.name, ref.qualifier).version.role, ref.name, destination_arn)

    access_keys = AccessKeys(store, exclude=presign_key_id, sessions=credentials.live)
    query_services = {
        "iam": QueryService(QueryModel.load("iam", "2010-05-08"), IamHandlers(directory).handlers()),
        "sts": QueryService(QueryModel.load("sts", "2011-06-15"), StsHandlers(directory, credentials).handlers()),
    }
    return IdentityPlatform(
        directory, credentials, permissions, authorizer, guard, access_keys, query_services,
        LambdaRoleIssuer(credentials, role_check), authorize_delivery,
    )

