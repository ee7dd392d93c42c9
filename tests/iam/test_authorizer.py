"""Allow/deny matrix of the authorizer: identity policies, function and trust policies, admin."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from lamina.control.arns import FunctionRef
from lamina.iam.access import Access
from lamina.iam.authorizer import Authorizer
from lamina.iam.policy import Policy, parse_policy

ACCOUNT = "000000000000"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/worker/fn"
FN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function"


class Store:
    generation = 0


def doc(*statements: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ALLOW_INVOKE_F = doc({"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": f"{FN}:f"})
ALLOW_ALL = doc({"Effect": "Allow", "Action": "*", "Resource": "*"})
DENY_G = doc({"Effect": "Deny", "Action": "lambda:*", "Resource": [f"{FN}:g", f"{FN}:g:*"]})


def make(
    identity: dict[str, Sequence[str]], function_policies: dict[FunctionRef, str] | None = None,
    store: Store | None = None,
) -> Authorizer:
    def function_policy(ref: FunctionRef) -> Policy | None:
        text = (function_policies or {}).get(ref)
        return parse_policy(text, kind="resource") if text else None

    return Authorizer(store or Store(), ACCOUNT, frozenset({ROOT}), lambda p: identity.get(p, ()), function_policy)  # type: ignore[arg-type]


def invoke(name: str, qualifier: str | None = None) -> Access:
    resource = f"{FN}:{name}:{qualifier}" if qualifier else f"{FN}:{name}"
    return Access("lambda:InvokeFunction", resource, FunctionRef(name, qualifier))


@pytest.mark.parametrize(
    ("principal", "access", "allowed"),
    [
        (ROOT, invoke("g"), True),                       # the administrator is never evaluated
        (ALICE, invoke("f"), True),                      # identity Allow
        (ALICE, invoke("f", "live"), False),             # the unqualified ARN does not cover aliases
        (ALICE, invoke("h"), False),                     # implicit deny
        (BOB, invoke("f"), True),                        # Allow * ...
        (BOB, invoke("g"), False),                       # ... but an explicit Deny wins
        (BOB, invoke("g", "1"), False),
        (SESSION, invoke("f"), False),                   # no policy for the role session
        (SESSION, invoke("shared"), True),               # granted by the function's resource policy
    ],
)  # fmt: skip
def test_matrix(principal: str, access: Access, allowed: bool) -> None:
    shared = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/worker"},
        "Action": "lambda:InvokeFunction", "Resource": f"{FN}:shared"}]})
    authorizer = make({ALICE: [ALLOW_INVOKE_F], BOB: [ALLOW_ALL, DENY_G]}, {FunctionRef("shared"): shared})
    assert (authorizer.check(principal, [access]) is None) is allowed


def test_denial_names_principal_action_resource() -> None:
    denial = make({BOB: [ALLOW_ALL, DENY_G]}).check(BOB, [invoke("g")])
    assert denial is not None
    assert denial.message == (
        f"User: {BOB} is not authorized to perform: lambda:InvokeFunction on resource: {FN}:g "
        "with an explicit deny in an identity-based policy"
    )
    denial = make({}).check(ALICE, [invoke("f")])
    assert denial is not None and denial.message.endswith(
        "because no identity-based policy allows the lambda:InvokeFunction action"
    )


def test_every_access_must_be_allowed() -> None:
    authorizer = make({ALICE: [ALLOW_INVOKE_F]})
    denial = authorizer.check(ALICE, [invoke("f"), Access("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/r")])
    assert denial is not None and denial.request.action == "iam:PassRole"


def test_policies_are_reread_when_the_store_changes() -> None:
    identity: dict[str, list[str]] = {ALICE: []}
    store = Store()
    authorizer = make(identity, store=store)  # type: ignore[arg-type]
    assert authorizer.check(ALICE, [invoke("f")]) is not None
    identity[ALICE].append(ALLOW_INVOKE_F)
    assert authorizer.check(ALICE, [invoke("f")]) is not None  # cached until the store changes
    store.generation += 1
    assert authorizer.check(ALICE, [invoke("f")]) is None


def test_condition_keys_from_the_request() -> None:
    tls_only = doc({"Effect": "Allow", "Action": "lambda:*", "Resource": "*",
                    "Condition": {"Bool": {"aws:SecureTransport": "true"}}})
    authorizer = make({ALICE: [tls_only]})
    assert authorizer.check(ALICE, [invoke("f")], {"aws:SecureTransport": "false"}) is not None
    assert authorizer.check(ALICE, [invoke("f")], {"aws:SecureTransport": "true"}) is None


def test_allowed_outcomes_are_remembered_only_when_context_cannot_change_them() -> None:
    calls: list[str] = []
    tls_only = doc({"Effect": "Allow", "Action": "lambda:*", "Resource": "*",
                    "Condition": {"Bool": {"aws:SecureTransport": "true"}}})
    policies = {ALICE: [ALLOW_INVOKE_F], BOB: [tls_only]}

    def documents(principal: str) -> list[str]:
        calls.append(principal)
        return policies[principal]

    store = Store()
    authorizer = Authorizer(store, ACCOUNT, frozenset({ROOT}), documents)  # type: ignore[arg-type]
    assert authorizer.check(ALICE, [invoke("f")]) is None
    assert authorizer.check(ALICE, [invoke("f")]) is None
    assert authorizer.check(BOB, [invoke("f")], {"aws:SecureTransport": "true"}) is None
    # A conditional allow is evaluated again: the next request may not meet the condition.
    assert authorizer.check(BOB, [invoke("f")], {"aws:SecureTransport": "false"}) is not None
    policies[ALICE] = []
    assert authorizer.check(ALICE, [invoke("f")]) is None  # remembered until the store changes
    store.generation += 1
    assert authorizer.check(ALICE, [invoke("f")]) is not None
    assert calls.count(ALICE) == 2


def test_sessions_of_a_role_with_a_path_match_policies_naming_its_full_arn() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/service-role/worker"
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/worker/fn"
    grant = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": role}, "Action": "lambda:InvokeFunction",
        "Resource": f"{FN}:shared"}]})

    def function_policy(ref: FunctionRef) -> Policy | None:
        return parse_policy(grant, kind="resource")

    without = Authorizer(Store(), ACCOUNT, frozenset(), lambda p: [], function_policy)  # type: ignore[arg-type]
    assert without.check(session, [invoke("shared")]) is not None  # the session ARN has no path
    with_roles = Authorizer(Store(), ACCOUNT, frozenset(), lambda p: [], function_policy,  # type: ignore[arg-type]
                            session_role=lambda p: role if p == session else None)
    assert with_roles.check(session, [invoke("shared")]) is None
