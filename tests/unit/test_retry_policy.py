"""When a failed call may be sent again, and how long the service waits first."""

from __future__ import annotations

import random

import pytest
import trio
from trio.testing import MockClock

from service.errors import (
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from service.pipeline import RetryPolicy


def test_backoff_doubles_up_to_the_cap_and_jitters_within_the_upper_half() -> None:
    policy = RetryPolicy(base_delay_s=0.25, max_delay_s=4.0, rng=random.Random(7))
    for retries_done, ceiling in [(0, 0.25), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        waits = {policy.backoff_s(retries_done) for _ in range(200)}
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        # Jittered: clients that failed together do not all come back together.
        assert len(waits) > 100


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (UpstreamUnavailable(), True),
        (UpstreamRateLimited(), True),
        (UpstreamTimeout(), True),
        (UpstreamRejected(), False),
        (UpstreamAuthFailed(), False),
        (UpstreamBadResponse(), False),
    ],
)
async def test_only_connect_errors_timeouts_rate_limits_and_5xx_are_retried(
    error: UpstreamError, retryable: bool
) -> None:
    policy = RetryPolicy()
    delay = policy.delay_before_retry(error, retries_done=0, retries=2)
    assert (delay is not None) is retryable


async def test_the_retry_count_is_a_hard_limit() -> None:
    policy = RetryPolicy()
    assert policy.delay_before_retry(UpstreamUnavailable(), retries_done=1, retries=2) is not None
    assert policy.delay_before_retry(UpstreamUnavailable(), retries_done=2, retries=2) is None
    assert policy.delay_before_retry(UpstreamUnavailable(), retries_done=0, retries=0) is None


async def test_retry_after_is_honoured_as_sent() -> None:
    policy = RetryPolicy(max_delay_s=1.0)
    error = UpstreamRateLimited(retry_after_s=7.5)
    assert policy.delay_before_retry(error, retries_done=0, retries=2) == 7.5


async def test_a_wait_that_leaves_no_time_for_an_attempt_is_not_taken(
    autojump_clock: MockClock,
) -> None:
    policy = RetryPolicy(min_attempt_s=0.1)
    with trio.move_on_after(2):
        await trio.sleep(1)
        # One second is left: a 0.8 s wait leaves room for an attempt, 0.95 s does not.
        fits = UpstreamRateLimited(retry_after_s=0.8)
        assert policy.delay_before_retry(fits, retries_done=0, retries=2) == 0.8
        too_long = UpstreamRateLimited(retry_after_s=0.95)
        assert policy.delay_before_retry(too_long, retries_done=0, retries=2) is None


class TopOfRange(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def test_by_default_backoff_starts_at_a_quarter_second_and_is_capped_at_four() -> None:
    policy = RetryPolicy(rng=TopOfRange())
    waits = [policy.backoff_s(retries_done) for retries_done in range(7)]
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


async def test_by_default_a_retry_needs_a_tenth_of_a_second_left_after_the_wait(
    autojump_clock: MockClock,
) -> None:
    policy = RetryPolicy()
    with trio.move_on_after(2):
        await trio.sleep(1)
        fits = UpstreamRateLimited(retry_after_s=0.875)
        assert policy.delay_before_retry(fits, retries_done=0, retries=2) == 0.875
        too_long = UpstreamRateLimited(retry_after_s=0.9375)
        assert policy.delay_before_retry(too_long, retries_done=0, retries=2) is None


async def test_a_wait_that_leaves_exactly_the_least_attempt_time_is_taken(
    autojump_clock: MockClock,
) -> None:
    # Binary fractions, so the sum lands on the deadline exactly.
    policy = RetryPolicy(min_attempt_s=0.25)
    with trio.move_on_after(2):
        await trio.sleep(1)
        exactly = UpstreamRateLimited(retry_after_s=0.75)
        assert policy.delay_before_retry(exactly, retries_done=0, retries=2) == 0.75
        over = UpstreamRateLimited(retry_after_s=0.75 + 1 / 64)
        assert policy.delay_before_retry(over, retries_done=0, retries=2) is None
