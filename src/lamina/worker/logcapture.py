"""Captures an environment's stdout/stderr (one pipe) and cuts it into per-invoke logs.

The pipe's read end is non-blocking and watched by the event loop. Output is kept up to
``max_bytes`` per invoke (the rest is read and dropped, so a chatty function never blocks on
a full pipe and can never make the platform buffer without bound). ``take()`` drains what
the kernel still holds before cutting, so a line printed just before the response is
attributed to its own invoke.
"""

from __future__ import annotations

import asyncio
import os

TRUNCATED = "[lamina] log output of this invocation was truncated at {} bytes\n"


class LogCapture:
    def __init__(self, fd: int, max_bytes: int = 256 * 1024) -> None:
        self.fd = fd
        self.max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self._dropped = 0
        self._closed = False
        os.set_blocking(fd, False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._stop_reading()
                return
            room = self.max_bytes - self._size
            if room > 0:
                kept = data[:room]
                self._chunks.append(kept)
                self._size += len(kept)
            self._dropped += max(0, len(data) - max(room, 0))

    def _stop_reading(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self.fd)

    def take(self) -> str:
        """Everything captured since the last take(), as text (invalid UTF-8 replaced)."""
        if not self._closed:
            self._read()
        text = b"".join(self._chunks).decode("utf-8", "replace")
        if self._dropped:
            text += TRUNCATED.format(self.max_bytes)
        self._chunks, self._size, self._dropped = [], 0, 0
        return text

    def close(self) -> None:
        self._stop_reading()
        try:
            os.close(self.fd)
        except OSError:
            pass
