"""Concurrency accounting: the account limit, reserved concurrency, and leases.

Functions with reserved concurrency draw only from their reservation; every other function
shares what is left of the account limit (the unreserved pool). A lease is taken before an
environment is acquired and given back when the invoke ends, so the counts are exactly the
number of invokes in flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lamina.errors import InvalidParameterValue, TooManyRequests

RATE_EXCEEDED = "Rate Exceeded."


class Concurrency:
    def __init__(self, account_limit: int, unreserved_min: int) -> None:
        self.account_limit = account_limit
        self.unreserved_min = unreserved_min
        self._reserved: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._unreserved_in_flight = 0

    @property
    def unreserved_capacity(self) -> int:
        return self.account_limit - sum(self._reserved.values())

    def reserved(self, function: str) -> int | None:
        return self._reserved.get(function)

    def in_flight(self, function: str) -> int:
        return self._in_flight.get(function, 0)

    @property
    def total_in_flight(self) -> int:
        return sum(self._in_flight.values())

    def check_reservation(self, function: str, value: int) -> None:
        """Raises AWS's error if reserving ``value`` would starve the unreserved pool."""
        others = sum(v for k, v in self._reserved.items() if k != function)
        if self.account_limit - others - value < self.unreserved_min:
            raise InvalidParameterValue(
                f"Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{self.unreserved_min}]."
            )

    def set_reserved(self, function: str, value: int | None) -> None:
        if value is None:
            self._reserved.pop(function, None)
        else:
            self._reserved[function] = value

    @contextmanager
    def lease(self, function: str) -> Iterator[None]:
        """One invoke in flight for ``function``; 429 when no concurrency is left."""
        reserved = self._reserved.get(function)
        current = self._in_flight.get(function, 0)
        if reserved is not None:
            if current >= reserved:
                raise TooManyRequests(
                    RATE_EXCEEDED, Reason="ReservedFunctionConcurrentInvocationLimitExceeded"
                )
        elif self._unreserved_in_flight >= self.unreserved_capacity:
            raise TooManyRequests(RATE_EXCEEDED, Reason="ConcurrentInvocationLimitExceeded")
        self._in_flight[function] = current + 1
        if reserved is None:
            self._unreserved_in_flight += 1
        try:
            yield
        finally:
            left = self._in_flight[function] - 1
            if left:
                self._in_flight[function] = left
            else:
                del self._in_flight[function]
            if reserved is None:
                self._unreserved_in_flight -= 1
