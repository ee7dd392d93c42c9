"""Red team, second pass (SECURITY.md classes D, G, H): execution-role credential lifecycle,
STS edge cases, the query protocol's robustness, and resource policies — against a real server
with boto3, hand-signed HTTP and real functions in sandboxes.

Every test asserts the SAFE outcome (or AWS's documented behaviour where AWS is permissive).
Four attempts succeeded when this file was written and were closed since: credentials of a
function throttled to 0 stayed live, a form name with many dots stalled the event loop
(quadratic parse), hostile numbers and deeply nested policy JSON crashed with a bare 500; their
tests stay as regressions.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.exceptions import ClientError
from test_compat_support import (
    ACCOUNT,
    REGION,
    ROLE,
    Functions,
    Server,
    aws_client,
    client_for,
    function_arn,
    make_zip,
    stop_server,
    trust_policy,
    unique_name,
    wait_updated,
)

from lamina.api.keys import AccessKeys
from lamina.errors import ExpiredToken
from lamina.iam.credentials import ENVIRONMENT_LIFETIME, Credentials
from lamina.store.sqlite import SqliteMetadataStore
from lamina.worker.credentials import REFRESH_INTERVAL, LiveCredentials

LAMBDA_TRUST = trust_policy({"Service": "lambda.amazonaws.com"})
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}

# Returns its own credentials; with {"sleep": s} it first sleeps, then also asks STS who it is
# (through the relay), so a test can see whether the credentials still work mid-invoke.
CREDS_CODE = r"""
import json, os, time


def handler(event, context):
    out = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    with open("/tmp/creds.json", "w") as f:  # left for a snooper to look for
        json.dump(out, f)
    if event.get("sleep"):
        time.sleep(event["sleep"])
        import boto3
        from botocore.config import Config
        sts = boto3.client("sts", config=Config(retries={"total_max_attempts": 1}, connect_timeout=3, read_timeout=10))
        try:
            out["whoami"] = sts.get_caller_identity()["Arn"]
        except Exception as e:
            out["whoami"] = getattr(e, "response", {}).get("Error", {}).get("Code") or repr(e)[:80]
    return out
"""

# Looks everywhere a sandbox could see another environment for a string (another env's key id).
SNOOP_CODE = r"""
import os


def scan(path, needles, found, depth=0):
    if depth > 6:
        return
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        full = os.path.join(path, name)
        if os.path.islink(full):
            continue
        if os.path.isdir(full):
            scan(full, needles, found, depth + 1)
            continue
        try:
            with open(full, "rb") as f:
                data = f.read(1 << 20)
            if any(n in data for n in needles):
                found.append(full)
        except OSError:
            pass


def handler(event, context):
    needles = [n.encode() for n in event["needles"]]
    if event.get("plant"):  # the positive control: the scan finds what is there
        with open("/tmp/planted", "w") as f:
            f.write(event["plant"])
    found, pids = [], []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        pids.append(int(pid))
        for leaf in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{leaf}", "rb") as f:
                    data = f.read()
                if any(n in data for n in needles):
                    found.append(f"/proc/{pid}/{leaf}")
            except OSError:
                pass
    for root in ("/tmp", "/run", "/dev/shm", "/var/tmp", "/var/run"):
        scan(root, needles, found)
    own = os.environ.get("AWS_ACCESS_KEY_ID", "")
    return {"found": found, "pids": sorted(pids), "own_is_needle": own.encode() in needles}
"""


# -- helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Creds:
    key: str
    secret: str
    token: str | None = None

    def client(self, server: Server, service: str, *, validate: bool = True) -> Any:
        return aws_client(server, service, self.key, self.secret, self.token, validate=validate)


def env_creds(lam: Any, name: str, qualifier: str | None = None, **event: Any) -> Creds:
    params: dict[str, Any] = {"FunctionName": name, "Payload": json.dumps(event).encode()}
    if qualifier is not None:
        params["Qualifier"] = qualifier
    response = lam.invoke(**params)
    out = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, out
    return Creds(out["AWS_ACCESS_KEY_ID"], out["AWS_SECRET_ACCESS_KEY"], out["AWS_SESSION_TOKEN"])


def whoami(server: Server, creds: Creds) -> str | tuple[str, int]:
    """The caller's ARN, or (error code, status) when the credentials are refused."""
    try:
        return str(creds.client(server, "sts").get_caller_identity()["Arn"])
    except ClientError as exc:
        return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def refused(call: Callable[..., Any], **params: Any) -> tuple[str, int]:
    try:
        result = call(**params)
    except ClientError as exc:
        return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]
    pytest.fail(f"{getattr(call, '__name__', call)}({params}) succeeded: {result}")


def signed_form(
    server: Server,
    body: bytes,
    *,
    service: str = "iam",
    creds: Creds | None = None,
    query: str = "",
    timeout: float = 30,
) -> tuple[int, bytes, float]:
    """POST ``body`` as a form to ``/`` signed with botocore's SigV4Auth: (status, body, seconds)."""
    key, secret = server.credentials()
    who = creds or Creds(key, secret)
    target = "/" + (f"?{query}" if query else "")
    request = AWSRequest(method="POST", url=server.endpoint + target, data=body, headers=dict(FORM))
    botocore.auth.SigV4Auth(BotoCredentials(who.key, who.secret, who.token), service, REGION).add_auth(
        request
    )
    headers = dict(request.prepare().headers.items())
    parts = urllib.parse.urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request("POST", target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(), time.monotonic() - started
    finally:
        conn.close()


class Iam:
    """Users and roles made with the admin key, all removed at teardown."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.iam = aws_client(server, "iam")
        self.users: list[str] = []
        self.roles: list[str] = []

    def user(self, *documents: str) -> tuple[str, Creds]:
        name = unique_name("rt2u")
        arn: str = self.iam.create_user(UserName=name)["User"]["Arn"]
        self.users.append(name)
        for i, document in enumerate(documents):
            self.iam.put_user_policy(UserName=name, PolicyName=f"p{i}", PolicyDocument=document)
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        return arn, Creds(key["AccessKeyId"], key["SecretAccessKey"])

    def role(self, trust: str, *documents: str, name: str | None = None, **params: Any) -> str:
        name = name or unique_name("rt2r")
        arn: str = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust, **params)["Role"][
            "Arn"
        ]
        self.roles.append(name)
        for i, document in enumerate(documents):
            self.iam.put_role_policy(RoleName=name, PolicyName=f"p{i}", PolicyDocument=document)
        return arn

    def cleanup(self) -> None:
        for name in self.users:
            try:
                for key in self.iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
                    self.iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
                for policy in self.iam.list_user_policies(UserName=name)["PolicyNames"]:
                    self.iam.delete_user_policy(UserName=name, PolicyName=policy)
                self.iam.delete_user(UserName=name)
            except ClientError:
                pass
        for name in self.roles:
            try:
                for policy in self.iam.list_role_policies(RoleName=name)["PolicyNames"]:
                    self.iam.delete_role_policy(RoleName=name, PolicyName=policy)
                self.iam.delete_role(RoleName=name)
            except ClientError:
                pass


@pytest.fixture
def ids(server: Server) -> Iterator[Iam]:
    helper = Iam(server)
    yield helper
    helper.cleanup()


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(action: str | list[str], resource: str = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


# == 1. execution-role credentials: lifecycle ==================================================


@pytest.mark.parametrize("change", ["code", "configuration", "delete", "role"])
def test_idle_env_credentials_die_when_the_function_changes(
    server: Server, lam: Any, functions: Functions, ids: Iam, change: str
) -> None:
    name = unique_name(f"life-{change}")
    functions.create(name, code=make_zip({"index.py": CREDS_CODE}))
    creds = env_creds(lam, name)
    assert whoami(server, creds) == f"arn:aws:sts::{ACCOUNT}:assumed-role/lambda-role/{name}"
    if change == "code":
        lam.update_function_code(FunctionName=name, ZipFile=make_zip({"index.py": CREDS_CODE + "\n# v2\n"}))
    elif change == "configuration":
        lam.update_function_configuration(FunctionName=name, Description="changed")
    elif change == "role":
        lam.update_function_configuration(FunctionName=name, Role=ids.role(LAMBDA_TRUST))
    else:
        lam.delete_function(FunctionName=name)
        functions.created.remove(name)
    # Right after the call returned: no grace period for an idle environment.
    assert whoami(server, creds) == ("InvalidClientTokenId", 403)


def test_idle_env_credentials_die_when_the_function_is_throttled_to_zero(
    server: Server, lam: Any, functions: Functions
) -> None:
    name = unique_name("life-throttle")
    functions.create(name, code=make_zip({"index.py": CREDS_CODE}))
    creds = env_creds(lam, name)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert refused(lam.invoke, FunctionName=name)[1] == 429
    assert whoami(server, creds) == ("InvalidClientTokenId", 403)


def test_deleting_a_version_kills_its_environments_credentials(
    server: Server, lam: Any, functions: Functions
) -> None:
    name = unique_name("life-version")
    functions.create(name, code=make_zip({"index.py": CREDS_CODE}))
    version = lam.publish_version(FunctionName=name)["Version"]
    creds = env_creds(lam, name, version)
    assert isinstance(whoami(server, creds), str)
    lam.delete_function(FunctionName=name, Qualifier=version)
    assert whoami(server, creds) == ("InvalidClientTokenId", 403)


def test_a_busy_env_may_finish_but_its_credentials_die_with_it(
    server: Server, lam: Any, functions: Functions
) -> None:
    name = unique_name("life-busy")
    functions.create(name, code=make_zip({"index.py": CREDS_CODE}), Timeout=30)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(env_creds, lam, name, sleep=2.5)
        time.sleep(1.0)  # the invoke is in its sleep now
        lam.update_function_configuration(FunctionName=name, Description="changed mid-invoke")
        creds = running.result(timeout=30)
    assert whoami(server, creds) == ("InvalidClientTokenId", 403)
    # The next invoke runs in a new environment with new credentials.
    fresh = env_creds(lam, name)
    assert fresh.key != creds.key and isinstance(whoami(server, fresh), str)


def test_leaked_credentials_die_with_their_function_while_a_sibling_lives(
    server: Server, lam: Any, functions: Functions
) -> None:
    """Two functions with the same role: their sessions differ by name and by key, so one's
    deletion kills its keys and only its keys."""
    first, second = unique_name("sib-a"), unique_name("sib-b")
    for name in (first, second):
        functions.create(name, code=make_zip({"index.py": CREDS_CODE}))
    a, b = env_creds(lam, first), env_creds(lam, second)
    assert a.key != b.key
    lam.delete_function(FunctionName=first)
    functions.created.remove(first)
    assert whoami(server, a) == ("InvalidClientTokenId", 403)
    assert whoami(server, b) == f"arn:aws:sts::{ACCOUNT}:assumed-role/lambda-role/{second}"
    # Mixing one env's key id with the other's secret or token never signs.
    for mixed in (
        Creds(a.key, b.secret, b.token),
        Creds(b.key, a.secret, b.token),
        Creds(b.key, b.secret, a.token),
    ):
        refusal = whoami(server, mixed)
        assert isinstance(refusal, tuple) and refusal[1] == 403, refusal


def test_env_credentials_carry_only_their_roles_policy_and_follow_its_changes(
    server: Server, lam: Any, functions: Functions, ids: Iam
) -> None:
    name, other = unique_name("scoped"), unique_name("scoped-other")
    role = ids.role(LAMBDA_TRUST, _doc(_allow("lambda:GetFunction", function_arn(name))))
    functions.create(name, code=make_zip({"index.py": CREDS_CODE}), Role=role)
    functions.create(other)
    creds = env_creds(lam, name)
    inside = creds.client(server, "lambda")
    assert inside.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    assert refused(inside.get_function, FunctionName=other) == ("AccessDeniedException", 403)
    role_name = role.rsplit("/", 1)[-1]
    ids.iam.delete_role_policy(RoleName=role_name, PolicyName="p0")
    assert refused(inside.get_function, FunctionName=name) == ("AccessDeniedException", 403)


def test_env_credentials_of_a_deleted_role_do_not_bind_to_a_recreated_one(
    server: Server, lam: Any, functions: Functions, ids: Iam
) -> None:
    name = unique_name("recreated")
    role_name = unique_name("rt2-gone")
    role = ids.role(LAMBDA_TRUST, name=role_name)
    functions.create(name, code=make_zip({"index.py": CREDS_CODE}), Role=role)
    creds = env_creds(lam, name)
    ids.iam.delete_role(RoleName=role_name)
    ids.role(LAMBDA_TRUST, _doc(_allow("lambda:ListFunctions")), name=role_name)
    assert whoami(server, creds) == ("InvalidClientTokenId", 403)
    assert refused(creds.client(server, "lambda").list_functions)[1] == 403


def test_env_credentials_do_not_survive_a_restart(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """Environment keys live only in memory; AssumeRole sessions are persisted and, as on AWS,
    stay valid until they expire."""
    data = tmp_path / "restart-data"
    first = server_factory(data)
    lam = client_for(first)
    helper = Functions(lam)
    name = unique_name("restart")
    helper.create(name, code=make_zip({"index.py": CREDS_CODE}))
    creds = env_creds(lam, name)
    iam = aws_client(first, "iam")
    admin = f"arn:aws:iam::{ACCOUNT}:root"
    role = iam.create_role(RoleName="rt2-restart", AssumeRolePolicyDocument=trust_policy({"AWS": admin}))[
        "Role"
    ]
    session = aws_client(first, "sts").assume_role(RoleArn=role["Arn"], RoleSessionName="kept")["Credentials"]
    assumed = Creds(session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"])
    assert isinstance(whoami(first, creds), str) and isinstance(whoami(first, assumed), str)
    stop_server(first)
    second = server_factory(data)
    assert whoami(second, creds) == ("InvalidClientTokenId", 403)
    assert whoami(second, assumed) == f"arn:aws:sts::{ACCOUNT}:assumed-role/rt2-restart/kept"
    # A new environment after the restart gets new, working credentials.
    fresh = env_creds(client_for(second), name)
    assert fresh.key != creds.key and isinstance(whoami(second, fresh), str)


def test_a_function_cannot_find_another_environments_credentials(
    server: Server, lam: Any, functions: Functions
) -> None:
    victim, snoop = unique_name("snoop-victim"), unique_name("snoop")
    functions.create(victim, code=make_zip({"index.py": CREDS_CODE}))
    functions.create(snoop, code=make_zip({"index.py": SNOOP_CODE}), Timeout=30)
    secret = env_creds(lam, victim)  # the victim's env stays warm with these in its environ
    needles = [secret.key, secret.secret, secret.token or ""]
    response = lam.invoke(FunctionName=snoop, Payload=json.dumps({"needles": needles}).encode())
    out = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, out
    assert out["found"] == [] and not out["own_is_needle"], out
    assert len(out["pids"]) < 16, out  # only the sandbox's own processes are visible
    # The scan itself works: it finds the victim's key where the victim left it in its own /tmp.
    planted = json.dumps({"needles": [secret.key], "plant": secret.key}).encode()
    assert json.loads(lam.invoke(FunctionName=snoop, Payload=planted)["Payload"].read())["found"] == [
        "/tmp/planted"
    ]


def test_env_credentials_stay_valid_for_hours_only_while_refreshed(tmp_path: Path) -> None:
    """Unit level: the worker's refresh loop keeps a long-lived environment's key valid; one
    nobody refreshes expires (ExpiredToken) and a revoked one never comes back."""

    class Plain:
        def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
            return plaintext

        def decrypt(self, blob: bytes, aad: bytes) -> bytes:
            return blob

    assert ENVIRONMENT_LIFETIME.total_seconds() > REFRESH_INTERVAL * 2  # a missed tick is survivable
    now = [datetime(2024, 5, 1, tzinfo=timezone.utc)]
    store = SqliteMetadataStore(tmp_path / "db", Plain())
    issuer = Credentials(store, ACCOUNT, clock=lambda: now[0])
    keys = AccessKeys(store, exclude="none", sessions=issuer.live, clock=lambda: now[0])
    live = LiveCredentials(issuer, REFRESH_INTERVAL)
    kept = live.issue(ROLE, "long-lived")
    forgotten = issuer.issue(ROLE, "never-refreshed")  # not tracked by the worker's loop
    revoked = live.issue(ROLE, "revoked")
    live.revoke(revoked.access_key_id)
    for _ in range(int(timedelta(hours=3).total_seconds() // REFRESH_INTERVAL)):
        now[0] += timedelta(seconds=REFRESH_INTERVAL)
        live.refresh_all()
        assert keys(kept.access_key_id) is not None
        issuer.refresh(revoked.access_key_id)  # a late refresh must not resurrect it
        assert keys(revoked.access_key_id) is None
    with pytest.raises(ExpiredToken):
        keys(forgotten.access_key_id)
    store.close()


# == 2. STS ====================================================================================


def test_odd_session_and_entity_names_do_not_confuse_the_principal(server: Server, ids: Iam) -> None:
    """A user named like a role, session names with '@', '=', ',' and '.': the ARNs stay
    unambiguous and each credential gets its own entity's policies only."""
    shared = unique_name("same")
    user_arn, user = ids.user(_doc(_allow("sts:AssumeRole")))
    role_arn = ids.role(trust_policy({"AWS": user_arn}), _doc(_allow("lambda:ListFunctions")), name=shared)
    twin_arn, twin = ids.user()
    sts = user.client(server, "sts", validate=False)
    for session in ("a@b.c", "x=y,z", "assumed-role", "role", "..", "=,@-.+_", "a" * 64):
        out = sts.assume_role(RoleArn=role_arn, RoleSessionName=session)
        assert out["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{shared}/{session}"
        creds = Creds(*(out["Credentials"][k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")))
        ident = creds.client(server, "sts").get_caller_identity()
        assert ident["Arn"] == out["AssumedRoleUser"]["Arn"]
        assert ident["UserId"].endswith(":" + session) and ident["UserId"].startswith("AROA")
        session_lambda = creds.client(server, "lambda")
        session_lambda.list_functions()
        assert refused(creds.client(server, "iam").get_user, UserName=twin_arn.rsplit("/", 1)[-1])[1] == 403
    for bad in ("a/b", "a:b", "a b", "x", "a" * 65, "role/x/assumed-role"):
        assert refused(sts.assume_role, RoleArn=role_arn, RoleSessionName=bad)[0] == "ValidationError", bad
    # Role and user names cannot carry the separators either.
    for bad in ("x/assumed-role", "a:b", "assumed-role/r/s"):
        assert (
            refused(ids.iam.create_role, RoleName=bad, AssumeRolePolicyDocument=LAMBDA_TRUST)[0]
            == "ValidationError"
        )
        assert refused(ids.iam.create_user, UserName=bad)[0] == "ValidationError"
    # A user whose name equals the role's: its own policies, never the role's.
    ids.iam.create_user(UserName=shared)
    ids.users.append(shared)
    key = ids.iam.create_access_key(UserName=shared)["AccessKey"]
    namesake = Creds(key["AccessKeyId"], key["SecretAccessKey"])
    assert (
        namesake.client(server, "sts").get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{shared}"
    )
    assert refused(namesake.client(server, "lambda").list_functions) == ("AccessDeniedException", 403)
    assert twin.client(server, "sts").get_caller_identity()["Arn"] == twin_arn


def test_get_caller_identity_for_every_credential_type(
    server: Server, lam: Any, functions: Functions, ids: Iam
) -> None:
    admin = aws_client(server, "sts").get_caller_identity()
    assert admin["Arn"] == f"arn:aws:iam::{ACCOUNT}:root" and admin["UserId"] == ACCOUNT
    user_arn, user = ids.user()  # no policy at all: GetCallerIdentity needs none
    out = user.client(server, "sts").get_caller_identity()
    assert out["Arn"] == user_arn and out["UserId"].startswith("AIDA") and out["Account"] == ACCOUNT
    role_arn = ids.role(trust_policy({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}))
    session = aws_client(server, "sts").assume_role(RoleArn=role_arn, RoleSessionName="gci")
    creds = Creds(*(session["Credentials"][k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")))
    out = creds.client(server, "sts").get_caller_identity()
    assert out["Arn"] == session["AssumedRoleUser"]["Arn"]
    assert out["UserId"] == session["AssumedRoleUser"]["AssumedRoleId"]
    name = unique_name("gci")
    functions.create(name, code=make_zip({"index.py": CREDS_CODE}))
    env = env_creds(lam, name)
    out = env.client(server, "sts").get_caller_identity()
    assert out["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/lambda-role/{name}"
    assert out["UserId"].startswith("AROA") and out["UserId"].endswith(":" + name)
    # No token at all with an ASIA key, and a long-term key with no secret: both refused.
    assert whoami(server, Creds(env.key, env.secret)) == ("InvalidClientTokenId", 403)


def test_duration_bounds_and_role_chaining(server: Server, ids: Iam) -> None:
    user_arn, user = ids.user(_doc(_allow("sts:AssumeRole")))
    role_arn = ids.role(trust_policy({"AWS": user_arn}), MaxSessionDuration=7200)
    sts = user.client(server, "sts", validate=False)

    def lasts(seconds: int) -> float:
        out = sts.assume_role(RoleArn=role_arn, RoleSessionName="dur", DurationSeconds=seconds)
        left: timedelta = out["Credentials"]["Expiration"] - datetime.now(timezone.utc)
        return left.total_seconds()

    assert 890 < lasts(900) <= 900
    assert 7190 < lasts(7200) <= 7200
    for seconds in (0, -1, 899, 7201, 43200, 43201, 2**31):
        outcome = refused(sts.assume_role, RoleArn=role_arn, RoleSessionName="dur", DurationSeconds=seconds)
        assert outcome == ("ValidationError", 400), seconds
    out = sts.assume_role(RoleArn=role_arn, RoleSessionName="hop")["Credentials"]
    hop = Creds(out["AccessKeyId"], out["SecretAccessKey"], out["SessionToken"])
    both = {"Effect": "Allow", "Principal": {"AWS": [user_arn, role_arn]}, "Action": "sts:AssumeRole"}
    ids.iam.update_assume_role_policy(RoleName=role_arn.rsplit("/", 1)[-1], PolicyDocument=_doc(both))
    ids.iam.put_role_policy(
        RoleName=role_arn.rsplit("/", 1)[-1],
        PolicyName="chain",
        PolicyDocument=_doc(_allow("sts:AssumeRole")),
    )
    chained = hop.client(server, "sts", validate=False)
    assert chained.assume_role(RoleArn=role_arn, RoleSessionName="chain", DurationSeconds=3600)
    for seconds in (3601, 7200):
        code, status = refused(
            chained.assume_role, RoleArn=role_arn, RoleSessionName="chain", DurationSeconds=seconds
        )
        assert (code, status) == ("ValidationError", 400), seconds
    # Default duration when chaining stays within the hour.
    out = chained.assume_role(RoleArn=role_arn, RoleSessionName="chain2")["Credentials"]
    assert (out["Expiration"] - datetime.now(timezone.utc)).total_seconds() <= 3600


def test_trust_policy_change_keeps_existing_sessions_as_on_aws(server: Server, ids: Iam) -> None:
    """AWS: changing a trust policy refuses new AssumeRole calls; sessions already issued stay
    valid until they expire (revoking them takes an explicit deny on aws:TokenIssueTime).
    Lamina does the same."""
    user_arn, user = ids.user(_doc(_allow("sts:AssumeRole")))
    role_arn = ids.role(trust_policy({"AWS": user_arn}), _doc(_allow("lambda:ListFunctions")))
    sts = user.client(server, "sts")
    out = sts.assume_role(RoleArn=role_arn, RoleSessionName="before")["Credentials"]
    session = Creds(out["AccessKeyId"], out["SecretAccessKey"], out["SessionToken"])
    ids.iam.update_assume_role_policy(
        RoleName=role_arn.rsplit("/", 1)[-1],
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
            }
        ),
    )
    assert refused(sts.assume_role, RoleArn=role_arn, RoleSessionName="after") == ("AccessDenied", 403)
    assert (
        whoami(server, session) == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_arn.rsplit('/', 1)[-1]}/before"
    )
    session.client(server, "lambda").list_functions()  # still the role's permissions


# == 3. the query protocol =====================================================================


def test_oversized_many_and_duplicate_parameters(server: Server, ids: Iam) -> None:
    status, body, _ = signed_form(
        server, b"Action=ListRoles&Version=2010-05-08&x=" + b"a" * (1024 * 1024 + 1)
    )
    assert status == 413 and b"<Code>RequestEntityTooLarge</Code>" in body
    many = b"Action=ListRoles&Version=2010-05-08&" + b"&".join(b"p%d=1" % i for i in range(60000))
    status, body, seconds = signed_form(server, many)
    assert status == 200 and seconds < 5, (status, seconds)
    # Duplicate Action: one value wins, and it is the one the authorization saw.
    _, reader = ids.user(_doc(_allow("iam:GetUser")))
    victim = unique_name("dup")
    for body_ in (
        f"Action=GetUser&Action=CreateUser&Version=2010-05-08&UserName={victim}",
        f"Action=CreateUser&Version=2010-05-08&UserName={victim}&Action=GetUser&UserName=x",
    ):
        status, _, _ = signed_form(server, body_.encode(), creds=reader)
        assert status in (403, 404), body_
    assert refused(ids.iam.get_user, UserName=victim)[0] == "NoSuchEntity"
    # Action only in the query string of a POST, and a GET-style query on a POST body.
    status, _, _ = signed_form(
        server,
        b"Version=2010-05-08&UserName=" + victim.encode(),
        creds=reader,
        query=f"Action=CreateUser&UserName={victim}",
    )
    assert status in (400, 403)
    assert refused(ids.iam.get_user, UserName=victim)[0] == "NoSuchEntity"


def test_sparse_list_indices_do_not_allocate(server: Server, ids: Iam) -> None:
    role = ids.role(LAMBDA_TRUST).rsplit("/", 1)[-1]
    body = (
        f"Action=TagRole&Version=2010-05-08&RoleName={role}"
        "&Tags.member.999999999.Key=k&Tags.member.999999999.Value=v"
    ).encode()
    status, _, seconds = signed_form(server, body)
    assert status == 200 and seconds < 2
    assert ids.iam.list_role_tags(RoleName=role)["Tags"] == [{"Key": "k", "Value": "v"}]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            b"Action=ListRoles&Version=2010-05-08&MaxItems=" + b"9" * 5000, id="integer-5000-digits"
        ),
        pytest.param(
            b"Action=TagRole&Version=2010-05-08&RoleName=lambda-role&Tags.member."
            + b"1" * 5000
            + b".Key=k&Tags.member.1.Value=v",
            id="list-index-5000-digits",
        ),
    ],
)
def test_hostile_numbers_in_forms_are_a_400(server: Server, body: bytes) -> None:
    status, text, _ = signed_form(server, body)
    assert status == 400 and text.startswith(b"<ErrorResponse"), (status, text[:200])


def test_a_list_position_that_is_not_a_decimal_number_names_nothing(server: Server) -> None:
    """'²' passes str.isdigit() but is no position: the name is unknown and ignored (AWS
    ignores parameters it does not know), never a crash."""
    body = "Action=TagRole&Version=2010-05-08&RoleName=lambda-role&Tags.member.\u00b2.Key=k".encode()
    status, text, _ = signed_form(server, body)
    assert status == 200, (status, text[:200])
    tags = aws_client(server, "iam").list_role_tags(RoleName="lambda-role")["Tags"]
    assert all(t["Key"] != "k" for t in tags)


def test_a_name_of_many_dots_is_parsed_in_linear_time(server: Server) -> None:
    body = b"Action=ListRoles&Version=2010-05-08&" + b"." * 30000 + b"=1"
    status, _, seconds = signed_form(server, body)
    assert status in (200, 400) and seconds < 1.0, (status, seconds)


def test_invalid_utf8_is_a_client_error(server: Server) -> None:
    for body in (
        b"Action=CreateUser&Version=2010-05-08&UserName=a%FF%FEb",
        b"Action=CreateUser&Version=2010-05-08&UserName=a\xff\xfeb",
    ):
        status, text, _ = signed_form(server, body)
        assert 400 <= status < 500 and b"<ErrorResponse" in text, (status, text)


def test_xml_special_characters_are_escaped_when_echoed(server: Server, ids: Iam) -> None:
    hostile = "a<b>&c\"d'e]]></Description><Injected>1</Injected>"
    role = ids.role(LAMBDA_TRUST, Description=hostile)
    name = role.rsplit("/", 1)[-1]
    assert ids.iam.get_role(RoleName=name)["Role"]["Description"] == hostile
    assert ids.iam.list_roles()["Roles"] and any(
        r.get("Description") == hostile for r in ids.iam.list_roles()["Roles"]
    )
    status, text, _ = signed_form(server, f"Action=GetRole&Version=2010-05-08&RoleName={name}".encode())
    assert status == 200 and b"<Injected>" not in text
    # In error messages too (the name is echoed in NoSuchEntity).
    status, text, _ = signed_form(server, b"Action=GetRole&Version=2010-05-08&RoleName=%3CInjected%3E")
    assert status in (400, 404) and b"<Injected>" not in text


def _padded(size: int) -> str:
    """An identity policy of exactly ``size`` characters (no whitespace to discount)."""
    statement = _allow("lambda:GetFunction", function_arn("x"))
    base = {"Version": "2012-10-17", "Statement": [statement]}
    statement["Resource"] += "a" * (size - len(json.dumps(base, separators=(",", ":"))))
    text = json.dumps(base, separators=(",", ":"))
    assert len(text) == size
    return text


def test_policy_with_ten_thousand_statements_is_refused(server: Server, ids: Iam) -> None:
    statements = [
        dict(_allow("lambda:GetFunction", function_arn(f"f{i}")), Sid=f"s{i}") for i in range(10000)
    ]
    role = ids.role(LAMBDA_TRUST).rsplit("/", 1)[-1]
    code, status = refused(
        ids.iam.put_role_policy,
        RoleName=role,
        PolicyName="huge",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    assert status in (400, 409, 413), code
    assert ids.iam.list_role_policies(RoleName=role)["PolicyNames"] == []


@pytest.mark.parametrize(("kind", "limit"), [("role", 10240), ("user", 2048), ("managed", 6144)])
def test_policy_size_quotas(server: Server, ids: Iam, kind: str, limit: int) -> None:
    if kind == "role":
        role = ids.role(LAMBDA_TRUST).rsplit("/", 1)[-1]
        ids.iam.put_role_policy(RoleName=role, PolicyName="fits", PolicyDocument=_padded(limit // 2))
        code = refused(
            ids.iam.put_role_policy, RoleName=role, PolicyName="over", PolicyDocument=_padded(limit // 2 + 1)
        )[0]
    elif kind == "user":
        arn, _ = ids.user()
        user = arn.rsplit("/", 1)[-1]
        ids.iam.put_user_policy(UserName=user, PolicyName="fits", PolicyDocument=_padded(limit // 2))
        code = refused(
            ids.iam.put_user_policy, UserName=user, PolicyName="over", PolicyDocument=_padded(limit // 2 + 1)
        )[0]
    else:
        made: list[str] = []
        try:
            made.append(
                ids.iam.create_policy(PolicyName=unique_name("fits"), PolicyDocument=_padded(limit))[
                    "Policy"
                ]["Arn"]
            )
            try:
                made.append(
                    ids.iam.create_policy(PolicyName=unique_name("over"), PolicyDocument=_padded(limit + 1))[
                        "Policy"
                    ]["Arn"]
                )
                code = "created"
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
        finally:
            for arn in made:
                ids.iam.delete_policy(PolicyArn=arn)
    assert code == "LimitExceeded"


def test_deeply_nested_policy_documents_are_malformed(server: Server, ids: Iam) -> None:
    nested = "[" * 50000 + "]" * 50000
    arn, _ = ids.user()
    role = ids.role(LAMBDA_TRUST).rsplit("/", 1)[-1]
    attempts: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (ids.iam.put_user_policy, {"UserName": arn.rsplit("/", 1)[-1], "PolicyName": "deep"}),
        (ids.iam.update_assume_role_policy, {"RoleName": role}),
        (ids.iam.create_policy, {"PolicyName": unique_name("deep")}),
    ]
    for call, params in attempts:
        try:
            call(PolicyDocument=nested, **params)
            outcome: Any = "created"
        except ClientError as exc:
            outcome = exc.response["Error"]["Code"]
        except Exception as exc:  # botocore cannot parse a non-XML 500
            outcome = type(exc).__name__
        assert outcome == "MalformedPolicyDocument", (call, outcome)


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param([], id="statement-empty"),
        pytest.param({"Effect": "Allow", "Action": 5, "Resource": "*"}, id="action-number"),
        pytest.param({"Effect": "Allow", "Action": {"lambda": "*"}, "Resource": "*"}, id="action-object"),
        pytest.param({"Effect": "Allow", "Action": [], "Resource": "*"}, id="action-empty"),
        pytest.param({"Effect": "allow", "Action": "*", "Resource": "*"}, id="effect-lowercase"),
        pytest.param(
            {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": None}, id="condition-null"
        ),
        pytest.param({"Effect": "Allow", "Action": "*", "Resource": 7}, id="resource-number"),
        pytest.param("Allow", id="statement-string"),
    ],
)
def test_absurd_policy_documents_are_malformed(server: Server, ids: Iam, statement: Any) -> None:
    arn, user = ids.user()
    document = json.dumps({"Version": "2012-10-17", "Statement": statement})
    assert refused(
        ids.iam.put_user_policy, UserName=arn.rsplit("/", 1)[-1], PolicyName="x", PolicyDocument=document
    ) == ("MalformedPolicyDocument", 400)
    assert refused(user.client(server, "lambda").list_functions)[1] == 403


def test_version_missing_is_accepted_as_on_aws_and_grants_only_what_it_says(server: Server, ids: Iam) -> None:
    arn, user = ids.user()
    ids.iam.put_user_policy(
        UserName=arn.rsplit("/", 1)[-1],
        PolicyName="old",
        PolicyDocument=json.dumps({"Statement": [_allow("lambda:ListFunctions")]}),
    )
    user.client(server, "lambda").list_functions()
    assert refused(user.client(server, "lambda").get_account_settings) == ("AccessDeniedException", 403)


def test_empty_condition_value_lists_grant_nothing(server: Server, ids: Iam) -> None:
    arn, user = ids.user()
    name = arn.rsplit("/", 1)[-1]
    conditions: list[dict[str, dict[str, list[str]]]] = [
        {"StringEquals": {"aws:username": []}},
        {"StringLike": {"aws:username": []}},
    ]
    for i, condition in enumerate(conditions):
        ids.iam.put_user_policy(
            UserName=name,
            PolicyName=f"c{i}",
            PolicyDocument=_doc(_allow("lambda:ListFunctions", Condition=condition)),
        )
    assert refused(user.client(server, "lambda").list_functions) == ("AccessDeniedException", 403)


# == 4. resource policies ======================================================================


def _invoker(ids: Iam) -> tuple[str, Creds]:
    """A user with no identity policy: anything it can do comes from a resource policy."""
    return ids.user()


def test_principal_star_grants_every_caller_as_on_aws(
    server: Server, lam: Any, functions: Functions, ids: Iam
) -> None:
    name = unique_name("star")
    functions.create(name)
    _, user = _invoker(ids)
    assert refused(user.client(server, "lambda").invoke, FunctionName=name) == ("AccessDeniedException", 403)
    lam.add_permission(FunctionName=name, StatementId="all", Action="lambda:InvokeFunction", Principal="*")
    assert user.client(server, "lambda").invoke(FunctionName=name)["StatusCode"] == 200
    # ...but only the action granted.
    assert refused(user.client(server, "lambda").get_function, FunctionName=name) == (
        "AccessDeniedException",
        403,
    )


@pytest.mark.parametrize("condition", ["SourceArn", "SourceAccount", "EventSourceToken"])
def test_service_style_conditions_grant_api_callers_nothing(
    server: Server, lam: Any, functions: Functions, ids: Iam, condition: str
) -> None:
    name = unique_name("cond")
    functions.create(name)
    _, user = _invoker(ids)
    params: dict[str, Any] = {
        "FunctionName": name,
        "StatementId": "s",
        "Action": "lambda:InvokeFunction",
        "Principal": "*",
    }
    if condition == "SourceArn":
        params["SourceArn"] = "arn:aws:s3:::*"
    elif condition == "SourceAccount":
        params["SourceAccount"] = ACCOUNT
    else:
        params["EventSourceToken"] = "secret-token"
    lam.add_permission(**params)
    assert refused(user.client(server, "lambda").invoke, FunctionName=name) == ("AccessDeniedException", 403)
    ul = user.client(server, "lambda")
    ul.meta.events.register("before-sign.lambda.Invoke", _add_source_headers)
    assert refused(ul.invoke, FunctionName=name) == ("AccessDeniedException", 403)


def _add_source_headers(request: Any, **_: Any) -> None:
    request.headers["x-amz-source-arn"] = "arn:aws:s3:::bucket"
    request.headers["x-amz-source-account"] = ACCOUNT
    request.headers["X-Amz-Event-Source-Token"] = "secret-token"


def test_role_principal_grants_its_sessions_and_session_principal_only_that_session(
    server: Server, lam: Any, functions: Functions, ids: Iam
) -> None:
    by_role, by_session = unique_name("by-role"), unique_name("by-session")
    functions.create(by_role)
    functions.create(by_session)
    user_arn, user = ids.user(_doc(_allow("sts:AssumeRole")))
    role_arn = ids.role(trust_policy({"AWS": user_arn}))
    role_name = role_arn.rsplit("/", 1)[-1]
    lam.add_permission(
        FunctionName=by_role, StatementId="r", Action="lambda:InvokeFunction", Principal=role_arn
    )
    lam.add_permission(
        FunctionName=by_session,
        StatementId="s",
        Action="lambda:InvokeFunction",
        Principal=f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/s1",
    )
    sts = user.client(server, "sts")

    def session(name: str) -> Any:
        out = sts.assume_role(RoleArn=role_arn, RoleSessionName=name)["Credentials"]
        return Creds(out["AccessKeyId"], out["SecretAccessKey"], out["SessionToken"]).client(server, "lambda")

    s1, s2 = session("s1"), session("s2")
    assert s1.invoke(FunctionName=by_role)["StatusCode"] == 200
    assert s2.invoke(FunctionName=by_role)["StatusCode"] == 200
    assert s1.invoke(FunctionName=by_session)["StatusCode"] == 200
    assert refused(s2.invoke, FunctionName=by_session) == ("AccessDeniedException", 403)
    # The user who may assume the role is not the role.
    assert refused(user.client(server, "lambda").invoke, FunctionName=by_role) == (
        "AccessDeniedException",
        403,
    )
    # A user named like the role is not the role either.
    ids.iam.create_user(UserName=role_name)
    ids.users.append(role_name)
    key = ids.iam.create_access_key(UserName=role_name)["AccessKey"]
    namesake = Creds(key["AccessKeyId"], key["SecretAccessKey"]).client(server, "lambda")
    assert refused(namesake.invoke, FunctionName=by_role) == ("AccessDeniedException", 403)


def test_alias_permission_covers_the_alias_only_and_follows_its_repointing(
    server: Server, lam: Any, functions: Functions, ids: Iam
) -> None:
    name = unique_name("alias-perm")
    functions.create(name)
    v1 = lam.publish_version(FunctionName=name)["Version"]
    lam.update_function_configuration(FunctionName=name, Description="v2")
    wait_updated(lam, name)
    v2 = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=v1)
    _, user = _invoker(ids)
    ul = user.client(server, "lambda")
    lam.add_permission(
        FunctionName=name, Qualifier="live", StatementId="a", Action="lambda:InvokeFunction", Principal="*"
    )
    assert ul.invoke(FunctionName=name, Qualifier="live")["ExecutedVersion"] == v1
    assert ul.invoke(FunctionName=function_arn(name, "live"))["ExecutedVersion"] == v1
    for qualifier in (v1, v2, "$LATEST", None):
        params = {"FunctionName": name} | ({"Qualifier": qualifier} if qualifier else {})
        assert refused(ul.invoke, **params) == ("AccessDeniedException", 403), qualifier
    # The grant is the alias's: re-pointed, it reaches the new version and not the old one.
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion=v2)
    assert ul.invoke(FunctionName=name, Qualifier="live")["ExecutedVersion"] == v2
    assert refused(ul.invoke, FunctionName=name, Qualifier=v1) == ("AccessDeniedException", 403)
    # A version's permission does not reach an alias pointing at it.
    lam.remove_permission(FunctionName=name, Qualifier="live", StatementId="a")
    lam.add_permission(
        FunctionName=name, Qualifier=v2, StatementId="v", Action="lambda:InvokeFunction", Principal="*"
    )
    assert ul.invoke(FunctionName=name, Qualifier=v2)["ExecutedVersion"] == v2
    assert refused(ul.invoke, FunctionName=name, Qualifier="live") == ("AccessDeniedException", 403)
    # Deleting and recreating the alias does not bring an old grant back.
    lam.delete_alias(FunctionName=name, Name="live")
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=v2)
    assert refused(lam.get_policy, FunctionName=name, Qualifier="live")[0] == "ResourceNotFoundException"


def test_version_permission_does_not_survive_version_deletion_and_republish(
    server: Server, lam: Any, functions: Functions, ids: Iam
) -> None:
    name = unique_name("ver-perm")
    functions.create(name)
    v1 = lam.publish_version(FunctionName=name)["Version"]
    _, user = _invoker(ids)
    ul = user.client(server, "lambda")
    lam.add_permission(
        FunctionName=name, Qualifier=v1, StatementId="v", Action="lambda:InvokeFunction", Principal="*"
    )
    assert ul.invoke(FunctionName=name, Qualifier=v1)["StatusCode"] == 200
    lam.delete_function(FunctionName=name, Qualifier=v1)
    lam.update_function_configuration(FunctionName=name, Description="next")
    wait_updated(lam, name)
    v2 = lam.publish_version(FunctionName=name)["Version"]
    assert v2 != v1  # version numbers are never reused
    assert refused(ul.invoke, FunctionName=name, Qualifier=v2) == ("AccessDeniedException", 403)
    # Same for the function: delete and recreate under the same name.
    lam.add_permission(FunctionName=name, StatementId="f", Action="lambda:InvokeFunction", Principal="*")
    lam.delete_function(FunctionName=name)
    functions.created.remove(name)
    functions.create(name)
    assert refused(ul.invoke, FunctionName=name) == ("AccessDeniedException", 403)
