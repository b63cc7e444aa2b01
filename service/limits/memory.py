"""The limiter in this process's memory: exact within the process (so, with WORKERS=n, per
worker). Time is trio's clock, so tests run it in virtual time."""

from __future__ import annotations

import math

import trio

from .backend import Checked, Rate, Slot, Verdict

# Keys whose state is this old is forgotten the next time the store is swept.
SWEEP_EVERY = 10_000


# A microsecond: below any interval a limit can have, above floating-point error.
SLACK_S = 1e-6


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
            self._tat = {k: v for k, v in self._tat.items() if v > now}
            self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
        return now

    async def check(
        self, *, requests: Rate | None, slot: Slot | None, tokens: Rate | None
    ) -> Checked:
        # No await between the checks and the writes: atomic within this process.
        now = self._now()
        found = [self._peek(rate, now) if rate else None for rate in (requests, tokens)]
        held = len(self._held(slot.key, now)) if slot is not None else 0
        refused: str | None = None
        wait = 0.0
        if found[0] is not None and not found[0][0]:
            refused, wait = "requests_per_minute", found[0][1]
        elif slot is not None and held >= slot.limit:
            refused, wait = "concurrent_streams", 1.0
        elif found[1] is not None and not found[1][0]:
            refused, wait = "tokens_per_minute", found[1][1]
        admitted = refused is None
        checked = Checked(
            refused,
            wait,
            _left(requests, found[0], admitted),
            _left(tokens, found[1], admitted),
            max(slot.limit - held - admitted, 0) if slot is not None else 0.0,
        )
        if not admitted:
            return checked
        for rate, result in ((requests, found[0]), (tokens, found[1])):
            if rate is not None and result is not None:
                self._tat[rate.key] = result[3]
        if slot is not None:
            self._slots[slot.key][slot.lease] = now + slot.ttl_s
        return checked

    def _peek(self, rate: Rate, now: float) -> tuple[bool, float, float, float]:
        """(allowed, retry after, remaining, the new TAT if taken) for a GCRA bucket."""
        tat = max(self._tat.get(rate.key, now), now)
        new_tat = tat + rate.cost * rate.interval_s
        capacity_s = rate.burst * rate.interval_s
        # The slack keeps a full bucket's last unit: at a clock reading of 1e5 s,
        # (now + 0.1) - now is 0.10000000000582 and would refuse a burst of one.
        if new_tat - now > capacity_s + SLACK_S:
            remaining = max((now + capacity_s - tat) / rate.interval_s, 0)
            return False, new_tat - now - capacity_s, remaining, tat
        # (A hair of slack: 0.6 - 0.2 is 0.3999... in floating point.)
        remaining = math.floor((now + capacity_s - new_tat) / rate.interval_s + 1e-3)
        return True, 0.0, remaining, new_tat

    def _held(self, key: str, now: float) -> dict[str, float]:
        held = {k: v for k, v in self._slots.get(key, {}).items() if v > now}
        self._slots[key] = held
        return held

    async def release(
        self, *, tokens: Rate | None, slot_key: str | None, lease: str | None
    ) -> None:
        if tokens is not None and tokens.cost:
            await self.give_back(tokens.key, cost=tokens.cost, interval_s=tokens.interval_s)
        if slot_key is not None and lease is not None:
            await self.release_slot(slot_key, lease)

    async def take(self, key: str, *, cost: float, interval_s: float, burst: float) -> Verdict:
        allowed, retry_after, remaining, new_tat = self._peek(
            Rate(key, cost, interval_s, burst), self._now()
        )
        if allowed:
            self._tat[key] = new_tat
        return Verdict(allowed, retry_after, remaining)

    async def peek(self, key: str, *, cost: float, interval_s: float, burst: float) -> Verdict:
        allowed, retry_after, remaining, _ = self._peek(
            Rate(key, cost, interval_s, burst), self._now()
        )
        return Verdict(allowed, retry_after, remaining)

    async def give_back(self, key: str, *, cost: float, interval_s: float) -> None:
        now = self._now()
        tat = self._tat.get(key, now)
        self._tat[key] = (
            max(tat - cost * interval_s, now) if cost > 0 else max(tat, now) - cost * interval_s
        )

    async def acquire_slot(self, key: str, lease: str, *, limit: int, ttl_s: float) -> bool:
        now = self._now()
        held = {k: v for k, v in self._slots.get(key, {}).items() if v > now}
        if len(held) >= limit:
            self._slots[key] = held
            return False
        held[lease] = now + ttl_s
        self._slots[key] = held
        return True

    async def refresh_slot(self, key: str, lease: str, *, ttl_s: float) -> None:
        held = self._slots.get(key, {})
        if lease in held:
            held[lease] = self._now() + ttl_s

    async def release_slot(self, key: str, lease: str) -> None:
        self._slots.get(key, {}).pop(lease, None)

    async def spend(self, key: str, amount: int, *, budget: int, ttl_s: float) -> bool:
        now = self._now()
        expires, used = self._counters.get(key, (now + ttl_s, 0))
        if expires <= now:
            expires, used = now + ttl_s, 0
        if used + amount > budget:
            return False
        self._counters[key] = (expires, used + amount)
        return True

    async def adjust(self, key: str, amount: int) -> None:
        now = self._now()
        expires, used = self._counters.get(key, (now, 0))
        if expires > now:
            self._counters[key] = (expires, used + amount)

    async def aclose(self) -> None:
        pass


def _left(rate: Rate | None, peeked: tuple[bool, float, float, float] | None, taken: bool) -> float:
    """Units left of a bucket: after this request's cost if it was taken, else as before it
    (a peek that would have allowed it counted its cost as gone)."""
    if rate is None or peeked is None:
        return 0.0
    allowed, _, remaining, _ = peeked
    return remaining + rate.cost if allowed and not taken else remaining
