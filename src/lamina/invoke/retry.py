"""Lambda's retry policy for asynchronous invocations, as pure functions.

AWS documents two regimes, and this module keeps them apart:

- A *function error* (the handler raised, timed out, crashed) uses up one of the event's
  attempts. By default Lambda retries twice, about one minute and then two minutes later
  (``MaximumRetryAttempts`` 0–2 lowers that).
- A *throttle* (429) or a *platform error* (5xx, Lamina itself failed) does not run the
  function, so it costs no attempt: the event goes back to the queue with exponential backoff
  from 1 second up to 5 minutes, for as long as the event is younger than
  ``MaximumEventAgeInSeconds`` (60 s–6 h, default 6 h).

The backoff is derived from the event's age (wait as long as the event has existed, clamped to
[base, cap]), which doubles the gap on every try without storing a counter anywhere, so it
survives restarts and needs no field in the queue. No clock is read here: callers pass ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ErrorKind = Literal["function", "throttle", "platform"]
Condition = Literal["Success", "RetriesExhausted", "EventAgeExceeded"]

MAX_RETRY_ATTEMPTS = 2
MAX_EVENT_AGE_SECONDS = 21_600
MIN_EVENT_AGE_SECONDS = 60


@dataclass(frozen=True)
class EventConfig:
    """An event's asynchronous-invocation settings (EventInvokeConfig plus the function's DLQ).

    ``on_failure`` is the OnFailure destination, or the DeadLetterConfig target when the
    function has no OnFailure destination; None means failures are dead-lettered locally.
    """

    max_retries: int = MAX_RETRY_ATTEMPTS
    max_age: float = MAX_EVENT_AGE_SECONDS
    on_success: str | None = None
    on_failure: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.max_retries <= MAX_RETRY_ATTEMPTS:
            raise ValueError(f"max_retries must be 0..{MAX_RETRY_ATTEMPTS}, not {self.max_retries}")
        if not 0 < self.max_age <= MAX_EVENT_AGE_SECONDS:
            raise ValueError(f"max_age must be in (0, {MAX_EVENT_AGE_SECONDS}], not {self.max_age}")


@dataclass(frozen=True)
class RetryDelays:
    """Base delays; settings, so tests can run the whole schedule in seconds."""

    function_error: tuple[float, ...] = (60.0, 120.0)  # before retry 1, retry 2, ...
    throttle_base: float = 1.0
    throttle_cap: float = 300.0

    def __post_init__(self) -> None:
        if not self.function_error or min(self.function_error) < 0:
            raise ValueError("function_error delays must be a non-empty tuple of non-negative seconds")
        if not 0 <= self.throttle_base <= self.throttle_cap:
            raise ValueError("need 0 <= throttle_base <= throttle_cap")


@dataclass(frozen=True)
class Retry:
    """Run the event again, not before ``not_before`` (epoch seconds)."""

    not_before: float


@dataclass(frozen=True)
class GiveUp:
    condition: Literal["RetriesExhausted", "EventAgeExceeded"]


Decision = Retry | GiveUp


def expired(enqueued_at: float, now: float, config: EventConfig) -> bool:
    """True once the event is older than its maximum age (it must not run any more)."""
    return now - enqueued_at > config.max_age


def exhausted(attempts: int, config: EventConfig) -> bool:
    """True when ``attempts`` runs already used every retry (1 + max_retries runs in all)."""
    return attempts > config.max_retries


def throttle_delay(enqueued_at: float, now: float, delays: RetryDelays) -> float:
    """Exponential backoff keyed on age: 1, 1, 2, 4, 8 ... seconds, capped at 5 minutes."""
    return min(delays.throttle_cap, max(delays.throttle_base, now - enqueued_at))


def function_error_delay(attempts: int, delays: RetryDelays) -> float:
    """The wait before the next run after ``attempts`` runs that all failed."""
    index = min(max(attempts, 1), len(delays.function_error)) - 1
    return delays.function_error[index]


def decide(
    kind: ErrorKind,
    *,
    attempts: int,
    enqueued_at: float,
    now: float,
    config: EventConfig,
    delays: RetryDelays,
) -> Decision:
    """What to do with an event after a failed try.

    ``attempts`` counts the runs so far *including* the one that just failed when ``kind`` is
    ``"function"``; throttles and platform errors do not add to it. A retry whose time would
    fall past the event's maximum age is not scheduled: the event gives up with
    EventAgeExceeded now rather than waking up only to be discarded.
    """
    if kind == "function":
        if exhausted(attempts, config):
            return GiveUp("RetriesExhausted")
        delay = function_error_delay(attempts, delays)
    else:
        delay = throttle_delay(enqueued_at, now, delays)
    not_before = now + delay
    if expired(enqueued_at, not_before, config):
        return GiveUp("EventAgeExceeded")
    return Retry(not_before)
