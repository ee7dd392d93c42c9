"""Network namespaces made without a process, and listeners that live inside one.

A socket keeps the network namespace it was created in. So the worker can own an env's
Runtime API listener (127.0.0.1:<port> inside the env's namespace) and serve it from the host
process, with no veth and no helper process; the sandbox joins the namespace through
:func:`entered` around the spawn. Namespace switches happen only in short-lived or dedicated
threads: ``unshare``/``setns`` of the network namespace affect the calling thread alone.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from lamina.errors import SandboxError

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_libc = ctypes.CDLL(None, use_errno=True)


def _check(step: str, result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxError(step, os.strerror(err), err)


def _self_ns() -> int:
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


@contextmanager
def entered(ns_fd: int) -> Iterator[None]:
    """Run the body with the calling thread inside ``ns_fd``; always switch back."""
    home = _self_ns()
    try:
        _check("setns net", _libc.setns(ns_fd, CLONE_NEWNET))
        try:
            yield
        finally:
            _check("setns net back", _libc.setns(home, CLONE_NEWNET))
    finally:
        os.close(home)


def _listen(port: int, backlog: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(backlog)
    except OSError as exc:
        listener.close()
        raise SandboxError("netns listener", f"127.0.0.1:{port}", exc.errno) from exc
    return listener


def _create(ports: Sequence[int], backlog: int) -> tuple[int, list[socket.socket]]:
    home = _self_ns()
    try:
        _check("unshare net", _libc.unshare(CLONE_NEWNET))
        ns_fd = -1
        listeners: list[socket.socket] = []
        try:
            _loopback_up()
            ns_fd = _self_ns()
            for port in ports:
                listeners.append(_listen(port, backlog))
        except BaseException:
            for listener in listeners:
                listener.close()
            if ns_fd >= 0:
                os.close(ns_fd)
            raise
        finally:
            _check("setns net back", _libc.setns(home, CLONE_NEWNET))
        return ns_fd, listeners
    finally:
        os.close(home)


def create_listeners(ports: Sequence[int], backlog: int = 16) -> tuple[int, list[socket.socket]]:
    """A fresh network namespace (loopback up) and one TCP listener on 127.0.0.1:<port> in it
    for each of ``ports``, in that order (the Runtime API's, the Lamina API relay's, ...).

    Returns the namespace fd (close it when the env is destroyed) and the listening sockets.
    Runs in a dedicated thread so the caller's thread never changes namespace. On failure
    nothing is left open.
    """
    result: list[tuple[int, list[socket.socket]]] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(_create(ports, backlog))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="lamina-netns")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def create(port: int = 9001, backlog: int = 16) -> tuple[int, socket.socket]:
    """:func:`create_listeners` with a single listener on 127.0.0.1:``port``."""
    ns_fd, (listener,) = create_listeners((port,), backlog)
    return ns_fd, listener
