"""The retry schedule on a fake clock: AWS's defaults, the limits, and the age cut-off."""

from __future__ import annotations

import pytest

from lamina.invoke.retry import (
    EventConfig,
    GiveUp,
    Retry,
    RetryDelays,
    decide,
    exhausted,
    expired,
    throttle_delay,
)

DEFAULTS = RetryDelays()


def test_function_errors_retry_after_one_then_two_minutes_then_give_up() -> None:
    config = EventConfig()
    now, attempts, times = 0.0, 0, []
    while True:
        attempts += 1  # the function ran and failed
        decision = decide(
            "function", attempts=attempts, enqueued_at=0.0, now=now, config=config, delays=DEFAULTS
        )
        if isinstance(decision, GiveUp):
            break
        now = decision.not_before
        times.append(now)
    assert times == [60.0, 180.0]
    assert attempts == 3
    assert decision == GiveUp("RetriesExhausted")


@pytest.mark.parametrize("max_retries", [0, 1, 2])
def test_maximum_retry_attempts_bounds_the_runs(max_retries: int) -> None:
    config = EventConfig(max_retries=max_retries)
    runs = 0
    decision: Retry | GiveUp = Retry(0.0)
    while isinstance(decision, Retry):
        runs += 1
        decision = decide("function", attempts=runs, enqueued_at=0.0, now=0.0, config=config, delays=DEFAULTS)
    assert runs == max_retries + 1
    assert decision == GiveUp("RetriesExhausted")


def test_throttles_back_off_exponentially_to_five_minutes_until_max_age() -> None:
    config = EventConfig(max_age=3600)
    now, gaps, attempts = 0.0, [], 0
    while True:
        decision = decide(
            "throttle", attempts=attempts, enqueued_at=0.0, now=now, config=config, delays=DEFAULTS
        )
        if isinstance(decision, GiveUp):
            break
        gaps.append(decision.not_before - now)
        now = decision.not_before
    assert gaps[:10] == [1, 1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert set(gaps[10:]) == {300.0}
    assert decision == GiveUp("EventAgeExceeded")
    assert 3600 - 300 < now <= 3600  # the last try fell within the age limit


def test_platform_errors_follow_the_throttle_schedule_and_cost_no_attempt() -> None:
    config = EventConfig(max_retries=0)
    # attempts=1 would be exhausted for a function error; a platform error still retries.
    decision = decide("platform", attempts=1, enqueued_at=0.0, now=10.0, config=config, delays=DEFAULTS)
    assert decision == Retry(20.0)


def test_a_retry_past_the_maximum_age_gives_up_now() -> None:
    config = EventConfig(max_age=90)
    decision = decide("function", attempts=1, enqueued_at=0.0, now=40.0, config=config, delays=DEFAULTS)
    assert decision == GiveUp("EventAgeExceeded")


def test_base_delays_are_settings() -> None:
    fast = RetryDelays(function_error=(0.01, 0.02), throttle_base=0.001, throttle_cap=0.004)
    config = EventConfig()
    assert decide("function", attempts=2, enqueued_at=0, now=5, config=config, delays=fast) == Retry(5.02)
    assert throttle_delay(0.0, 0.0, fast) == 0.001
    assert throttle_delay(0.0, 100.0, fast) == 0.004


def test_expired_and_exhausted() -> None:
    config = EventConfig(max_retries=1, max_age=60)
    assert not expired(0.0, 60.0, config) and expired(0.0, 60.5, config)
    assert not exhausted(1, config) and exhausted(2, config)


@pytest.mark.parametrize(
    "fields", [{"max_retries": 3}, {"max_retries": -1}, {"max_age": 21_601}, {"max_age": 0}]
)
def test_config_limits(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        EventConfig(**fields)  # type: ignore[arg-type]
