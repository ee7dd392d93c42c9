"""netns.create_listeners: several listeners in one fresh namespace, nothing left on failure."""

from __future__ import annotations

import os
import socket

import pytest

from lamina.errors import SandboxError
from lamina.sandbox import netns

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_listeners_share_one_namespace_of_their_own() -> None:
    before = os.readlink("/proc/thread-self/ns/net")
    ns_fd, listeners = netns.create_listeners((9001, 9002))
    try:
        assert [s.getsockname() for s in listeners] == [("127.0.0.1", 9001), ("127.0.0.1", 9002)]
        assert os.readlink("/proc/thread-self/ns/net") == before
        with netns.entered(ns_fd):
            for port in (9001, 9002):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        for s in listeners:
            s.close()
        os.close(ns_fd)


def test_a_failing_listener_leaves_nothing_open() -> None:
    before = _open_fds()
    with pytest.raises(SandboxError) as caught:
        netns.create_listeners((9001, 9001))  # the second bind collides with the first
    assert "127.0.0.1:9001" in str(caught.value)
    assert _open_fds() == before
