"""The refused sign-ins limit, shared by every instance through Redis, and its 429.

Each address has a GCRA bucket of `burst` failures, one back every `every_s`, kept with the
other limits of that address (`rl:{ip:ADDRESS}:sign_ins`), so two instances count the same
failures. If Redis does not answer, each instance counts in its own memory meanwhile (a
guesser is still slowed down; nobody is locked out by an outage), and asks Redis again
only after REDIS_RETRY_S, so an outage does not add RATE_LIMIT_TIMEOUT_S to every request.

    failures = SharedFailedAttempts(backend, burst=20, every_s=3)
    verdict = await failures.check(address)
    if not verdict.allowed:
        raise TooManySignIns(verdict, burst=failures.burst, every_s=failures.every_s)
"""

from __future__ import annotations

import logging
import math

import trio

from ..auth.failures import FailedAttempts, SignInVerdict
from ..errors import RateLimited
from ..telemetry.metrics import METRICS
from .admission import header_fields
from .backend import LimiterBackend, LimiterError

log = logging.getLogger(__name__)

LIMIT = "sign_ins"
# After Redis failed to answer, how long the count stays in this process before Redis is
# asked again.
REDIS_RETRY_S = 1.0


class TooManySignIns(RateLimited):
    """A 429 like every other (Retry-After, the RateLimit fields), for refused sign-ins."""

    def __init__(self, verdict: SignInVerdict, *, burst: int, every_s: float) -> None:
        retry_after = max(1, math.ceil(verdict.retry_after_s))
        window = max(1, math.ceil(burst * every_s))
        super().__init__(
            LIMIT,
            verdict.retry_after_s,
            header_fields(
                [f'"{LIMIT}";q={burst};w={window}'],
                [f'"{LIMIT}";r={verdict.remaining};t={retry_after}'],
            ),
        )
        self.public_message = (
            f"too many failed sign-ins from this address; retry in {self.retry_after} s"
        )
        self.args = (self.public_message,)


class SharedFailedAttempts:
    """Failed sign-ins per address in a limiter backend (Redis): every instance counts them."""

    def __init__(self, backend: LimiterBackend, *, burst: int, every_s: float) -> None:
        self.burst = burst
        self.every_s = every_s
        self._backend = backend
        # While the backend does not answer: this process's own count.
        self._fallback = FailedAttempts(burst=burst, every_s=every_s)
        self._down_until = -math.inf

    def _key(self, address: str) -> str:
        return f"rl:{{ip:{address}}}:{LIMIT}"

    async def check(self, address: str) -> SignInVerdict:
        if self._redis_is_down():
            return await self._fallback.check(address)
        try:
            verdict = await self._backend.peek(
                self._key(address), cost=1, interval_s=self.every_s, burst=self.burst
            )
        except LimiterError as exc:
            self._unreachable("check", exc)
            return await self._fallback.check(address)
        remaining = math.floor(verdict.remaining + 1) if verdict.allowed else 0
        return SignInVerdict(verdict.allowed, verdict.retry_after_s, remaining)

    async def failed(self, address: str) -> None:
        if self._redis_is_down():
            await self._fallback.failed(address)
            return
        try:
            await self._backend.take(
                self._key(address), cost=1, interval_s=self.every_s, burst=self.burst
            )
        except LimiterError as exc:
            self._unreachable("count", exc)
            await self._fallback.failed(address)

    def _redis_is_down(self) -> bool:
        return trio.current_time() < self._down_until

    def _unreachable(self, operation: str, exc: LimiterError) -> None:
        self._down_until = trio.current_time() + REDIS_RETRY_S
        METRICS.limiter_errors.labels(operation=f"sign_in_{operation}").inc()
        log.warning("rate limiter unreachable; counting sign-ins in this process: %s", exc)
