"""Failed sign-ins per client address: a burst is allowed, then one every few seconds.

failures = FailedAttempts(burst=10, every_s=6)
if not failures.allowed("203.0.113.9"): ...    # 429 before even looking at the key
failures.failed("203.0.113.9")
"""

from __future__ import annotations

import trio

# Addresses remembered at most; beyond it the oldest are forgotten (each is a few bytes).
MAX_ADDRESSES = 100_000


class FailedAttempts:
    def __init__(self, *, burst: int = 10, every_s: float = 6.0) -> None:
        self._burst = burst
        self._every_s = every_s
        # address -> the time at which its bucket is full again (GCRA's theoretical arrival)
        self._full_at: dict[str, float] = {}

    def allowed(self, address: str) -> bool:
        full_at = self._full_at.get(address)
        if full_at is None:
            return True
        # Room for one more failure unless the bucket is `burst` failures deep.
        return full_at - trio.current_time() <= (self._burst - 1) * self._every_s

    def failed(self, address: str) -> None:
        now = trio.current_time()
        full_at = max(self._full_at.pop(address, now), now) + self._every_s
        self._full_at[address] = full_at  # re-inserted: the dict's order is by last failure
        if len(self._full_at) > MAX_ADDRESSES:
            del self._full_at[next(iter(self._full_at))]
