"""The limiter in this process's memory: exact within the process (so, with WORKERS=n, per
worker). Time is trio's clock, so tests run it in virtual time."""

from __future__ import annotations

import math

import trio

from .backend import Verdict

# Keys whose state is this old is forgotten the next time the store is swept.
SWEEP_EVERY = 10_000


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

    async def take(self, key: str, *, cost: float, interval_s: float, burst: float) -> Verdict:
        now = self._now()
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + cost * interval_s
        capacity_s = burst * interval_s
        if new_tat - now > capacity_s:
            return Verdict(
                False, new_tat - now - capacity_s, max((now + capacity_s - tat) / interval_s, 0)
            )
        self._tat[key] = new_tat
        # (A hair of slack: 0.6 - 0.2 is 0.3999... in floating point.)
        return Verdict(True, 0.0, math.floor((now + capacity_s - new_tat) / interval_s + 1e-3))

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
