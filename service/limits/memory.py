"""The limiter in this process's memory: exact within the process (so, with WORKERS=n, per
worker). Time is trio's clock, so tests run it in virtual time."""

from __future__ import annotations

import math
from dataclasses import dataclass

import trio

from .backend import Checked, Rate, Slot, Verdict

# Keys whose state is this old is forgotten the next time the store is swept.
SWEEP_EVERY = 10_000


# A microsecond: below any interval a limit can have, above floating-point error.
SLACK_S = 1e-6


@dataclass(frozen=True, slots=True)
class Peeked:
    """A GCRA bucket's answer to one request, before anything is written."""

    key: str
    allowed: bool
    retry_after_s: float
    # Units that could be taken at once: before this request, and after it if it is taken
    # (when it is refused, nothing is taken: the same as before).
    left_before: float
    left_after: float
    # The bucket's TAT once this request is taken.
    tat_after: float


def _live(expires_at: float, now: float) -> bool:
    """Whether state that runs out at `expires_at` (a slot's lease, a day's counter, a
    bucket's TAT) still counts at `now`: it ends at exactly that instant."""
    return expires_at > now


class MemoryBackend:
    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._counters: dict[str, tuple[float, int]] = {}  # key -> (expires at, count)
        self._operations = 0

    def _now(self) -> float:
        self._operations += 1
        now = trio.current_time()
        if self._operations % SWEEP_EVERY == 0:
            self._tat = {k: v for k, v in self._tat.items() if _live(v, now)}
            self._counters = {k: v for k, v in self._counters.items() if _live(v[0], now)}
        return now

    async def check(
        self, *, requests: Rate | None, slot: Slot | None, tokens: Rate | None
    ) -> Checked:
        # No await between the checks and the writes: atomic within this process.
        now = self._now()
        requests_peeked = self._peek(requests, now) if requests is not None else None
        tokens_peeked = self._peek(tokens, now) if tokens is not None else None
        held = len(self._held(slot.key, now)) if slot is not None else 0
        refused: str | None = None
        wait = 0.0
        if requests_peeked is not None and not requests_peeked.allowed:
            refused, wait = "requests_per_minute", requests_peeked.retry_after_s
        elif slot is not None and held >= slot.limit:
            refused, wait = "concurrent_streams", 1.0
        elif tokens_peeked is not None and not tokens_peeked.allowed:
            refused, wait = "tokens_per_minute", tokens_peeked.retry_after_s
        admitted = refused is None
        checked = Checked(
            refused,
            wait,
            _left(requests_peeked, admitted),
            _left(tokens_peeked, admitted),
            max(slot.limit - held - admitted, 0) if slot is not None else 0.0,
        )
        if not admitted:
            return checked
        for peeked in (requests_peeked, tokens_peeked):
            if peeked is not None:
                self._tat[peeked.key] = peeked.tat_after
        if slot is not None:
            self._slots[slot.key][slot.lease] = now + slot.ttl_s
        return checked

    def _peek(self, rate: Rate, now: float) -> Peeked:
        tat = max(self._tat.get(rate.key, now), now)
        new_tat = tat + rate.cost * rate.interval_s
        capacity_s = rate.burst * rate.interval_s
        # The slack keeps a full bucket's last unit: at a clock reading of 1e5 s,
        # (now + 0.1) - now is 0.10000000000582 and would refuse a burst of one.
        if new_tat - now > capacity_s + SLACK_S:
            left = max((now + capacity_s - tat) / rate.interval_s, 0)
            return Peeked(rate.key, False, new_tat - now - capacity_s, left, left, new_tat)
        # (A hair of slack: 0.6 - 0.2 is 0.3999... in floating point.)
        left = math.floor((now + capacity_s - new_tat) / rate.interval_s + 1e-3)
        return Peeked(rate.key, True, 0.0, left + rate.cost, left, new_tat)

    def _held(self, key: str, now: float) -> dict[str, float]:
        """The leases of `key` still running (the others are dropped)."""
        held = {k: v for k, v in self._slots.get(key, {}).items() if _live(v, now)}
        self._slots[key] = held
        return held

    async def release(self, *, tokens: Rate | None, slot: Slot | None) -> None:
        if tokens is not None and tokens.cost:
            await self.give_back(tokens.key, cost=tokens.cost, interval_s=tokens.interval_s)
        if slot is not None:
            await self.release_slot(slot.key, slot.lease)

    async def take(self, key: str, *, cost: float, interval_s: float, burst: float) -> Verdict:
        peeked = self._peek(Rate(key, cost, interval_s, burst), self._now())
        if peeked.allowed:
            self._tat[key] = peeked.tat_after
        return Verdict(peeked.allowed, peeked.retry_after_s, peeked.left_after)

    async def peek(self, key: str, *, cost: float, interval_s: float, burst: float) -> Verdict:
        peeked = self._peek(Rate(key, cost, interval_s, burst), self._now())
        return Verdict(peeked.allowed, peeked.retry_after_s, peeked.left_after)

    async def give_back(self, key: str, *, cost: float, interval_s: float) -> None:
        # Given back (cost > 0), the bucket fills up to full and no further; taken (cost < 0),
        # it empties from where it is now, even past empty.
        now = self._now()
        tat = max(self._tat.get(key, now), now)
        self._tat[key] = max(tat - cost * interval_s, now)

    async def acquire_slot(self, key: str, lease: str, *, limit: int, ttl_s: float) -> bool:
        now = self._now()
        held = self._held(key, now)
        free = len(held) < limit
        if free:
            held[lease] = now + ttl_s
        return free

    async def refresh_slot(self, key: str, lease: str, *, ttl_s: float) -> None:
        held = self._slots.get(key, {})
        if lease in held:
            held[lease] = self._now() + ttl_s

    async def release_slot(self, key: str, lease: str) -> None:
        self._slots.get(key, {}).pop(lease, None)

    async def spend(self, key: str, amount: int, *, budget: int, ttl_s: float) -> bool:
        now = self._now()
        expires, used = self._counters.get(key, (now, 0))
        if not _live(expires, now):
            expires, used = now + ttl_s, 0
        fits = used + amount <= budget
        if fits:
            self._counters[key] = (expires, used + amount)
        return fits

    async def adjust(self, key: str, amount: int) -> None:
        now = self._now()
        expires, used = self._counters.get(key, (now, 0))
        if _live(expires, now):
            self._counters[key] = (expires, used + amount)

    async def aclose(self) -> None:
        pass


def _left(peeked: Peeked | None, taken: bool) -> float:
    """Units left of a bucket once this request is counted (0 for a check not made)."""
    if peeked is None:
        return 0.0
    return peeked.left_after if taken else peeked.left_before
