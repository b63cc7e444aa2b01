"""What a limiter stores, as operations either backend performs atomically.

Rates use GCRA (the generic cell rate algorithm): one number per key, the theoretical
arrival time (TAT) of the next unit, gives a smooth rate, a burst, and the exact time at
which a refused caller would be admitted. A request costs 1 unit; a token reservation costs
its tokens, and is settled afterwards by giving back what was not used.

    verdict = await backend.take("rl:{key:abc}:requests", cost=1, interval_s=1.0, burst=10)
    verdict.allowed, verdict.retry_after_s, verdict.remaining
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    # When refused: how long until the same request would be admitted.
    retry_after_s: float
    # Units that could still be taken at once after this one.
    remaining: float


@dataclass(frozen=True, slots=True)
class Rate:
    """A GCRA bucket: `cost` units out of `burst`, one unit back every `interval_s`."""

    key: str
    cost: float
    interval_s: float
    burst: float


@dataclass(frozen=True, slots=True)
class Slot:
    key: str
    lease: str
    limit: int
    ttl_s: float


@dataclass(frozen=True, slots=True)
class Checked:
    """A request's checks, all or nothing: `refused` names the first that failed (then
    none was applied), else None."""

    refused: str | None
    retry_after_s: float
    # What is left of each limit once this request is counted: after it, if it was
    # admitted; if refused, as before it (a refusal takes nothing).
    requests_remaining: float
    tokens_remaining: float
    # Free stream slots, counted the same way.
    streams_remaining: float = 0.0


class LimiterError(Exception):
    """The backend did not answer in time (Redis down or slow)."""


class LimiterBackend(Protocol):
    async def check(
        self, *, requests: Rate | None, slot: Slot | None, tokens: Rate | None
    ) -> Checked:
        """A request's rate, stream slot and token reservation, in one atomic step (with
        Redis, one round trip): all applied, or, if one is refused, none."""
        ...

    async def release(self, *, tokens: Rate | None, slot: Slot | None) -> None:
        """A run's end: give `tokens.cost` back (negative: take more) and free the slot."""
        ...

    async def take(self, key: str, *, cost: float, interval_s: float, burst: float) -> Verdict:
        """Take `cost` units from a bucket that refills one unit per `interval_s` and holds
        `burst` units, unless that would overdraw it."""
        ...

    async def peek(self, key: str, *, cost: float, interval_s: float, burst: float) -> Verdict:
        """What `take` would answer, taking nothing."""
        ...

    async def give_back(self, key: str, *, cost: float, interval_s: float) -> None:
        """Return `cost` units (negative: take more, even past empty)."""
        ...

    async def acquire_slot(self, key: str, lease: str, *, limit: int, ttl_s: float) -> bool:
        """Hold one of `limit` slots under `lease` for `ttl_s`, unless all are held."""
        ...

    async def refresh_slot(self, key: str, lease: str, *, ttl_s: float) -> None: ...

    async def release_slot(self, key: str, lease: str) -> None: ...

    async def spend(self, key: str, amount: int, *, budget: int, ttl_s: float) -> bool:
        """Add `amount` to a counter unless it would pass `budget` (a daily budget)."""
        ...

    async def adjust(self, key: str, amount: int) -> None:
        """Add `amount` (negative: give back) to a counter, whatever the budget."""
        ...

    async def aclose(self) -> None: ...
