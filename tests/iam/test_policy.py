"""IAM policy parsing and single-account evaluation, table-driven against AWS's documented rules."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from lamina.errors import LaminaError
from lamina.iam import policy as policy_module
from lamina.iam.conditions import arn_like, parse_conditions, substitute, wildcard_match
from lamina.iam.policy import (
    Decision,
    MalformedPolicy,
    Outcome,
    PolicyType,
    Request,
    access_denied_message,
    evaluate,
    parse_policy,
)

ACCOUNT = "123456789012"
USER = f"arn:aws:iam::{ACCOUNT}:user/alice"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/worker"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/worker/session-1"
FN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)


def stmt(
    effect: str = "Allow", action: Any = "lambda:InvokeFunction", resource: Any = FN, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"Effect": effect, **extra}
    if action is not None:
        out["Action"] = action
    if resource is not None:
        out["Resource"] = resource
    return out


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def req(
    action: str = "lambda:InvokeFunction",
    resource: str = FN,
    principal: str = USER,
    **context: Any,
) -> Request:
    ctx = {k.replace("__", ":"): v for k, v in context.items()}
    return Request(principal, ACCOUNT, action, resource, ctx, NOW)


def outcome(request: Request, *identity: dict[str, Any], resource: dict[str, Any] | None = None) -> Outcome:
    policies = [parse_policy(d) for d in identity]
    res = parse_policy(resource, kind="resource") if resource is not None else None
    return evaluate(request, policies, res).outcome


ALLOW, DENY, IMPLICIT = Outcome.ALLOW, Outcome.EXPLICIT_DENY, Outcome.IMPLICIT_DENY


IDENTITY_CASES = [
    ("exact allow", [stmt()], req(), ALLOW),
    ("no policies", [], req(), IMPLICIT),
    ("other action", [stmt(action="lambda:GetFunction")], req(), IMPLICIT),
    ("action case-insensitive", [stmt(action="LAMBDA:invokefunction")], req(), ALLOW),
    ("action star", [stmt(action="lambda:*")], req(), ALLOW),
    ("action prefix star", [stmt(action="lambda:Invoke*")], req(), ALLOW),
    ("action question mark", [stmt(action="lambda:InvokeFunctio?")], req(), ALLOW),
    ("action question mark is one char", [stmt(action="lambda:InvokeFunctio??")], req(), IMPLICIT),
    ("global star action", [stmt(action="*")], req(), ALLOW),
    ("action list", [stmt(action=["lambda:GetFunction", "lambda:InvokeFunction"])], req(), ALLOW),
    ("other service", [stmt(action="s3:*")], req(), IMPLICIT),
    ("resource star", [stmt(resource="*")], req(), ALLOW),
    ("resource case-sensitive", [stmt(resource=FN.replace("function:f", "function:F"))], req(), IMPLICIT),
    ("resource wildcard account", [stmt(resource="arn:aws:lambda:*:*:function:*")], req(), ALLOW),
    ("unqualified does not match version", [stmt()], req(resource=FN + ":1"), IMPLICIT),
    ("unqualified does not match alias", [stmt()], req(resource=FN + ":live"), IMPLICIT),
    ("qualified star matches version", [stmt(resource=FN + ":*")], req(resource=FN + ":1"), ALLOW),
    ("qualified star needs a qualifier", [stmt(resource=FN + ":*")], req(), IMPLICIT),
    ("both forms", [stmt(resource=[FN, FN + ":*"])], req(resource=FN + ":$LATEST"), ALLOW),
    ("exact version", [stmt(resource=FN + ":2")], req(resource=FN + ":1"), IMPLICIT),
    ("name prefix does not match sibling", [stmt(resource=FN + "?")], req(), IMPLICIT),
    (
        "layer version",
        [stmt(action="lambda:GetLayerVersion", resource=f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:l:*")],
        req("lambda:GetLayerVersion", f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:l:3"),
        ALLOW,
    ),
    ("explicit deny beats allow", [stmt(), stmt("Deny")], req(), DENY),
    ("deny on other resource is irrelevant", [stmt(), stmt("Deny", resource=FN + "x")], req(), ALLOW),
    ("NotAction allow", [stmt(action=None, NotAction="lambda:DeleteFunction")], req(), ALLOW),
    ("NotAction excludes", [stmt(action=None, NotAction="lambda:Invoke*")], req(), IMPLICIT),
    (
        "NotAction deny spares listed",
        [stmt(action="*"), stmt("Deny", action=None, NotAction="lambda:InvokeFunction")],
        req(),
        ALLOW,
    ),
    (
        "NotAction deny hits others",
        [stmt(action="*"), stmt("Deny", action=None, NotAction="lambda:InvokeFunction")],
        req("lambda:DeleteFunction"),
        DENY,
    ),
    ("NotResource allow", [stmt(resource=None, NotResource=FN + "x")], req(), ALLOW),
    ("NotResource excludes", [stmt(resource=None, NotResource="arn:aws:lambda:*")], req(), IMPLICIT),
    (
        "policy variable username",
        [stmt(resource=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:${{aws:username}}-*")],
        req(resource=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:alice-tool"),
        ALLOW,
    ),
    (
        "policy variable other user",
        [stmt(resource=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:${{aws:username}}-*")],
        req(resource=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:bob-tool"),
        IMPLICIT,
    ),
    (
        "unresolvable variable never matches",
        [stmt(resource=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:${{aws:username}}")],
        req(principal=ROLE),
        IMPLICIT,
    ),
]


@pytest.mark.parametrize(
    ("name", "statements", "request_", "expected"), IDENTITY_CASES, ids=[c[0] for c in IDENTITY_CASES]
)
def test_identity_policies(
    name: str, statements: list[dict[str, Any]], request_: Request, expected: Outcome
) -> None:
    policies = [doc(*statements)] if statements else []
    assert outcome(request_, *policies) is expected


def test_deny_in_another_identity_policy_wins() -> None:
    allow_all, deny = doc(stmt(action="*", resource="*")), doc(stmt("Deny"))
    assert outcome(req(), allow_all) is ALLOW
    assert outcome(req(), allow_all, deny) is DENY
    assert outcome(req(), deny, allow_all) is DENY


SERVICE_PRINCIPAL = {"Service": "s3.amazonaws.com"}
BUCKET = "arn:aws:s3:::uploads"
S3_CONDITION = {"ArnLike": {"AWS:SourceArn": BUCKET}, "StringEquals": {"aws:SourceAccount": ACCOUNT}}

RESOURCE_CASES = [
    (
        "service principal with source",
        stmt(Principal=SERVICE_PRINCIPAL, Condition=S3_CONDITION),
        req(principal="s3.amazonaws.com", aws__SourceArn=BUCKET, aws__SourceAccount=ACCOUNT),
        ALLOW,
    ),
    (
        "wrong source arn",
        stmt(Principal=SERVICE_PRINCIPAL, Condition=S3_CONDITION),
        req(principal="s3.amazonaws.com", aws__SourceArn="arn:aws:s3:::other", aws__SourceAccount=ACCOUNT),
        IMPLICIT,
    ),
    (
        "missing source account",
        stmt(Principal=SERVICE_PRINCIPAL, Condition=S3_CONDITION),
        req(principal="s3.amazonaws.com", aws__SourceArn=BUCKET),
        IMPLICIT,
    ),
    ("other service", stmt(Principal=SERVICE_PRINCIPAL), req(principal="sns.amazonaws.com"), IMPLICIT),
    (
        "service list",
        stmt(Principal={"Service": ["sns.amazonaws.com", "s3.amazonaws.com"]}),
        req(principal="s3.amazonaws.com"),
        ALLOW,
    ),
    ("user named", stmt(Principal={"AWS": USER}), req(), ALLOW),
    ("user not named", stmt(Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:user/bob"}), req(), IMPLICIT),
    ("star principal", stmt(Principal="*"), req(), ALLOW),
    ("aws star principal", stmt(Principal={"AWS": "*"}), req(principal=ROLE), ALLOW),
    ("role named covers its sessions", stmt(Principal={"AWS": ROLE}), req(principal=SESSION), ALLOW),
    ("session named", stmt(Principal={"AWS": SESSION}), req(principal=SESSION), ALLOW),
    (
        "account id grants root",
        stmt(Principal={"AWS": ACCOUNT}),
        req(principal=f"arn:aws:iam::{ACCOUNT}:root"),
        ALLOW,
    ),
    ("account id does not grant a user", stmt(Principal={"AWS": ACCOUNT}), req(), IMPLICIT),
    ("account deny applies to user", stmt("Deny", Principal={"AWS": ACCOUNT}), req(), DENY),
    ("NotPrincipal deny spares named", stmt("Deny", NotPrincipal={"AWS": USER}), req(), IMPLICIT),
    ("NotPrincipal deny hits others", stmt("Deny", NotPrincipal={"AWS": ROLE}), req(), DENY),
    (
        "principal org id",
        stmt(Principal="*", Condition={"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}),
        req(aws__PrincipalOrgID="o-abc"),
        ALLOW,
    ),
    (
        "principal account key filled",
        stmt(Principal="*", Condition={"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}),
        req(),
        ALLOW,
    ),
    (
        "principal arn of session is role",
        stmt(Principal="*", Condition={"ArnEquals": {"aws:PrincipalArn": ROLE}}),
        req(principal=SESSION),
        ALLOW,
    ),
]


@pytest.mark.parametrize(
    ("name", "statement", "request_", "expected"), RESOURCE_CASES, ids=[c[0] for c in RESOURCE_CASES]
)
def test_resource_policy(name: str, statement: dict[str, Any], request_: Request, expected: Outcome) -> None:
    assert outcome(request_, resource=doc(statement)) is expected


def test_resource_deny_beats_identity_allow() -> None:
    decision = evaluate(
        req(),
        [parse_policy(doc(stmt()))],
        parse_policy(doc(stmt("Deny", Principal="*", Sid="NoInvoke")), kind="resource"),
    )
    assert decision.outcome is DENY
    assert decision.policy_type is PolicyType.RESOURCE
    assert decision.statement is not None and decision.statement.sid == "NoInvoke"


def test_allow_decision_names_statement() -> None:
    decision = evaluate(req(), [parse_policy(doc(stmt(Sid="A"), stmt(Sid="B")))])
    assert decision.allowed and decision.statement is not None and decision.statement.sid == "A"
    assert decision.policy_type is PolicyType.IDENTITY


def cond(block: dict[str, Any], **context: Any) -> Outcome:
    return outcome(req(**context), doc(stmt(Condition=block)))


CONDITION_CASES: list[tuple[str, dict[str, Any], dict[str, Any], Outcome]] = [
    ("StringEquals hit", {"StringEquals": {"k:a": "x"}}, {"k__a": "x"}, ALLOW),
    ("StringEquals case", {"StringEquals": {"k:a": "x"}}, {"k__a": "X"}, IMPLICIT),
    ("key name case-insensitive", {"StringEquals": {"K:A": "x"}}, {"k__a": "x"}, ALLOW),
    ("StringEquals missing key", {"StringEquals": {"k:a": "x"}}, {}, IMPLICIT),
    ("values OR", {"StringEquals": {"k:a": ["y", "x"]}}, {"k__a": "x"}, ALLOW),
    ("keys AND", {"StringEquals": {"k:a": "x", "k:b": "y"}}, {"k__a": "x", "k__b": "z"}, IMPLICIT),
    (
        "operators AND",
        {"StringEquals": {"k:a": "x"}, "StringLike": {"k:b": "y*"}},
        {"k__a": "x", "k__b": "yes"},
        ALLOW,
    ),
    ("StringNotEquals hit", {"StringNotEquals": {"k:a": "x"}}, {"k__a": "y"}, ALLOW),
    ("StringNotEquals miss", {"StringNotEquals": {"k:a": ["x", "y"]}}, {"k__a": "y"}, IMPLICIT),
    ("StringNotEquals missing key is true", {"StringNotEquals": {"k:a": "x"}}, {}, ALLOW),
    ("IgnoreCase", {"StringEqualsIgnoreCase": {"k:a": "ABC"}}, {"k__a": "abc"}, ALLOW),
    ("NotEqualsIgnoreCase", {"StringNotEqualsIgnoreCase": {"k:a": "ABC"}}, {"k__a": "abc"}, IMPLICIT),
    ("StringLike", {"StringLike": {"k:a": "a?c*"}}, {"k__a": "abcdef"}, ALLOW),
    ("StringNotLike", {"StringNotLike": {"k:a": "a*"}}, {"k__a": "abc"}, IMPLICIT),
    (
        "ArnLike per segment",
        {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::*"}},
        {"aws__SourceArn": BUCKET},
        ALLOW,
    ),
    (
        "ArnLike star stays in segment",
        {"ArnLike": {"aws:SourceArn": "arn:aws:lambda:*:function:f"}},
        {"aws__SourceArn": FN},
        IMPLICIT,
    ),
    (
        "ArnEquals wildcard",
        {"ArnEquals": {"aws:SourceArn": "arn:aws:lambda:*:*:function:f"}},
        {"aws__SourceArn": FN},
        ALLOW,
    ),
    ("ArnNotLike", {"ArnNotLike": {"aws:SourceArn": "arn:aws:s3:::*"}}, {"aws__SourceArn": FN}, ALLOW),
    ("ArnNotEquals miss", {"ArnNotEquals": {"aws:SourceArn": FN}}, {"aws__SourceArn": FN}, IMPLICIT),
    (
        "ArnLike not an arn",
        {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::*"}},
        {"aws__SourceArn": "bucket"},
        IMPLICIT,
    ),
    ("NumericLessThan", {"NumericLessThan": {"k:n": "10"}}, {"k__n": "9.5"}, ALLOW),
    ("NumericLessThan equal", {"NumericLessThan": {"k:n": 10}}, {"k__n": "10"}, IMPLICIT),
    ("NumericLessThanEquals", {"NumericLessThanEquals": {"k:n": "10"}}, {"k__n": "10"}, ALLOW),
    ("NumericGreaterThan", {"NumericGreaterThan": {"k:n": "10"}}, {"k__n": "11"}, ALLOW),
    ("NumericGreaterThanEquals", {"NumericGreaterThanEquals": {"k:n": "10"}}, {"k__n": "9"}, IMPLICIT),
    ("NumericEquals", {"NumericEquals": {"k:n": "3"}}, {"k__n": "3.0"}, ALLOW),
    ("NumericNotEquals", {"NumericNotEquals": {"k:n": "3"}}, {"k__n": "3"}, IMPLICIT),
    ("Numeric context not a number", {"NumericEquals": {"k:n": "3"}}, {"k__n": "three"}, IMPLICIT),
    ("DateLessThan current time", {"DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}}, {}, ALLOW),
    (
        "DateGreaterThan current time",
        {"DateGreaterThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}},
        {},
        IMPLICIT,
    ),
    ("Date epoch", {"DateGreaterThanEquals": {"aws:EpochTime": str(int(NOW.timestamp()))}}, {}, ALLOW),
    (
        "DateEquals",
        {"DateEquals": {"k:d": "2026-01-15T12:00:00Z"}},
        {"k__d": "2026-01-15T12:00:00+00:00"},
        ALLOW,
    ),
    ("DateNotEquals", {"DateNotEquals": {"k:d": "2026-01-15"}}, {"k__d": "2026-01-16"}, ALLOW),
    ("DateLessThanEquals", {"DateLessThanEquals": {"k:d": "2026-01-15"}}, {"k__d": "2026-01-15"}, ALLOW),
    ("Bool true", {"Bool": {"aws:SecureTransport": "true"}}, {"aws__SecureTransport": "true"}, ALLOW),
    ("Bool json literal", {"Bool": {"aws:SecureTransport": True}}, {"aws__SecureTransport": "true"}, ALLOW),
    ("Bool false", {"Bool": {"aws:SecureTransport": "true"}}, {"aws__SecureTransport": "false"}, IMPLICIT),
    ("Bool missing", {"Bool": {"aws:SecureTransport": "true"}}, {}, IMPLICIT),
    ("IpAddress in", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws__SourceIp": "10.1.2.3"}, ALLOW),
    (
        "IpAddress out",
        {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        {"aws__SourceIp": "192.168.0.1"},
        IMPLICIT,
    ),
    (
        "IpAddress v6",
        {"IpAddress": {"aws:SourceIp": "2001:db8::/32"}},
        {"aws__SourceIp": "2001:db8::1"},
        ALLOW,
    ),
    (
        "NotIpAddress",
        {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.1"]}},
        {"aws__SourceIp": "127.0.0.1"},
        IMPLICIT,
    ),
    ("IpAddress garbage", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws__SourceIp": "nope"}, IMPLICIT),
    ("BinaryEquals", {"BinaryEquals": {"k:b": "QmluYXJ5"}}, {"k__b": "QmluYXJ5"}, ALLOW),
    ("Null true on missing", {"Null": {"k:a": "true"}}, {}, ALLOW),
    ("Null true on present", {"Null": {"k:a": "true"}}, {"k__a": "x"}, IMPLICIT),
    ("Null false on present", {"Null": {"k:a": "false"}}, {"k__a": "x"}, ALLOW),
    ("Null false on missing", {"Null": {"k:a": False}}, {}, IMPLICIT),
    ("IfExists missing", {"StringEqualsIfExists": {"k:a": "x"}}, {}, ALLOW),
    ("IfExists present mismatch", {"StringEqualsIfExists": {"k:a": "x"}}, {"k__a": "y"}, IMPLICIT),
    ("IfExists present match", {"NumericLessThanIfExists": {"k:n": "5"}}, {"k__n": "1"}, ALLOW),
    ("ForAnyValue hit", {"ForAnyValue:StringEquals": {"k:t": ["a", "b"]}}, {"k__t": ["z", "b"]}, ALLOW),
    ("ForAnyValue miss", {"ForAnyValue:StringEquals": {"k:t": ["a"]}}, {"k__t": ["z", "y"]}, IMPLICIT),
    ("ForAnyValue empty set", {"ForAnyValue:StringEquals": {"k:t": ["a"]}}, {"k__t": []}, IMPLICIT),
    ("ForAnyValue missing", {"ForAnyValue:StringNotEquals": {"k:t": ["a"]}}, {}, IMPLICIT),
    ("ForAllValues subset", {"ForAllValues:StringEquals": {"k:t": ["a", "b"]}}, {"k__t": ["a", "b"]}, ALLOW),
    (
        "ForAllValues extra",
        {"ForAllValues:StringEquals": {"k:t": ["a", "b"]}},
        {"k__t": ["a", "c"]},
        IMPLICIT,
    ),
    ("ForAllValues empty set", {"ForAllValues:StringEquals": {"k:t": ["a"]}}, {"k__t": []}, ALLOW),
    ("ForAllValues missing key", {"ForAllValues:StringLike": {"k:t": ["a*"]}}, {}, ALLOW),
    (
        "ForAllValues negated",
        {"ForAllValues:StringNotLike": {"k:t": ["secret*"]}},
        {"k__t": ["a", "secret-x"]},
        IMPLICIT,
    ),
    ("plain operator multi-valued", {"StringEquals": {"k:t": "b"}}, {"k__t": ["a", "b"]}, ALLOW),
    (
        "variable in condition value",
        {"StringEquals": {"k:owner": "${aws:username}"}},
        {"k__owner": "alice"},
        ALLOW,
    ),
    ("variable mismatch", {"StringEquals": {"k:owner": "${aws:username}"}}, {"k__owner": "bob"}, IMPLICIT),
]


@pytest.mark.parametrize(
    ("name", "block", "context", "expected"), CONDITION_CASES, ids=[c[0] for c in CONDITION_CASES]
)
def test_conditions(name: str, block: dict[str, Any], context: dict[str, Any], expected: Outcome) -> None:
    assert cond(block, **context) is expected


def test_deny_with_condition_only_when_it_holds() -> None:
    policies = [
        doc(stmt(action="*", resource="*")),
        doc(stmt("Deny", action="*", resource="*", Condition={"Bool": {"aws:SecureTransport": "false"}})),
    ]
    assert outcome(req(aws__SecureTransport="false"), *policies) is DENY
    assert outcome(req(aws__SecureTransport="true"), *policies) is ALLOW


def test_current_time_absent_without_clock() -> None:
    request = Request(USER, ACCOUNT, "lambda:InvokeFunction", FN)
    policy = parse_policy(doc(stmt(Condition={"DateLessThan": {"aws:CurrentTime": "2100-01-01T00:00:00Z"}})))
    assert evaluate(request, [policy]).outcome is IMPLICIT


V = "2012-10-17"
MALFORMED_CASES: list[tuple[str, Any, str]] = [
    ("not json", "{not json", "Syntax errors in policy."),
    ("not an object", "[]", "Syntax errors in policy."),
    ("unknown top field", {"Version": V, "Statement": [stmt()], "Foo": 1}, "Syntax errors in policy."),
    (
        "bad version",
        {"Version": "2020-01-01", "Statement": [stmt()]},
        "Policy document must be version 2012-10-17 or greater.",
    ),
    ("no statement", {"Version": V}, "Syntax errors in policy."),
    ("empty statement list", {"Version": V, "Statement": []}, "Syntax errors in policy."),
    ("statement not object", {"Version": V, "Statement": ["x"]}, "Syntax errors in policy."),
    ("missing effect", doc({"Action": "lambda:*", "Resource": "*"}), "Syntax errors in policy."),
    ("bad effect", doc(stmt("allow")), "Syntax errors in policy."),
    ("unknown statement field", doc(stmt(Actions="x")), "Syntax errors in policy."),
    ("missing action", doc(stmt(action=None)), "Policy statement must contain actions."),
    ("empty action list", doc(stmt(action=[])), "Policy statement must contain actions."),
    ("missing resource", doc(stmt(resource=None)), "Policy statement must contain resources."),
    ("Action and NotAction", doc(stmt(NotAction="s3:*")), "Syntax errors in policy."),
    ("Resource and NotResource", doc(stmt(NotResource="*")), "Syntax errors in policy."),
    (
        "action without vendor",
        doc(stmt(action="InvokeFunction")),
        "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
    ),
    ("action not string", doc(stmt(action=[1])), "Syntax errors in policy."),
    (
        "resource not arn",
        doc(stmt(resource="function:f")),
        'Resource function:f must be in ARN format or "*".',
    ),
    (
        "duplicate sid",
        doc(stmt(Sid="a"), stmt(Sid="a")),
        "Statement IDs (SID) in a single policy must be unique.",
    ),
    (
        "principal in identity policy",
        doc(stmt(Principal="*")),
        "Policy document should not specify a principal.",
    ),
    (
        "unknown operator",
        doc(stmt(Condition={"StringEqualz": {"k:a": "x"}})),
        "Invalid Condition type : StringEqualz",
    ),
    (
        "unknown set operator",
        doc(stmt(Condition={"ForSomeValues:StringEquals": {"k:a": "x"}})),
        "Invalid Condition type : ForSomeValues:StringEquals",
    ),
    (
        "Null with IfExists",
        doc(stmt(Condition={"NullIfExists": {"k:a": "true"}})),
        "Invalid Condition type : NullIfExists",
    ),
    ("condition not object", doc(stmt(Condition=["x"])), "Syntax errors in policy."),
    ("condition block not object", doc(stmt(Condition={"StringEquals": "x"})), "Syntax errors in policy."),
    (
        "condition value object",
        doc(stmt(Condition={"StringEquals": {"k:a": {"x": 1}}})),
        "Syntax errors in policy.",
    ),
    (
        "bad number",
        doc(stmt(Condition={"NumericLessThan": {"k:n": "ten"}})),
        "Invalid value for condition NumericLessThan: k:n",
    ),
    (
        "bad date",
        doc(stmt(Condition={"DateLessThan": {"k:d": "soon"}})),
        "Invalid value for condition DateLessThan: k:d",
    ),
    (
        "bad cidr",
        doc(stmt(Condition={"IpAddress": {"k:ip": "10.0.0.0/99"}})),
        "Invalid value for condition IpAddress: k:ip",
    ),
]


@pytest.mark.parametrize(
    ("name", "document", "message"), MALFORMED_CASES, ids=[c[0] for c in MALFORMED_CASES]
)
def test_malformed_identity_policies(name: str, document: Any, message: str) -> None:
    with pytest.raises(MalformedPolicy) as info:
        parse_policy(document)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError) and isinstance(info.value, LaminaError)


RESOURCE_MALFORMED: list[tuple[str, Any, str]] = [
    ("missing principal", stmt(), "Missing required field Principal"),
    ("principal and NotPrincipal", stmt(Principal="*", NotPrincipal="*"), "Syntax errors in policy."),
    ("principal bad type", stmt(Principal="someone"), "Syntax errors in policy."),
    ("principal unknown kind", stmt(Principal={"Group": "x"}), "Invalid principal in policy"),
    ("aws principal not arn", stmt(Principal={"AWS": "alice"}), "Invalid principal in policy"),
]


@pytest.mark.parametrize(
    ("name", "statement", "message"), RESOURCE_MALFORMED, ids=[c[0] for c in RESOURCE_MALFORMED]
)
def test_malformed_resource_policies(name: str, statement: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedPolicy, match=f"^{message}$"):
        parse_policy(doc(statement), kind="resource")


def test_parse_accepts_text_single_statement_and_defaults() -> None:
    text = json.dumps({"Statement": {"Sid": "one", "Effect": "Deny", "Action": "lambda:*", "Resource": "*"}})
    parsed = parse_policy(text)
    assert parsed.version == "2008-10-17"
    assert [s.sid for s in parsed.statements] == ["one"]
    assert parsed.statements[0].effect == "Deny"


def test_account_id_principal_normalised() -> None:
    parsed = parse_policy(doc(stmt(Principal={"AWS": [ACCOUNT, ROLE]})), kind="resource")
    principal = parsed.statements[0].principal
    assert principal is not None
    assert principal.aws == frozenset({f"arn:aws:iam::{ACCOUNT}:root", ROLE})


MESSAGE = f"User: {USER} is not authorized to perform: lambda:InvokeFunction on resource: {FN}"
MESSAGE_CASES = [
    (
        Decision(IMPLICIT),
        True,
        f"{MESSAGE} because no identity-based policy allows the lambda:InvokeFunction action",
    ),
    (
        Decision(DENY, None, PolicyType.IDENTITY),
        True,
        f"{MESSAGE} with an explicit deny in an identity-based policy",
    ),
    (
        Decision(DENY, None, PolicyType.RESOURCE),
        True,
        f"{MESSAGE} with an explicit deny in a resource-based policy",
    ),
    (Decision(IMPLICIT), False, MESSAGE),
]


@pytest.mark.parametrize(("decision", "detailed", "expected"), MESSAGE_CASES)
def test_access_denied_message(decision: Decision, detailed: bool, expected: str) -> None:
    assert access_denied_message(req(), decision, detailed=detailed) == expected


@pytest.mark.parametrize(
    ("pattern", "value", "ignore_case", "expected"),
    [
        ("a*c", "abbbc", False, True),
        ("a*c", "a:b:c", False, True),
        ("a?c", "ac", False, False),
        ("a.c", "abc", False, False),
        ("A*", "abc", True, True),
        ("A*", "abc", False, False),
        ("", "", False, True),
    ],
)
def test_wildcard_match(pattern: str, value: str, ignore_case: bool, expected: bool) -> None:
    assert wildcard_match(pattern, value, ignore_case=ignore_case) is expected


def test_arn_like_and_substitute_helpers() -> None:
    assert arn_like("*", "anything")
    assert not arn_like("arn:aws:s3:::b", "arn:aws:s3:::b:extra")
    ctx = {"aws:username": ("alice",), "k:multi": ("a", "b")}
    assert substitute("x-${aws:username}", ctx) == "x-alice"
    assert substitute("${k:multi}", ctx) is None
    assert substitute("${*}", ctx) == "*"
    assert parse_conditions({})[:] == ()


def test_exported_members() -> None:
    assert sorted(policy_module.__all__) == [
        "Decision", "MalformedPolicy", "Outcome", "Policy", "PolicyType", "Principal", "Request",
        "Statement", "access_denied_message", "evaluate", "parse_policy",
    ]  # fmt: skip
