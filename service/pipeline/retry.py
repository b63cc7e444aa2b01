"""When to send a failed call again, and how long to wait first.

Only retryable upstream errors (connect errors, timeouts, 408, 429, 5xx) are retried, at most
`retries` times, and only while the caller's deadline (trio's effective deadline) leaves room
for another attempt after the wait. A provider's Retry-After is honoured as sent; otherwise the
wait grows exponentially with jitter, so many clients that failed together do not come back
together:

    policy = RetryPolicy()
    delay = policy.delay_before_retry(error, retries_done=0, retries=2)
    if delay is None:
        raise error
    await trio.sleep(delay)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import trio

from ..errors import UpstreamError


@dataclass(frozen=True)
class RetryPolicy:
    """`base_delay_s` before the first retry, doubling up to `max_delay_s`, each jittered down
    by up to half; `min_attempt_s` is the least time worth starting another attempt with."""

    base_delay_s: float = 0.25
    max_delay_s: float = 4.0
    min_attempt_s: float = 0.1
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def backoff_s(self, retries_done: int) -> float:
        ceiling = min(self.max_delay_s, self.base_delay_s * (1 << retries_done))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def delay_before_retry(
        self, error: UpstreamError, *, retries_done: int, retries: int
    ) -> float | None:
        """Seconds to wait before retrying after `error`, or None when it must not be retried."""
        if not error.retryable or retries_done >= retries:
            return None
        if error.retry_after_s is not None:
            delay = error.retry_after_s
        else:
            delay = self.backoff_s(retries_done)
        if trio.current_time() + delay + self.min_attempt_s > trio.current_effective_deadline():
            return None
        return delay
