"""Retry rules, which the real service documents with numbers."""

import pytest

from django_q_cloudtasks.emulator.state import RateLimits, RetryConfig


def test_backoff_doubles_then_grows_linearly_up_to_max_backoff():
    # The example in Cloud Tasks' RetryConfig reference.
    retry = RetryConfig(min_backoff=10, max_backoff=300, max_doublings=3)
    assert [retry.backoff(attempt) for attempt in range(1, 10)] == [
        10,
        20,
        40,
        80,
        160,
        240,
        300,
        300,
        300,
    ]


@pytest.mark.parametrize(
    ("retry", "attempts", "age", "gives_up"),
    [
        (RetryConfig(max_attempts=3), 2, 0, False),
        (RetryConfig(max_attempts=3), 3, 0, True),
        (RetryConfig(max_attempts=-1), 10_000, 10**9, False),
        # With both limits set, retrying stops only once both are reached.
        (RetryConfig(max_attempts=3, max_retry_duration=60), 3, 30, False),
        (RetryConfig(max_attempts=3, max_retry_duration=60), 3, 61, True),
    ],
)
def test_retrying_stops_when_the_limits_are_reached(retry, attempts, age, gives_up):
    assert retry.gives_up(attempts, age) is gives_up


@pytest.mark.parametrize(("rate", "burst"), [(500, 100), (4, 4), (0.5, 1)])
def test_the_burst_size_follows_the_rate(rate, burst):
    assert RateLimits(max_dispatches_per_second=rate).max_burst_size == burst
