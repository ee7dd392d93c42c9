"""Tags of roles and users (TagRole/UntagRole/ListRoleTags and the user equivalents).

Tags are fields of the stored Role/User, rewritten whole under one transaction. AWS allows 50
tags per entity: a TagRole/TagUser that would leave more is refused (LimitExceeded) and nothing
changes; tagging an existing key replaces its value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from lamina.errors import IamError
from lamina.iam.directory import no_role, no_user
from lamina.iam.model import Role, User
from lamina.store.metadata import MetadataStore

TAGS_PER_ENTITY = 50


def _merged(current: Mapping[str, str], tags: Mapping[str, str], quota: str) -> dict[str, str]:
    merged = {**current, **tags}
    if len(merged) > TAGS_PER_ENTITY:
        raise IamError("LimitExceeded", f"Cannot exceed quota for {quota}: {TAGS_PER_ENTITY}", 409)
    return merged


def _without(current: Mapping[str, str], keys: Iterable[str]) -> dict[str, str]:
    drop = set(keys)
    return {k: v for k, v in current.items() if k not in drop}


class Tagging:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def tag_role(self, name: str, tags: Mapping[str, str]) -> None:
        with self.store.transaction() as tx:
            role = self._role(tx.get_role(name), name)
            tx.put_role(dataclasses.replace(role, tags=_merged(role.tags, tags, "TagsPerRole")))

    def untag_role(self, name: str, keys: Iterable[str]) -> None:
        with self.store.transaction() as tx:
            role = self._role(tx.get_role(name), name)
            tx.put_role(dataclasses.replace(role, tags=_without(role.tags, keys)))

    def role_tags(self, name: str) -> dict[str, str]:
        with self.store.transaction() as tx:
            return dict(self._role(tx.get_role(name), name).tags)

    def tag_user(self, name: str, tags: Mapping[str, str]) -> None:
        with self.store.transaction() as tx:
            user = self._user(tx.get_user(name), name)
            tx.put_user(dataclasses.replace(user, tags=_merged(user.tags, tags, "TagsPerUser")))

    def untag_user(self, name: str, keys: Iterable[str]) -> None:
        with self.store.transaction() as tx:
            user = self._user(tx.get_user(name), name)
            tx.put_user(dataclasses.replace(user, tags=_without(user.tags, keys)))

    def user_tags(self, name: str) -> dict[str, str]:
        with self.store.transaction() as tx:
            return dict(self._user(tx.get_user(name), name).tags)

    @staticmethod
    def _role(role: Role | None, name: str) -> Role:
        if role is None:
            raise no_role(name)
        return role

    @staticmethod
    def _user(user: User | None, name: str) -> User:
        if user is None:
            raise no_user(name)
        return user
