"""Concurrency accounting: account limit, unreserved pool, reserved concurrency, 429 reasons."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from lamina.errors import InvalidParameterValue, TooManyRequests
from lamina.invoke.concurrency import RATE_EXCEEDED, Concurrency


def hold(c: Concurrency, stack: ExitStack, function: str, n: int) -> None:
    for _ in range(n):
        stack.enter_context(c.lease(function))


def reason(exc: pytest.ExceptionInfo[TooManyRequests]) -> object:
    return exc.value.fields.get("Reason")


def test_account_limit_is_shared_by_unreserved_functions() -> None:
    c = Concurrency(account_limit=10, unreserved_min=2)
    with ExitStack() as stack:
        hold(c, stack, "a", 6)
        hold(c, stack, "b", 4)
        assert c.total_in_flight == 10
        with pytest.raises(TooManyRequests) as exc:
            c.lease("c").__enter__()
        assert reason(exc) == "ConcurrentInvocationLimitExceeded"
        assert exc.value.message == RATE_EXCEEDED and exc.value.status == 429
    assert c.total_in_flight == 0
    with c.lease("c"):
        assert c.in_flight("c") == 1


def test_reserved_zero_always_throttles() -> None:
    c = Concurrency(account_limit=10, unreserved_min=2)
    c.set_reserved("off", 0)
    for _ in range(3):
        with pytest.raises(TooManyRequests) as exc, c.lease("off"):
            pytest.fail("a function reserved at 0 must never run")
        assert reason(exc) == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert c.in_flight("off") == 0


def test_reserved_n_runs_exactly_n_at_once() -> None:
    c = Concurrency(account_limit=10, unreserved_min=2)
    c.set_reserved("r", 3)
    with ExitStack() as stack:
        hold(c, stack, "r", 3)
        with pytest.raises(TooManyRequests) as exc:
            c.lease("r").__enter__()
        assert reason(exc) == "ReservedFunctionConcurrentInvocationLimitExceeded"
        # The reservation's invokes do not eat the unreserved pool: 10 - 3 = 7 left there.
        hold(c, stack, "u", 7)
        with pytest.raises(TooManyRequests) as exc2:
            c.lease("u").__enter__()
        assert reason(exc2) == "ConcurrentInvocationLimitExceeded"
    with c.lease("r"):
        pass


def test_reservation_shrinks_the_unreserved_pool() -> None:
    c = Concurrency(account_limit=10, unreserved_min=2)
    c.set_reserved("r", 8)
    assert c.unreserved_capacity == 2
    with ExitStack() as stack:
        hold(c, stack, "u", 2)
        with pytest.raises(TooManyRequests):
            c.lease("v").__enter__()
    c.set_reserved("r", None)
    assert c.reserved("r") is None and c.unreserved_capacity == 10


def test_check_reservation_keeps_the_unreserved_minimum() -> None:
    c = Concurrency(account_limit=1000, unreserved_min=100)
    c.check_reservation("a", 900)  # leaves exactly 100
    with pytest.raises(InvalidParameterValue) as exc:
        c.check_reservation("a", 901)
    assert "below its minimum value of [100]" in exc.value.message
    c.set_reserved("a", 500)
    c.check_reservation("a", 900)  # replacing its own reservation, not adding to it
    with pytest.raises(InvalidParameterValue):
        c.check_reservation("b", 401)
    c.check_reservation("b", 400)


def test_leases_are_released_on_exceptions() -> None:
    c = Concurrency(account_limit=2, unreserved_min=0)
    c.set_reserved("r", 1)
    for function in ("r", "u", "u"):
        with pytest.raises(RuntimeError), c.lease(function):
            raise RuntimeError("invoke failed")
    assert c.total_in_flight == 0
    with c.lease("r"), c.lease("u"):
        assert (c.in_flight("r"), c.in_flight("u")) == (1, 1)


def test_reservation_change_mid_invoke_releases_the_right_pool() -> None:
    c = Concurrency(account_limit=4, unreserved_min=0)
    with c.lease("f"):
        c.set_reserved("f", 2)  # PutFunctionConcurrency while an unreserved invoke runs
    c.set_reserved("f", None)
    with ExitStack() as stack:
        hold(c, stack, "g", 4)  # the unreserved count came back down to 0
