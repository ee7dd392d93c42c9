"""The Runtime API served to each execution environment, and the in-sandbox runtimes.

Public seam: :func:`serve` a :class:`RuntimeChannel` on a listening socket, ``wait_ready()``,
then ``invoke()`` one :class:`Invocation` at a time. :func:`python_bootstrap` is the file the
sandbox runs as ``python3 -I -S <file>`` for ``python3.X`` functions.
"""

from __future__ import annotations

from pathlib import Path

from lamina.runtime.api import DEFAULT_MAX_BODY, serve
from lamina.runtime.channel import RuntimeChannel
from lamina.runtime.models import (
    RESPONSE_SIZE_TOO_LARGE,
    ChannelClosed,
    InitError,
    Invocation,
    InvocationResult,
)

BOOTSTRAP_DIR = Path(__file__).resolve().parent / "bootstrap"


def python_bootstrap() -> Path:
    """The Python runtime's entry file (its helper module sits beside it; bind the folder)."""
    return BOOTSTRAP_DIR / "lamina_python_runtime.py"


__all__ = [
    "BOOTSTRAP_DIR",
    "DEFAULT_MAX_BODY",
    "RESPONSE_SIZE_TOO_LARGE",
    "ChannelClosed",
    "InitError",
    "Invocation",
    "InvocationResult",
    "RuntimeChannel",
    "python_bootstrap",
    "serve",
]
