"""Managed policies, attachments and tags: AWS's rules and texts, and what enforcement sees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from iam_fakes import Clock, open_store

from lamina.errors import IamError
from lamina.iam.aws_managed import AWS_MANAGED
from lamina.iam.directory import Directory
from lamina.iam.managed import ManagedPolicies
from lamina.iam.policy import parse_policy
from lamina.iam.tagging import Tagging
from lamina.store.sqlite import SqliteMetadataStore

ACCT = "111122223333"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


def allow(action: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": action, "Resource": "*"}]})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteMetadataStore]:
    db = open_store(tmp_path)
    yield db
    db.close()


@pytest.fixture
def directory(store: SqliteMetadataStore, clock: Clock) -> Directory:
    directory = Directory(store, ACCT, clock)
    directory.create_role("Exec", TRUST)
    directory.create_user("alice")
    return directory


@pytest.fixture
def policies(store: SqliteMetadataStore, clock: Clock) -> ManagedPolicies:
    return ManagedPolicies(store, ACCT, clock)


def _error(exc: pytest.ExceptionInfo[IamError]) -> tuple[str, str, int]:
    return exc.value.code, str(exc.value), exc.value.status


def test_builtin_policies_parse_and_are_aws_managed() -> None:
    assert BASIC in AWS_MANAGED and ADMIN in AWS_MANAGED
    for arn, (policy, document) in AWS_MANAGED.items():
        assert policy.aws_managed and policy.arn == arn
        assert policy.policy_id.startswith("ANPA") and len(policy.policy_id) == 20
        parse_policy(document, kind="identity")


def test_create_get_and_duplicate_names(policies: ManagedPolicies) -> None:
    policy = policies.create_policy("Deploy", allow("lambda:*"), path="/team/", description="d", tags={"k": "v"})
    assert policy.arn == f"arn:aws:iam::{ACCT}:policy/team/Deploy"
    assert policy.policy_id.startswith("ANPA") and len(policy.policy_id) == 20
    assert (policy.default_version, policy.created) == ("v1", "2024-05-01T12:00:00Z")
    assert policies.get_policy(policy.arn) == (policy, 0)
    with pytest.raises(IamError) as exc:
        policies.create_policy("DEPLOY", allow("lambda:*"))  # names clash regardless of case and path
    assert _error(exc) == (
        "EntityAlreadyExists", "A policy called DEPLOY already exists. Duplicate names are not allowed.", 409)
    missing = f"arn:aws:iam::{ACCT}:policy/nope"
    with pytest.raises(IamError) as exc:
        policies.get_policy(missing)
    assert _error(exc) == ("NoSuchEntity", f"Policy {missing} was not found.", 404)
    with pytest.raises(IamError) as exc:
        policies.create_policy("Bad", "{not json")
    assert exc.value.code == "MalformedPolicyDocument"


def test_list_scopes_only_attached_and_path_prefix(policies: ManagedPolicies, directory: Directory) -> None:
    mine = policies.create_policy("Mine", allow("lambda:ListFunctions"), path="/team/")
    local = [p.arn for p, _ in policies.list_policies("Local")]
    assert local == [mine.arn]
    aws = [p.arn for p, _ in policies.list_policies("AWS")]
    assert set(aws) == set(AWS_MANAGED) and mine.arn not in aws
    assert [p.arn for p, _ in policies.list_policies("All")] == aws + local
    assert policies.list_policies("All", only_attached=True) == []
    policies.attach("role", "exec", BASIC)
    policies.attach("user", "alice", BASIC)
    assert [(p.arn, n) for p, n in policies.list_policies("All", only_attached=True)] == [(BASIC, 2)]
    assert [p.arn for p, _ in policies.list_policies("All", path_prefix="/service-role/")] == [
        a for a in aws if "/service-role/" in a]
    assert [p.arn for p, _ in policies.list_policies("All", path_prefix="/team/")] == [mine.arn]


def test_attach_detach_and_their_errors(policies: ManagedPolicies, directory: Directory) -> None:
    mine = policies.create_policy("Mine", allow("lambda:ListFunctions"))
    policies.attach("role", "EXEC", mine.arn)
    policies.attach("role", "Exec", mine.arn)  # twice is once
    policies.attach("role", "Exec", BASIC)
    assert [p.arn for p in policies.list_attached("role", "exec")] == [mine.arn, BASIC]
    assert [p.arn for p in policies.list_attached("role", "exec", "/service-role/")] == [BASIC]
    assert policies.get_policy(mine.arn)[1] == 1
    ghost = f"arn:aws:iam::{ACCT}:policy/ghost"
    with pytest.raises(IamError) as exc:
        policies.attach("user", "alice", ghost)
    assert _error(exc) == ("NoSuchEntity", f"Policy {ghost} does not exist or is not attachable.", 404)
    with pytest.raises(IamError) as exc:
        policies.attach("role", "nobody", BASIC)
    assert _error(exc) == ("NoSuchEntity", "The role with name nobody cannot be found.", 404)
    with pytest.raises(IamError) as exc:
        policies.detach("user", "alice", BASIC)
    assert _error(exc) == ("NoSuchEntity", f"Policy {BASIC} was not found.", 404)
    with pytest.raises(IamError) as exc:
        policies.list_attached("user", "bob")
    assert _error(exc) == ("NoSuchEntity", "The user with name bob cannot be found.", 404)
    policies.detach("role", "exec", mine.arn)
    assert [p.arn for p in policies.list_attached("role", "Exec")] == [BASIC]


def test_delete_conflicts_for_policies_roles_and_users(policies: ManagedPolicies, directory: Directory) -> None:
    mine = policies.create_policy("Mine", allow("lambda:ListFunctions"))
    policies.attach("user", "alice", mine.arn)
    policies.attach("role", "Exec", ADMIN)
    with pytest.raises(IamError) as exc:
        policies.delete_policy(mine.arn)
    assert _error(exc) == ("DeleteConflict", "Cannot delete a policy attached to entities.", 409)
    for delete, name in ((directory.delete_user, "alice"), (directory.delete_role, "Exec")):
        with pytest.raises(IamError) as exc:
            delete(name)
        assert _error(exc) == ("DeleteConflict", "Cannot delete entity, must detach all policies first.", 409)
    policies.detach("user", "alice", mine.arn)
    policies.detach("role", "Exec", ADMIN)
    directory.delete_user("alice")
    directory.delete_role("Exec")
    policies.create_policy_version(mine.arn, allow("lambda:GetFunction"))
    with pytest.raises(IamError) as exc:
        policies.delete_policy(mine.arn)
    assert exc.value.code == "DeleteConflict" and "more than one version" in str(exc.value)
    policies.delete_policy_version(mine.arn, "v2")
    policies.delete_policy(mine.arn)
    with pytest.raises(IamError) as exc:
        policies.get_policy(mine.arn)
    assert exc.value.code == "NoSuchEntity"
    with pytest.raises(IamError) as exc:
        policies.delete_policy(ADMIN)
    assert exc.value.code == "AccessDenied"


def test_versions_limit_default_and_numbering(policies: ManagedPolicies, clock: Clock) -> None:
    arn = policies.create_policy("P", allow("lambda:ListFunctions")).arn
    clock.now += timedelta(hours=1)
    for n in range(2, 6):
        version = policies.create_policy_version(arn, allow(f"lambda:Get{n}"), set_as_default=n == 3)
        assert version.version_id == f"v{n}"
    with pytest.raises(IamError) as exc:
        policies.create_policy_version(arn, allow("lambda:X"))
    assert _error(exc) == ("LimitExceeded", "A managed policy can have up to 5 versions. Before you create "
                           "a new version, you must delete an existing version.", 409)
    policy, versions = policies.list_policy_versions(arn)
    assert policy.default_version == "v3" and policy.updated == "2024-05-01T13:00:00Z"
    assert [v.version_id for v in versions] == ["v5", "v4", "v3", "v2", "v1"]
    with pytest.raises(IamError) as exc:
        policies.delete_policy_version(arn, "v3")
    assert _error(exc) == ("DeleteConflict", "Cannot delete the default version of a policy.", 409)
    policies.delete_policy_version(arn, "v5")
    assert policies.create_policy_version(arn, allow("lambda:Y")).version_id == "v6"  # never reused
    policies.set_default_policy_version(arn, "v6")
    assert policies.get_policy_version(arn, "v6")[1].document == allow("lambda:Y")
    with pytest.raises(IamError) as exc:
        policies.get_policy_version(arn, "v5")
    assert _error(exc) == ("NoSuchEntity", f"Policy {arn} version v5 does not exist or is not attachable.", 404)
    with pytest.raises(IamError) as exc:
        policies.set_default_policy_version(arn, "v9")
    assert exc.value.code == "NoSuchEntity"
    assert policies.get_policy_version(BASIC, "v1")[1].document == AWS_MANAGED[BASIC][1]
    with pytest.raises(IamError) as exc:
        policies.create_policy_version(BASIC, allow("*"))
    assert exc.value.code == "AccessDenied"


def test_policies_for_includes_attached_default_versions(
        policies: ManagedPolicies, directory: Directory, store: SqliteMetadataStore) -> None:
    user_arn = f"arn:aws:iam::{ACCT}:user/alice"
    session = f"arn:aws:sts::{ACCT}:assumed-role/Exec/s1"
    directory.put_user_policy("alice", "inline", allow("logs:GetLogEvents"))
    mine = policies.create_policy("Mine", allow("lambda:ListFunctions"))
    generation = store.generation
    policies.attach("user", "alice", mine.arn)
    assert store.generation > generation  # the authorizer's cache notices
    assert directory.policies_for(user_arn) == [allow("logs:GetLogEvents"), allow("lambda:ListFunctions")]
    policies.create_policy_version(mine.arn, allow("lambda:GetFunction"), set_as_default=True)
    assert directory.policies_for(user_arn)[1] == allow("lambda:GetFunction")
    policies.attach("role", "Exec", BASIC)
    assert directory.policies_for(session) == [AWS_MANAGED[BASIC][1]]
    policies.detach("role", "Exec", BASIC)
    assert directory.policies_for(session) == []


def test_role_and_user_tags(directory: Directory, store: SqliteMetadataStore) -> None:
    tagging = Tagging(store)
    tagging.tag_role("exec", {"a": "1", "b": "2"})
    tagging.tag_role("Exec", {"a": "3"})
    assert tagging.role_tags("Exec") == {"a": "3", "b": "2"}
    assert directory.get_role("Exec").tags == {"a": "3", "b": "2"}
    tagging.untag_role("Exec", ["a", "missing"])
    assert tagging.role_tags("Exec") == {"b": "2"}
    tagging.tag_user("alice", {f"k{i}": "v" for i in range(50)})
    with pytest.raises(IamError) as exc:
        tagging.tag_user("alice", {"one-more": "v"})
    assert _error(exc) == ("LimitExceeded", "Cannot exceed quota for TagsPerUser: 50", 409)
    assert len(tagging.user_tags("alice")) == 50
    tagging.tag_user("alice", {"k0": "replaced"})  # replacing a key is not one more
    tagging.untag_user("alice", ["k1"])
    assert tagging.user_tags("alice")["k0"] == "replaced" and len(tagging.user_tags("alice")) == 49
    with pytest.raises(IamError) as exc:
        tagging.tag_role("nope", {"a": "b"})
    assert _error(exc) == ("NoSuchEntity", "The role with name nope cannot be found.", 404)
    with pytest.raises(IamError) as exc:
        tagging.user_tags("bob")
    assert _error(exc) == ("NoSuchEntity", "The user with name bob cannot be found.", 404)


def test_a_managed_policy_version_is_at_most_6144_bytes(policies: ManagedPolicies) -> None:
    statement = {"Effect": "Allow", "Action": "lambda:GetFunction", "Resource": "arn:aws:lambda:*"}
    big = json.dumps({"Version": "2012-10-17", "Statement": [statement] * 90})  # ~6.5 KB
    with pytest.raises(IamError) as exc:
        policies.create_policy("big", big)
    assert (exc.value.code, str(exc.value), exc.value.status) == (
        "LimitExceeded", "Cannot exceed quota for PolicySize: 6144", 409)
    created = policies.create_policy("small", allow("lambda:GetFunction"))
    with pytest.raises(IamError):
        policies.create_policy_version(created.arn, big)
