"""LogCapture on a real pipe: per-invoke cuts, truncation without back-pressure, draining."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from lamina.worker.logcapture import TRUNCATED, LogCapture


def aio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop, with a hard deadline."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 10))

    return run


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


@aio
async def test_take_cuts_output_per_invoke() -> None:
    r, w = os.pipe()
    logs = LogCapture(r)
    try:
        os.write(w, b"init line\n")
        await settle()
        assert logs.take() == "init line\n"
        os.write(w, b"invoke 1\n")
        await settle()
        assert logs.take() == "invoke 1\n"
        assert logs.take() == ""
    finally:
        logs.close()
        os.close(w)


@aio
async def test_take_drains_what_the_kernel_still_holds() -> None:
    r, w = os.pipe()
    logs = LogCapture(r)
    try:
        # Written just before the response: the loop has not run the reader yet.
        os.write(w, b"printed right before returning\n")
        assert logs.take() == "printed right before returning\n"
    finally:
        logs.close()
        os.close(w)


@aio
async def test_truncates_at_max_bytes_and_keeps_draining() -> None:
    r, w = os.pipe()
    logs = LogCapture(r, max_bytes=1000)
    total = 10 * 1024 * 1024
    done = threading.Event()

    def chatty() -> None:  # a blocking writer, as a function's stdout is
        chunk = b"x" * 65536
        for _ in range(total // len(chunk)):
            os.write(w, chunk)
        done.set()

    writer = threading.Thread(target=chatty)
    writer.start()
    try:
        for _ in range(1000):
            if done.is_set():
                break
            await asyncio.sleep(0.005)
        assert done.is_set(), "the writer blocked: the pipe was not drained"
        text = logs.take()
        assert text == "x" * 1000 + TRUNCATED.format(1000)
        os.write(w, b"next invoke\n")
        assert logs.take() == "next invoke\n"  # the limit is per invoke
    finally:
        writer.join()
        logs.close()
        os.close(w)


@aio
async def test_invalid_utf8_is_replaced() -> None:
    r, w = os.pipe()
    logs = LogCapture(r)
    try:
        os.write(w, b"ok \xff\xfe bytes \xe2\x82\xac\n")
        assert logs.take() == "ok \ufffd\ufffd bytes \u20ac\n"
    finally:
        logs.close()
        os.close(w)


@aio
async def test_writer_exit_and_close() -> None:
    r, w = os.pipe()
    logs = LogCapture(r)
    os.write(w, b"last words\n")
    os.close(w)  # the sandbox exited
    await settle()
    assert logs.take() == "last words\n"
    assert logs.take() == ""
    logs.close()
    logs.close()  # idempotent
    try:
        os.fstat(r)
    except OSError:
        pass
    else:
        raise AssertionError("the read end is still open after close()")
