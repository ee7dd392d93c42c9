"""IAM's directory: AWS's rules and texts for roles, users, inline policies and access keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from iam_fakes import Clock, open_store

from lamina.errors import IamError
from lamina.iam.directory import Directory, role_arn_of, user_name_of

ACCT = "111122223333"
TRUST_LAMBDA = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}]}
)


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    return Directory(open_store(tmp_path), ACCT, Clock())


def _error(exc: pytest.ExceptionInfo[IamError]) -> tuple[str, str, int]:
    return exc.value.code, str(exc.value), exc.value.status


def test_create_role_and_conflicts(directory: Directory) -> None:
    role = directory.create_role("Exec", TRUST_LAMBDA, path="/svc/", description="d", tags={"a": "b"})
    assert role.arn == f"arn:aws:iam::{ACCT}:role/svc/Exec"
    assert role.role_id.startswith("AROA") and len(role.role_id) == 20
    assert role.created == "2024-05-01T12:00:00Z"
    assert directory.get_role("exec") == role
    with pytest.raises(IamError) as exc:
        directory.create_role("EXEC", TRUST_LAMBDA)
    assert _error(exc) == ("EntityAlreadyExists", "Role with name EXEC already exists.", 409)
    with pytest.raises(IamError) as exc:
        directory.get_role("nope")
    assert _error(exc) == ("NoSuchEntity", "The role with name nope cannot be found.", 404)


def test_malformed_policies_are_refused_with_aws_texts(directory: Directory) -> None:
    with pytest.raises(IamError) as exc:
        directory.create_role("r", POLICY)  # a trust policy's resource is the role itself
    assert _error(exc) == ("MalformedPolicyDocument", "Has prohibited field Resource", 400)
    no_principal = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}
    )
    with pytest.raises(IamError) as exc:
        directory.create_role("r", no_principal)
    assert _error(exc) == ("MalformedPolicyDocument", "Missing required field Principal", 400)
    directory.create_role("r", TRUST_LAMBDA)
    with pytest.raises(IamError) as exc:
        directory.put_role_policy(
            "r", "p", json.dumps({"Statement": {**json.loads(POLICY)["Statement"][0], "Principal": "*"}})
        )
    assert _error(exc) == ("MalformedPolicyDocument", "Policy document should not specify a principal.", 400)
    with pytest.raises(IamError) as exc:
        directory.update_assume_role_policy("r", "{not json")
    assert _error(exc) == ("MalformedPolicyDocument", "Syntax errors in policy.", 400)


def test_role_policies_and_delete_conflict(directory: Directory) -> None:
    directory.create_role("r", TRUST_LAMBDA)
    directory.put_role_policy("r", "b", POLICY)
    directory.put_role_policy("r", "a", POLICY)
    assert directory.list_role_policies("r") == ["a", "b"]
    assert directory.get_role_policy("r", "a")[1] == POLICY
    with pytest.raises(IamError) as exc:
        directory.delete_role("r")
    assert _error(exc) == ("DeleteConflict", "Cannot delete entity, must delete policies first.", 409)
    with pytest.raises(IamError) as exc:
        directory.delete_role_policy("r", "zz")
    assert _error(exc) == ("NoSuchEntity", "The role policy with name zz cannot be found.", 404)
    directory.delete_role_policy("r", "a")
    directory.delete_role_policy("r", "b")
    directory.delete_role("r")
    assert directory.list_roles() == []


def test_list_roles_by_path_prefix(directory: Directory) -> None:
    directory.create_role("b", TRUST_LAMBDA, path="/x/")
    directory.create_role("a", TRUST_LAMBDA)
    assert [r.name for r in directory.list_roles()] == ["a", "b"]
    assert [r.name for r in directory.list_roles("/x/")] == ["b"]


def test_users_keys_and_delete_conflicts(directory: Directory) -> None:
    user = directory.create_user("alice")
    assert user.user_id.startswith("AIDA") and user.arn == f"arn:aws:iam::{ACCT}:user/alice"
    with pytest.raises(IamError) as exc:
        directory.create_user("Alice")
    assert _error(exc) == ("EntityAlreadyExists", "User with name Alice already exists.", 409)
    k1 = directory.create_access_key("alice")
    k2 = directory.create_access_key("alice")
    assert k1.access_key_id.startswith("AKIA") and k1.principal_arn == user.arn
    with pytest.raises(IamError) as exc:
        directory.create_access_key("alice")
    assert _error(exc) == ("LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2", 409)
    directory.update_access_key("alice", k2.access_key_id, "Inactive")
    assert [k.status for k in directory.list_access_keys("alice")] == ["Active", "Inactive"]
    directory.put_user_policy("alice", "p", POLICY)
    with pytest.raises(IamError) as exc:
        directory.delete_user("alice")
    assert _error(exc) == ("DeleteConflict", "Cannot delete entity, must delete access keys first.", 409)
    directory.delete_access_key("alice", k1.access_key_id)
    directory.delete_access_key("alice", k2.access_key_id)
    with pytest.raises(IamError) as exc:
        directory.delete_access_key("alice", k2.access_key_id)
    assert _error(exc) == ("NoSuchEntity", f"The Access Key with id {k2.access_key_id} cannot be found.", 404)
    with pytest.raises(IamError) as exc:
        directory.delete_user("alice")
    assert _error(exc) == ("DeleteConflict", "Cannot delete entity, must delete policies first.", 409)
    directory.delete_user_policy("alice", "p")
    directory.delete_user("alice")
    with pytest.raises(IamError) as exc:
        directory.get_user("alice")
    assert _error(exc) == ("NoSuchEntity", "The user with name alice cannot be found.", 404)


def test_a_user_cannot_touch_another_principals_key(directory: Directory) -> None:
    directory.create_user("alice")
    directory.create_user("bob")
    key = directory.create_access_key("alice")
    with pytest.raises(IamError):
        directory.delete_access_key("bob", key.access_key_id)
    with pytest.raises(IamError):
        directory.update_access_key(None, key.access_key_id, "Inactive")  # None = root
    assert directory.list_access_keys("alice")[0].status == "Active"


def test_policies_for_principals(directory: Directory) -> None:
    directory.create_role("r", TRUST_LAMBDA, path="/p/")
    directory.put_role_policy("r", "p", POLICY)
    directory.create_user("u")
    directory.put_user_policy("u", "q", POLICY)
    assert directory.policies_for(f"arn:aws:sts::{ACCT}:assumed-role/r/s") == [POLICY]
    assert directory.policies_for(f"arn:aws:iam::{ACCT}:user/u") == [POLICY]
    assert directory.policies_for(f"arn:aws:iam::{ACCT}:root") == []
    assert directory.policies_for(f"arn:aws:sts::{ACCT}:assumed-role/ghost/s") == []
    assert directory.policies_for(f"arn:aws:iam::{ACCT}:user/path/u") == []  # another user's ARN


def test_role_trusts_and_default_role(directory: Directory) -> None:
    role = directory.ensure_default_role("lamina-exec", "lambda.amazonaws.com", "basic", POLICY)
    again = directory.ensure_default_role("lamina-exec", "lambda.amazonaws.com", "basic", POLICY)
    assert again == role
    assert directory.list_role_policies("lamina-exec") == ["basic"]
    assert directory.role_trusts(role.arn, "lambda.amazonaws.com")
    assert not directory.role_trusts(role.arn, "s3.amazonaws.com")
    assert not directory.role_trusts(f"arn:aws:iam::{ACCT}:role/missing", "lambda.amazonaws.com")
    assert not directory.role_trusts("arn:aws:iam::999999999999:role/lamina-exec", "lambda.amazonaws.com")


def test_arn_helpers() -> None:
    assert role_arn_of(f"arn:aws:sts::{ACCT}:assumed-role/r/s") == f"arn:aws:iam::{ACCT}:role/r"
    assert role_arn_of(f"arn:aws:iam::{ACCT}:role/a/r") == f"arn:aws:iam::{ACCT}:role/a/r"
    assert role_arn_of(f"arn:aws:iam::{ACCT}:user/u") is None
    assert user_name_of(f"arn:aws:iam::{ACCT}:user/x/u") == "u"
    assert user_name_of(f"arn:aws:iam::{ACCT}:root") is None


def test_the_administrator_key_cannot_be_deleted_or_deactivated(directory: Directory) -> None:
    admin = directory.create_access_key(None)  # a root key, as the bootstrapped one is
    other = directory.create_access_key(None)
    directory.protected_keys = frozenset({admin.access_key_id})
    for attempt in (lambda: directory.delete_access_key(None, admin.access_key_id),
                    lambda: directory.update_access_key(None, admin.access_key_id, "Inactive")):
        with pytest.raises(IamError) as exc:
            attempt()
        assert exc.value.code == "UnmodifiableEntity"
    directory.update_access_key(None, admin.access_key_id, "Active")  # harmless
    assert [k.status for k in directory.list_access_keys(None)] == ["Active", "Active"]
    directory.delete_access_key(None, other.access_key_id)  # other root keys are the root's to manage
    assert [k.access_key_id for k in directory.list_access_keys(None)] == [admin.access_key_id]


def test_entity_arn_adds_the_path(directory: Directory) -> None:
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    role = directory.create_role("Deployer", trust, path="/team/")
    user = directory.create_user("carol", path="/ops/")
    base = f"arn:aws:iam::{directory.account}:"
    assert directory.entity_arn(f"{base}role/Deployer") == role.arn == f"{base}role/team/Deployer"
    assert directory.entity_arn(f"{base}user/carol") == user.arn == f"{base}user/ops/carol"
    for unchanged in (f"{base}role/missing", f"{base}role/", "*", f"{base}policy/p",
                      "arn:aws:iam::999999999999:role/Deployer"):
        assert directory.entity_arn(unchanged) == unchanged


def _padded(size: int) -> str:
    """An identity policy of exactly ``size`` bytes without white space."""
    base = {"Version": "2012-10-17", "Statement": [
        {"Sid": "", "Effect": "Allow", "Action": "lambda:GetFunction", "Resource": "*"}]}
    pad = size - len(json.dumps(base, separators=(",", ":")))
    base["Statement"][0]["Sid"] = "x" * pad  # type: ignore[index]
    return json.dumps(base, indent=4)  # white space does not count


def test_policy_size_quotas(directory: Directory) -> None:
    directory.create_role("big", TRUST_LAMBDA)
    directory.put_role_policy("big", "a", _padded(6000))
    directory.put_role_policy("big", "a", _padded(6000))  # replacing itself does not add up
    directory.put_role_policy("big", "b", _padded(4240))  # 10,240 in all: at the quota
    with pytest.raises(IamError) as exc:
        directory.put_role_policy("big", "c", _padded(100))
    assert _error(exc) == ("LimitExceeded", "Maximum policy size of 10240 bytes exceeded for role big", 409)
    assert directory.list_role_policies("big") == ["a", "b"]

    directory.create_user("u")
    directory.put_user_policy("u", "a", _padded(2048))
    with pytest.raises(IamError) as exc:
        directory.put_user_policy("u", "b", _padded(50))
    assert _error(exc) == ("LimitExceeded", "Maximum policy size of 2048 bytes exceeded for user u", 409)

    trust = json.loads(TRUST_LAMBDA)
    trust["Statement"][0]["Sid"] = "t" * 2048
    with pytest.raises(IamError) as exc:
        directory.create_role("too-trusting", json.dumps(trust))
    assert _error(exc) == ("LimitExceeded", "Cannot exceed quota for ACLSizePerRole: 2048", 409)
