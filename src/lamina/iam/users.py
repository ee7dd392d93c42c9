"""IAM users: their inline policies and access keys (a user's, or the account root's).

AWS's rules and texts: user names are unique regardless of case, at most two access keys per
user, and a user is deleted only once its keys and inline policies are deleted and its managed
policies detached. The administrator's key (``DIR/credentials``) is protected: IAM may neither
delete nor deactivate it, else nobody could manage the platform any more. ``Directory`` offers
these operations alongside roles'; tags are ``lamina.iam.tagging``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from lamina.control.model import AccessKey
from lamina.errors import IamError
from lamina.iam.entities import (
    USER_INLINE_POLICY_QUOTA,
    AccountScope,
    attached_conflict,
    check_inline_quota,
    check_policy,
    conflict,
    iso,
    no_user,
    unique_id,
)
from lamina.iam.keys import new_access_key
from lamina.iam.model import User
from lamina.store.metadata import Transaction

ACCESS_KEYS_PER_USER = 2


class Users(AccountScope):
    """IAM's user and access-key operations on one account, each in one store transaction."""

    # Keys IAM may not delete or deactivate (the bootstrap sets the administrator's); the class
    # default is empty and immutable, so assigning on an instance never touches another's.
    protected_keys: frozenset[str] = frozenset()

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
                raise conflict("access keys")
            if tx.list_user_policies(user.name):
                raise conflict("policies")
            if tx.list_attached_policies("user", user.name):
                raise attached_conflict()
            tx.delete_user(user.name)

    def put_user_policy(self, user: str, policy: str, document: str) -> None:
        check_policy(document)
        with self.store.transaction() as tx:
            found = self._user(tx, user)
            current = {n: tx.get_user_policy(found.name, n) for n in tx.list_user_policies(found.name)}
            check_inline_quota("user", found.name, current, policy, document, USER_INLINE_POLICY_QUOTA)
            tx.put_user_policy(found.name, policy, document)

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
