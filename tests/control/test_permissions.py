"""Function resource policies on the real SQLite store, an in-memory artifact store and a fake cipher."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.control.aliases import Aliases
from lamina.control.changes import ConfigChange
from lamina.control.functions import Functions
from lamina.control.permissions import (
    MAX_POLICY_BYTES,
    Grant,
    Permissions,
    PolicyLengthExceeded,
    drop_policy,
    principal_element,
    statement_for,
)
from lamina.errors import InvalidParameterValue, PreconditionFailed, ResourceConflict, ResourceNotFound
from lamina.iam.model import Role
from lamina.iam.policy import Request, evaluate
from lamina.settings import Settings
from lamina.store.artifacts import MemoryArtifactStore
from lamina.store.sqlite import SqliteMetadataStore

ACCOUNT = "000000000000"
ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/r"
INVOKE = "lambda:InvokeFunction"


class XorCipher:
    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return aad + b"|" + bytes(b ^ 0x5A for b in plaintext)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        bound, _, body = blob.partition(b"|")
        assert bound == aad
        return bytes(b ^ 0x5A for b in body)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("index.py", "def handler(e, c):\n    return e\n")
    return buf.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteMetadataStore]:
    s = SqliteMetadataStore(tmp_path / "db", XorCipher())
    yield s
    s.close()


@pytest.fixture
def functions(tmp_path: Path, store: SqliteMetadataStore) -> Functions:
    f = Functions(Settings(data_dir=tmp_path), store, MemoryArtifactStore(), ("python3.11",))

    async def setup() -> None:
        change = ConfigChange(runtime="python3.11", role=ROLE, handler="index.handler")
        await f.create("f", _zip(), change, publish=True)  # $LATEST and version 1
        await f.settle()

    asyncio.run(setup())
    Aliases(f).create("f", "live", "1")
    return f


@pytest.fixture
def permissions(functions: Functions) -> Permissions:
    return Permissions(functions)


def grant(sid: str = "s1", principal: str = "s3.amazonaws.com", **kw: object) -> Grant:
    return Grant(sid, INVOKE, principal, **kw)  # type: ignore[arg-type]


# -- statement building ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "element"),
    [
        ("*", "*"),
        ("123456789012", {"AWS": "arn:aws:iam::123456789012:root"}),
        ("arn:aws:iam::123456789012:role/deployer", {"AWS": "arn:aws:iam::123456789012:role/deployer"}),
        ("arn:aws:iam::123456789012:user/ops/alice", {"AWS": "arn:aws:iam::123456789012:user/ops/alice"}),
        ("arn:aws:sts::123456789012:assumed-role/r/s", {"AWS": "arn:aws:sts::123456789012:assumed-role/r/s"}),
        ("sns.amazonaws.com", {"Service": "sns.amazonaws.com"}),
        ("alexa-appkit.amazon.com", {"Service": "alexa-appkit.amazon.com"}),
    ],
)
def test_principal_element_follows_aws(principal: str, element: object) -> None:
    assert principal_element(principal) == element


@pytest.mark.parametrize("principal", ["bob", "12345", "arn:aws:s3:::bucket", "arn:aws:iam::123456789012:group/g"])
def test_unknown_principals_are_invalid(principal: str) -> None:
    with pytest.raises(InvalidParameterValue, match="The provided principal was invalid"):
        principal_element(principal)


def test_statement_has_aws_key_order_and_conditions() -> None:
    statement = statement_for(
        grant(source_arn="arn:aws:s3:::b", source_account="123456789012", principal_org_id="o-abcdefghij",
              event_source_token="tok", function_url_auth_type="NONE", invoked_via_function_url=True),
        ARN,
    )
    assert list(statement) == ["Sid", "Effect", "Principal", "Action", "Resource", "Condition"]
    assert statement["Condition"] == {
        "StringEquals": {
            "lambda:FunctionUrlAuthType": "NONE",
            "aws:PrincipalOrgID": "o-abcdefghij",
            "AWS:SourceAccount": "123456789012",
            "lambda:EventSourceToken": "tok",
        },
        "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::b"},
        "Bool": {"lambda:InvokedViaFunctionUrl": "true"},
    }
    assert "Condition" not in statement_for(grant(), ARN)


# -- add / get / remove ------------------------------------------------------------------


def test_add_then_get_returns_the_policy_and_the_functions_revision(
        permissions: Permissions, functions: Functions) -> None:
    before = functions.resolve("f").version.revision_id
    statement = permissions.add("f", grant(source_arn="arn:aws:s3:::b"))
    assert statement["Resource"] == ARN
    document, revision = permissions.get("f")
    assert json.loads(document) == {"Version": "2012-10-17", "Id": "default", "Statement": [statement]}
    assert " " not in document  # AWS's compact JSON
    after = functions.resolve("f").version.revision_id
    assert revision == after != before


def test_latest_qualifier_is_refused_on_add_but_reads_the_function_policy(permissions: Permissions) -> None:
    with pytest.raises(InvalidParameterValue, match=r"do not support adding policies for \$LATEST"):
        permissions.add("f", grant(), qualifier="$LATEST")
    permissions.add("f", grant())
    assert permissions.get("f", "$LATEST") == permissions.get("f")
    permissions.remove("f:$LATEST", "s1")
    with pytest.raises(ResourceNotFound, match="The resource you requested does not exist."):
        permissions.get("f")


def test_version_and_alias_policies_are_separate(permissions: Permissions, functions: Functions) -> None:
    assert permissions.add("f", grant(), qualifier="1")["Resource"] == f"{ARN}:1"
    assert permissions.add(f"{ARN}:live", grant())["Resource"] == f"{ARN}:live"  # same Sid, other resource
    _, alias_revision = permissions.get("f", "live")
    assert alias_revision == functions.alias("f", "live").revision_id
    with pytest.raises(ResourceNotFound):
        permissions.get("f")
    with pytest.raises(ResourceNotFound, match=f"Function not found: {ARN}:7"):
        permissions.add("f", grant(), qualifier="7")
    with pytest.raises(ResourceNotFound, match=f"Cannot find alias arn: {ARN}:nope"):
        permissions.add("f", grant(), qualifier="nope")


def test_missing_function(permissions: Permissions) -> None:
    with pytest.raises(ResourceNotFound, match=f"Function not found: {ARN}x"):
        permissions.add("fx", grant())
    with pytest.raises(ResourceNotFound, match=f"Function not found: {ARN}x"):
        permissions.get("fx")
    with pytest.raises(ResourceNotFound, match=f"No policy found for: {ARN}x"):
        permissions.remove("fx", "s1")


def test_duplicate_sid_conflicts(permissions: Permissions) -> None:
    permissions.add("f", grant())
    with pytest.raises(ResourceConflict) as exc:
        permissions.add("f", grant(principal="*"))
    assert exc.value.message == (
        "The statement id (s1) provided already exists. Please provide a new statement id, "
        "or remove the existing statement."
    )


def test_remove_errors_and_last_statement_drops_the_policy(permissions: Permissions) -> None:
    with pytest.raises(ResourceNotFound, match="No policy is associated with the given resource."):
        permissions.remove("f", "s1")
    permissions.add("f", grant("a"))
    permissions.add("f", grant("b"))
    with pytest.raises(ResourceNotFound) as exc:
        permissions.remove("f", "c")
    assert exc.value.message == "Statement c is not found in resource policy."
    permissions.remove("f", "a")
    assert [s["Sid"] for s in json.loads(permissions.get("f")[0])["Statement"]] == ["b"]
    permissions.remove("f", "b")
    with pytest.raises(ResourceNotFound, match="The resource you requested does not exist."):
        permissions.get("f")


def test_stale_revision_is_a_precondition_failure(permissions: Permissions, functions: Functions) -> None:
    current = functions.resolve("f").version.revision_id
    permissions.add("f", grant("a"), revision_id=current)
    with pytest.raises(PreconditionFailed, match="does not match the latest Revision Id"):
        permissions.add("f", grant("b"), revision_id=current)
    with pytest.raises(PreconditionFailed):
        permissions.remove("f", "a", revision_id=current)
    permissions.remove("f", "a", revision_id=permissions.get("f")[1])


def test_policy_size_limit(permissions: Permissions) -> None:
    long_arn = "arn:aws:s3:::" + "b" * 2000
    with pytest.raises(PolicyLengthExceeded) as exc:
        for i in range(20):
            permissions.add("f", grant(f"s{i}", source_arn=long_arn))
    assert exc.value.status == 400
    assert exc.value.code == "PolicyLengthExceededException"
    assert exc.value.message.startswith("The final policy size (")
    assert exc.value.message.endswith(f") is bigger than the limit ({MAX_POLICY_BYTES}).")
    assert len(permissions.get("f")[0]) <= MAX_POLICY_BYTES  # the failed add changed nothing


def test_drop_policy_and_function_delete(
        permissions: Permissions, functions: Functions, store: SqliteMetadataStore) -> None:
    permissions.add("f", grant(), qualifier="live")
    with store.transaction() as tx:
        drop_policy(tx, "f", "live")
    with pytest.raises(ResourceNotFound):
        permissions.get("f", "live")
    permissions.add("f", grant())
    functions.delete("f")
    with store.transaction() as tx:
        assert tx.get_function_policy("f", "") is None


# -- enforcement -------------------------------------------------------------------------


def test_resource_policy_is_parsed_cached_and_follows_writes(permissions: Permissions) -> None:
    assert permissions.resource_policy("f", None) is None
    permissions.add("f", grant(source_arn="arn:aws:s3:::b"))
    policy = permissions.resource_policy("f", None)
    assert policy is not None
    assert permissions.resource_policy("f", "$LATEST") is policy
    assert permissions.resource_policy("f", None) is policy  # cached until the next write
    assert permissions.resource_policy("f", "1") is None  # versions do not inherit it
    allowed = Request("s3.amazonaws.com", ACCOUNT, INVOKE, ARN, {"aws:SourceArn": "arn:aws:s3:::b"})
    other = Request("s3.amazonaws.com", ACCOUNT, INVOKE, ARN, {"aws:SourceArn": "arn:aws:s3:::x"})
    assert evaluate(allowed, [], policy).allowed
    assert not evaluate(other, [], policy).allowed
    permissions.remove("f", "s1")
    assert permissions.resource_policy("f", None) is None


def test_own_account_roles_and_users_must_exist(permissions: Permissions, store: SqliteMetadataStore) -> None:
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/app/caller"
    with pytest.raises(InvalidParameterValue, match="The provided principal was invalid"):
        permissions.add("f", grant("r", role_arn))
    with pytest.raises(InvalidParameterValue, match="The provided principal was invalid"):
        permissions.add("f", grant("u", f"arn:aws:iam::{ACCOUNT}:user/nobody"))
    with store.transaction() as tx:
        tx.put_role(Role("caller", role_arn, "AROA" + "A" * 16, "/app/", "2024-01-01T00:00:00Z", "{}"))
    assert permissions.add("f", grant("r", role_arn))["Principal"] == {"AWS": role_arn}
    with pytest.raises(InvalidParameterValue):  # same name, another path: not that role
        permissions.add("f", grant("r2", f"arn:aws:iam::{ACCOUNT}:role/caller"))
