"""Fixtures for the compatibility suite: a real `lamina server` driven by the real boto3.

The suite asserts AWS Lambda's behaviour (botocore's model for shapes, AWS's own error codes and
messages), never whatever the server happens to do. One server runs for the whole session; tests
that stop and start a server (restart, encryption at rest, account settings) get their own through
``server_factory``. On a failing test the tail of every running server's log is attached to the
report, because a compat failure is usually explained by the server's side of the story.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from test_compat_support import (
    RUNNING,
    Functions,
    Server,
    client_for,
    start_server,
    stop_server,
    unique_name,
)


@pytest.fixture(scope="session", autouse=True)
def _clean_aws_environment() -> Iterator[None]:
    """Keep the developer's own AWS profile and config out of every client in this suite."""
    mp = pytest.MonkeyPatch()
    for key in list(os.environ):
        if key.startswith("AWS_"):
            mp.delenv(key)
    mp.setenv("AWS_CONFIG_FILE", os.devnull)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("lamina-session")
    srv = start_server(base / "data", base / "server.log")
    yield srv
    stop_server(srv)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers on demand (the same data dir twice for restarts); all stop at teardown."""
    started: list[Server] = []

    def start(data_dir: Path | None = None, env: dict[str, str] | None = None) -> Server:
        srv = start_server(data_dir or tmp_path / "data", tmp_path / "server.log", env)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        stop_server(srv)


@pytest.fixture(scope="session")
def lam(server: Server) -> Any:
    return client_for(server)


@pytest.fixture(scope="session")
def lam_raw(server: Server) -> Any:
    """A client that skips botocore's own parameter checks, so the server's checks are tested."""
    return client_for(server, validate=False)


@pytest.fixture
def fn_name(request: pytest.FixtureRequest) -> str:
    return unique_name(request.node.name)


@pytest.fixture
def functions(lam: Any) -> Iterator[Functions]:
    helper = Functions(lam)
    yield helper
    helper.cleanup()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for srv in RUNNING:
            report.sections.append((f"lamina server log ({srv.endpoint})", srv.log_tail()))
    return report
