"""IAM's directory: roles, users, their inline policies and users' access keys.

The operations keep AWS's rules and texts (names unique regardless of case, a role or user is
deleted only once its policies and keys are gone, two access keys per user, policy documents
checked when stored) so the AWS CLI and SDKs see the answers they expect. The API layer turns
parameters into calls here and models into IAM's output shapes; enforcement asks
``policies_for`` which policies apply to a caller (inline and attached managed ones; managed
policies themselves are ``lamina.iam.managed``, role and user tags ``lamina.iam.tagging``).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import string
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

from lamina.control.model import AccessKey
from lamina.errors import IamError
from lamina.iam.identity_policies import identity_documents
from lamina.iam.keys import new_access_key
from lamina.iam.model import Role, User
from lamina.iam.policy import MalformedPolicy, Policy, Request, evaluate, parse_policy
from lamina.store.metadata import MetadataStore, Transaction

ACCESS_KEYS_PER_USER = 2


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """IAM's timestamp text, as the query serializer writes it."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def unique_id(prefix: str) -> str:
    """RoleId/UserId as AWS forms them: a 4-letter type prefix and 16 base32 characters."""
    alphabet = string.ascii_uppercase + "234567"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(16))


def role_arn_of(principal_arn: str) -> str | None:
    """The role ARN behind an assumed-role session ARN (or a role ARN itself), else None."""
    parts = principal_arn.split(":", 5)
    if len(parts) != 6:
        return None
    resource = parts[5]
    if parts[2] == "sts" and resource.startswith("assumed-role/"):
        pieces = resource.split("/")
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{pieces[1]}" if len(pieces) == 3 else None
    if parts[2] == "iam" and resource.startswith("role/"):
        return principal_arn
    return None


def _last_segment(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def user_name_of(principal_arn: str) -> str | None:
    parts = principal_arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "iam" and parts[5].startswith("user/"):
        return _last_segment(parts[5])
    return None


def check_policy(document: str) -> None:
    """An inline (identity) policy, checked when stored."""
    try:
        parse_policy(document, kind="identity")
    except MalformedPolicy as exc:
        raise IamError("MalformedPolicyDocument", str(exc)) from exc


def parse_trust_policy(document: str) -> Policy:
    """A role's trust policy: a resource policy whose resource is the role itself, so AWS
    forbids the Resource element; the parsed statements carry ``*`` in its place."""
    try:
        raw = json.loads(document)
    except ValueError as exc:
        raise IamError("MalformedPolicyDocument", "Syntax errors in policy.") from exc
    if isinstance(raw, dict) and isinstance(raw.get("Statement"), (dict, list)):
        statements = raw["Statement"] if isinstance(raw["Statement"], list) else [raw["Statement"]]
        for statement in statements:
            if isinstance(statement, dict):
                for key in ("Resource", "NotResource"):
                    if key in statement:
                        raise IamError("MalformedPolicyDocument", f"Has prohibited field {key}")
                statement["Resource"] = "*"
    try:
        return parse_policy(raw, kind="resource")
    except MalformedPolicy as exc:
        raise IamError("MalformedPolicyDocument", str(exc)) from exc


def no_role(name: str) -> IamError:
    return IamError("NoSuchEntity", f"The role with name {name} cannot be found.", 404)


def no_user(name: str) -> IamError:
    return IamError("NoSuchEntity", f"The user with name {name} cannot be found.", 404)


def _conflict(what: str) -> IamError:
    return IamError("DeleteConflict", f"Cannot delete entity, must delete {what} first.", 409)


_ATTACHED_CONFLICT = "Cannot delete entity, must detach all policies first."


class Directory:
    """IAM operations on one account's roles and users, each in one store transaction."""

    def __init__(self, store: MetadataStore, account: str, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.account = account
        self.clock = clock
        self.root_arn = f"arn:aws:iam::{account}:root"
        # Keys IAM may not delete or deactivate: the administrator's (DIR/credentials), without
        # which nobody could manage the platform any more.
        self.protected_keys: frozenset[str] = frozenset()

    # roles

    def create_role(
        self,
        name: str,
        trust_policy: str,
        *,
        path: str = "/",
        description: str = "",
        max_session_duration: int = 3600,
        tags: Mapping[str, str] | None = None,
    ) -> Role:
        parse_trust_policy(trust_policy)
        role = Role(
            name, f"arn:aws:iam::{self.account}:role{path}{name}", unique_id("AROA"), path,
            iso(self.clock()), trust_policy, description, max_session_duration, dict(tags or {}),
        )  # fmt: skip
        with self.store.transaction() as tx:
            if tx.get_role(name) is not None:
                raise IamError("EntityAlreadyExists", f"Role with name {name} already exists.", 409)
            tx.put_role(role)
        return role

    def get_role(self, name: str) -> Role:
        with self.store.transaction() as tx:
            return self._role(tx, name)

    def list_roles(self, path_prefix: str = "/") -> list[Role]:
        with self.store.transaction() as tx:
            return [r for r in tx.list_roles() if r.path.startswith(path_prefix)]

    def delete_role(self, name: str) -> None:
        with self.store.transaction() as tx:
            role = self._role(tx, name)
            if tx.list_role_policies(name):
                raise _conflict("policies")
            if tx.list_attached_policies("role", name):
                raise IamError("DeleteConflict", _ATTACHED_CONFLICT, 409)
            tx.delete_role(name)
            # Its AssumeRole sessions die with it: a role re-created under the same name is
            # another role (AWS tells them apart by RoleId) and must not inherit them.
            tx.delete_keys_with_principal_prefix(f"arn:aws:sts::{self.account}:assumed-role/{role.name}/")

    def update_assume_role_policy(self, name: str, document: str) -> None:
        parse_trust_policy(document)
        with self.store.transaction() as tx:
            role = self._role(tx, name)
            tx.put_role(Role.from_doc({**role.to_doc(), "assume_role_policy": document}))

    def put_role_policy(self, role: str, policy: str, document: str) -> None:
        check_policy(document)
        with self.store.transaction() as tx:
            tx.put_role_policy(self._role(tx, role).name, policy, document)

    def get_role_policy(self, role: str, policy: str) -> tuple[Role, str]:
        with self.store.transaction() as tx:
            found = self._role(tx, role)
            document = tx.get_role_policy(found.name, policy)
        if document is None:
            raise IamError("NoSuchEntity", f"The role policy with name {policy} cannot be found.", 404)
        return found, document

    def delete_role_policy(self, role: str, policy: str) -> None:
        self.get_role_policy(role, policy)
        with self.store.transaction() as tx:
            tx.delete_role_policy(role, policy)

    def list_role_policies(self, role: str) -> list[str]:
        with self.store.transaction() as tx:
            return tx.list_role_policies(self._role(tx, role).name)

    def role_trusts(self, role_arn: str, service: str) -> bool:
        """Whether the role exists and its trust policy lets ``service`` assume it."""
        role = self.role_by_arn(role_arn)
        if role is None:
            return False
        request = Request(service, self.account, "sts:AssumeRole", role.arn, now=self.clock())
        return evaluate(request, [], parse_trust_policy(role.assume_role_policy)).allowed

    def role_by_arn(self, role_arn: str) -> Role | None:
        """The role an ARN names (its path included), or None."""
        prefix = f"arn:aws:iam::{self.account}:role/"
        if not role_arn.startswith(prefix):
            return None
        with self.store.transaction() as tx:
            role = tx.get_role(_last_segment(role_arn))
        return role if role is not None and role.arn == role_arn else None

    def ensure_default_role(
        self, name: str, trust_service: str, policy_name: str, policy_document: str
    ) -> Role:
        """The documented default execution role, created with its policy on first start."""
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": trust_service}, "Action": "sts:AssumeRole"}
            ],
        }
        try:
            role = self.create_role(name, json.dumps(trust))
        except IamError as exc:
            if exc.code != "EntityAlreadyExists":
                raise
            return self.get_role(name)
        self.put_role_policy(name, policy_name, policy_document)
        return role

    # users

    def create_user(self, name: str, *, path: str = "/", tags: Mapping[str, str] | None = None) -> User:
        user = User(
            name, f"arn:aws:iam::{self.account}:user{path}{name}", unique_id("AIDA"), path,
            iso(self.clock()), dict(tags or {}),
        )  # fmt: skip
        with self.store.transaction() as tx:
            if tx.get_user(name) is not None:
                raise IamError("EntityAlreadyExists", f"User with name {name} already exists.", 409)
            tx.put_user(user)
        return user

    def get_user(self, name: str) -> User:
        with self.store.transaction() as tx:
            return self._user(tx, name)

    def list_users(self, path_prefix: str = "/") -> list[User]:
        with self.store.transaction() as tx:
            return [u for u in tx.list_users() if u.path.startswith(path_prefix)]

    def delete_user(self, name: str) -> None:
        with self.store.transaction() as tx:
            user = self._user(tx, name)
            if tx.list_access_keys(user.arn):
                raise _conflict("access keys")
            if tx.list_user_policies(user.name):
                raise _conflict("policies")
            if tx.list_attached_policies("user", user.name):
                raise IamError("DeleteConflict", _ATTACHED_CONFLICT, 409)
            tx.delete_user(user.name)

    def put_user_policy(self, user: str, policy: str, document: str) -> None:
        check_policy(document)
        with self.store.transaction() as tx:
            tx.put_user_policy(self._user(tx, user).name, policy, document)

    def get_user_policy(self, user: str, policy: str) -> tuple[User, str]:
        with self.store.transaction() as tx:
            found = self._user(tx, user)
            document = tx.get_user_policy(found.name, policy)
        if document is None:
            raise IamError("NoSuchEntity", f"The user policy with name {policy} cannot be found.", 404)
        return found, document

    def delete_user_policy(self, user: str, policy: str) -> None:
        self.get_user_policy(user, policy)
        with self.store.transaction() as tx:
            tx.delete_user_policy(user, policy)

    def list_user_policies(self, user: str) -> list[str]:
        with self.store.transaction() as tx:
            return tx.list_user_policies(self._user(tx, user).name)

    # access keys of a user (``user`` None = the account's root)

    def create_access_key(self, user: str | None) -> AccessKey:
        with self.store.transaction() as tx:
            owner = self._owner_arn(tx, user)
            if len(tx.list_access_keys(owner)) >= ACCESS_KEYS_PER_USER:
                raise IamError(
                    "LimitExceeded",
                    f"Cannot exceed quota for AccessKeysPerUser: {ACCESS_KEYS_PER_USER}",
                    409,
                )
            key_id, secret = new_access_key()
            key = AccessKey(key_id, secret, owner, iso(self.clock()))
            tx.put_access_key(key)
        return key

    def list_access_keys(self, user: str | None) -> list[AccessKey]:
        with self.store.transaction() as tx:
            return tx.list_access_keys(self._owner_arn(tx, user))

    def update_access_key(self, user: str | None, access_key_id: str, status: str) -> None:
        if status not in ("Active", "Inactive"):
            raise IamError(
                "ValidationError",
                f"Invalid value for parameter Status, value: {status}, valid values: Active, Inactive",
            )
        with self.store.transaction() as tx:
            key = self._key(tx, user, access_key_id)
            if status != "Active":
                self._check_modifiable(access_key_id)
            tx.put_access_key(dataclasses.replace(key, status=status))

    def delete_access_key(self, user: str | None, access_key_id: str) -> None:
        with self.store.transaction() as tx:
            self._key(tx, user, access_key_id)
            self._check_modifiable(access_key_id)
            tx.delete_access_key(access_key_id)

    def _check_modifiable(self, access_key_id: str) -> None:
        if access_key_id in self.protected_keys:
            raise IamError(
                "UnmodifiableEntity",
                f"The access key {access_key_id} is Lamina's administrator key (DIR/credentials) "
                "and cannot be deleted or deactivated.",
            )

    # enforcement

    def entity_arn(self, arn: str) -> str:
        """``arn:aws:iam::ACCOUNT:role/NAME`` (or ``user/NAME``) as a request names it, made the
        entity's own ARN with its path; anything else, or an entity that does not exist, as is."""
        prefix = f"arn:aws:iam::{self.account}:"
        kind, _, name = arn.removeprefix(prefix).partition("/")
        if not arn.startswith(prefix) or kind not in ("role", "user") or not name or "/" in name:
            return arn
        with self.store.transaction() as tx:
            entity = tx.get_role(name) if kind == "role" else tx.get_user(name)
        return entity.arn if entity is not None else arn

    def policies_for(self, principal_arn: str) -> list[str]:
        """The identity policies that apply to a caller: inline ones and the default versions of
        attached managed ones (root: none, it needs none)."""
        with self.store.transaction() as tx:
            user = user_name_of(principal_arn)
            if user is not None:
                found = tx.get_user(user)
                if found is None or found.arn != principal_arn:
                    return []
                return identity_documents(tx, "user", found.name)
            role_arn = role_arn_of(principal_arn)
            if role_arn is not None:
                role = tx.get_role(_last_segment(role_arn))
                if role is None or role.name != _last_segment(role_arn):
                    return []
                return identity_documents(tx, "role", role.name)
        return []

    # helpers

    def _role(self, tx: Transaction, name: str) -> Role:
        role = tx.get_role(name)
        if role is None:
            raise no_role(name)
        return role

    def _user(self, tx: Transaction, name: str) -> User:
        user = tx.get_user(name)
        if user is None:
            raise no_user(name)
        return user

    def _owner_arn(self, tx: Transaction, user: str | None) -> str:
        return self.root_arn if user is None else self._user(tx, user).arn

    def _key(self, tx: Transaction, user: str | None, access_key_id: str) -> AccessKey:
        owner = self._owner_arn(tx, user)
        key = tx.get_access_key(access_key_id)
        if key is None or key.principal_arn != owner:
            raise IamError("NoSuchEntity", f"The Access Key with id {access_key_id} cannot be found.", 404)
        return key
