"""Failed sign-ins per client address: a burst is allowed, then one every few seconds.

    failures = FailedAttempts(burst=10, every_s=6)
    verdict = await failures.check("203.0.113.9")   # before even looking at the key
    if not verdict.allowed: ...                     # 429, Retry-After: verdict.retry_after_s
    await failures.failed("203.0.113.9")

This one counts in this process's memory; with Redis, `limits.sign_ins.SharedFailedAttempts`
counts for every instance at once (the same `SignInLimit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import trio

# Addresses remembered at most; beyond it the oldest are forgotten (each is a few bytes).
MAX_ADDRESSES = 100_000


@dataclass(frozen=True, slots=True)
class SignInVerdict:
    """Whether an address may try to sign in now; if not, how long until it may."""

    allowed: bool
    retry_after_s: float
    # Failures the address may still have before it is refused.
    remaining: int


class SignInLimit(Protocol):
    burst: int
    every_s: float

    async def check(self, address: str) -> SignInVerdict: ...

    async def failed(self, address: str) -> None: ...


class FailedAttempts:
    def __init__(self, *, burst: int = 10, every_s: float = 6.0) -> None:
        self.burst = burst
        self.every_s = every_s
        # address -> the time at which its bucket is full again (GCRA's theoretical arrival)
        self._full_at: dict[str, float] = {}

    async def check(self, address: str) -> SignInVerdict:
        full_at = self._full_at.get(address)
        now = trio.current_time()
        if full_at is None or full_at <= now:
            return SignInVerdict(True, 0.0, self.burst)
        # Room for one more failure unless the bucket is `burst` failures deep.
        depth_s = full_at - now
        remaining = max(math.floor(self.burst - depth_s / self.every_s), 0)
        wait_s = depth_s - (self.burst - 1) * self.every_s
        return SignInVerdict(wait_s <= 0, max(wait_s, 0.0), remaining)

    async def failed(self, address: str) -> None:
        now = trio.current_time()
        full_at = max(self._full_at.pop(address, now), now) + self.every_s
        self._full_at[address] = full_at  # re-inserted: the dict's order is by last failure
        if len(self._full_at) > MAX_ADDRESSES:
            del self._full_at[next(iter(self._full_at))]
