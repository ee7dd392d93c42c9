"""Encryption at rest: code and environment variables never reach the data dir in plaintext.

Each test runs its own server so the data dir holds only what the test wrote. The zip is built
with ZIP_STORED so that an unencrypted blob would carry the marker verbatim; the base64 of the
zip (the form it has inside the CreateFunction request) is looked for too, and so are both
forms in the SQLite database, its WAL and the server's log, while the server runs and after it
has stopped (when SQLite folds the WAL back into the database).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from pathlib import Path

from test_compat_support import Functions, Server, client_for, make_zip, stop_server


def _leaks(root: Path, needles: dict[str, bytes]) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{label} in {path}" for label, needle in needles.items() if needle in data]
    return found


def test_code_and_environment_are_not_stored_in_plaintext(
        server_factory: Callable[..., Server]) -> None:
    srv = server_factory()
    lam = client_for(srv)
    code_marker = f"CODE-MARKER-{uuid.uuid4().hex}"
    env_marker = f"ENV-MARKER-{uuid.uuid4().hex}"
    code = make_zip({"index.py": f"SECRET = '{code_marker}'\ndef handler(e, c):\n    return 1\n"},
                    stored=True)
    assert code_marker.encode() in code

    functions = Functions(lam)
    functions.create("enc-one", code=code, Environment={"Variables": {"TOKEN": env_marker}},
                     Publish=True)
    functions.create("enc-two", code=code)
    lam.update_function_configuration(FunctionName="enc-two",
                                      Environment={"Variables": {"OTHER": env_marker}})
    lam.get_waiter("function_updated_v2").wait(FunctionName="enc-two",
                                               WaiterConfig={"Delay": 1, "MaxAttempts": 30})

    needles = {
        "code marker": code_marker.encode(),
        "env marker": env_marker.encode(),
        "zip bytes (base64)": base64.b64encode(code)[:64],
        "env marker (utf-16)": env_marker.encode("utf-16-le"),
    }
    files = list(srv.data_dir.rglob("*"))
    assert any(p.name.endswith((".db", ".sqlite", ".sqlite3")) for p in files), files

    assert _leaks(srv.data_dir, needles) == []
    stop_server(srv)
    assert _leaks(srv.data_dir, needles) == []
    log = srv.log_path.read_bytes()
    assert [label for label, needle in needles.items() if needle in log] == []


def test_data_is_still_readable_after_restart_despite_encryption(
        server_factory: Callable[..., Server], tmp_path: Path) -> None:
    srv = server_factory(tmp_path / "data")
    lam = client_for(srv)
    marker = f"ENV-{uuid.uuid4().hex}"
    Functions(lam).create("enc-restart", Environment={"Variables": {"KEY": marker}})
    stop_server(srv)

    again = client_for(server_factory(tmp_path / "data"))
    config = again.get_function_configuration(FunctionName="enc-restart")
    assert config["Environment"] == {"Variables": {"KEY": marker}}
