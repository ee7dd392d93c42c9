"""SigV4's access-key lookup over the metadata store, cached for the invoke path."""

from __future__ import annotations

from lamina.api import sigv4
from lamina.store.metadata import MetadataStore


class AccessKeys:
    """Keys found are kept decrypted in memory until the store next changes: the invoke path
    verifies a signature on every request and must not read the database for it."""

    def __init__(self, store: MetadataStore, exclude: str) -> None:
        self.store = store
        self.exclude = exclude  # the download key signs presigned URLs only, never API calls
        self._known: dict[str, sigv4.SecretKey] = {}
        self._generation = -1

    def __call__(self, access_key_id: str) -> sigv4.SecretKey | None:
        if access_key_id == self.exclude:
            return None
        if self._generation != self.store.generation:
            self._known.clear()
            self._generation = self.store.generation
        secret = self._known.get(access_key_id)
        if secret is None:
            with self.store.transaction() as tx:
                key = tx.get_access_key(access_key_id)
            if key is None:
                return None
            secret = sigv4.SecretKey(key.access_key_id, key.secret_access_key, key.session_token, key.principal_arn)
            self._known[access_key_id] = secret
        return secret
