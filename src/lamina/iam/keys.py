"""Access keys: the administrator's key bootstrapped at first start, and the credentials file.

Later milestones add users, roles and temporary credentials here; for now there are two
platform keys, both stored (secret encrypted) in the metadata store: the administrator's,
written to ``DIR/credentials`` for the AWS CLI and SDKs, and one that only signs presigned
download URLs.
"""

from __future__ import annotations

import configparser
import io
import os
import secrets
import string
from datetime import datetime, timezone
from pathlib import Path

from lamina.control.functions import aws_timestamp
from lamina.control.model import AccessKey
from lamina.store.metadata import MetadataStore

ADMIN_KEY_SETTING = "admin_access_key_id"
PRESIGN_KEY_SETTING = "presign_access_key_id"


def new_access_key(prefix: str = "AKIA") -> tuple[str, str]:
    """A key id in AWS's format (AKIA + 16 base32 characters) and a 40-character secret."""
    alphabet = string.ascii_uppercase + "234567"
    key_id = prefix + "".join(secrets.choice(alphabet) for _ in range(16))
    secret = secrets.token_urlsafe(30)[:40]
    return key_id, secret


def ensure_key(store: MetadataStore, setting: str, principal: str) -> AccessKey:
    """The platform key named by ``setting``, created on first use."""
    with store.transaction() as tx:
        key_id = tx.get_setting(setting)
        key = tx.get_access_key(key_id) if key_id else None
        if key is None:
            key_id, secret = new_access_key()
            key = AccessKey(key_id, secret, principal, aws_timestamp(datetime.now(timezone.utc)))
            tx.put_access_key(key)
            tx.put_setting(setting, key_id)
        return key


def write_credentials(path: Path, key: AccessKey) -> None:
    """DIR/credentials in AWS shared-credentials format, mode 0600, written atomically."""
    parser = configparser.ConfigParser()
    parser["default"] = {
        "aws_access_key_id": key.access_key_id,
        "aws_secret_access_key": key.secret_access_key,
    }
    buffer = io.StringIO()
    parser.write(buffer)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
