"""What every limiter backend must do, written once and run against each (memory in virtual
time, Redis on the machine's server in real time). Intervals are short so real time is fast.
"""

from __future__ import annotations

import pytest
import trio

from service.limits import LimiterBackend
from service.limits.backend import Rate, Slot

INTERVAL = 0.2  # one unit every 0.2 s


async def burst_then_exact_retry_after(backend: LimiterBackend) -> None:
    verdicts = [
        await backend.take("k:requests", cost=1, interval_s=INTERVAL, burst=3) for _ in range(4)
    ]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts[:3]] == [2, 1, 0]
    assert verdicts[3].retry_after_s == pytest.approx(INTERVAL, abs=0.05)
    await trio.sleep(verdicts[3].retry_after_s + 0.02)
    assert (await backend.take("k:requests", cost=1, interval_s=INTERVAL, burst=3)).allowed


async def reservation_refund_and_overdraw(backend: LimiterBackend) -> None:
    # A bucket of 100 tokens: reserve 80, give back 50 unused: 70 fit again, 71 do not.
    assert (await backend.take("k:tokens", cost=80, interval_s=1.0, burst=100)).allowed
    refused = await backend.take("k:tokens", cost=30, interval_s=1.0, burst=100)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(10, abs=0.2)
    await backend.give_back("k:tokens", cost=50, interval_s=1.0)
    assert not (await backend.take("k:tokens", cost=71, interval_s=1.0, burst=100)).allowed
    assert (await backend.take("k:tokens", cost=70, interval_s=1.0, burst=100)).allowed
    # Used more than reserved: the extra is taken too, past empty.
    await backend.give_back("k:tokens", cost=-20, interval_s=1.0)
    late = await backend.take("k:tokens", cost=1, interval_s=1.0, burst=100)
    assert not late.allowed
    assert late.retry_after_s == pytest.approx(21, abs=0.3)


async def slots_lease_and_release(backend: LimiterBackend) -> None:
    assert await backend.acquire_slot("k:streams", "a", limit=2, ttl_s=0.5)
    assert await backend.acquire_slot("k:streams", "b", limit=2, ttl_s=0.5)
    assert not await backend.acquire_slot("k:streams", "c", limit=2, ttl_s=0.5)
    await backend.release_slot("k:streams", "a")
    assert await backend.acquire_slot("k:streams", "c", limit=2, ttl_s=0.5)
    # "b" is renewed, "c" is left to expire: its slot frees itself.
    await trio.sleep(0.3)
    await backend.refresh_slot("k:streams", "b", ttl_s=0.5)
    await trio.sleep(0.3)
    assert await backend.acquire_slot("k:streams", "d", limit=2, ttl_s=0.5)
    assert not await backend.acquire_slot("k:streams", "e", limit=2, ttl_s=0.5)


async def budget_spend_and_adjust(backend: LimiterBackend) -> None:
    assert await backend.spend("k:day", 600, budget=1000, ttl_s=60)
    assert not await backend.spend("k:day", 500, budget=1000, ttl_s=60)
    await backend.adjust("k:day", -300)  # the run used 300 of its 600
    assert await backend.spend("k:day", 700, budget=1000, ttl_s=60)
    assert not await backend.spend("k:day", 1, budget=1000, ttl_s=60)


async def a_peek_answers_as_a_take_would_and_takes_nothing(backend: LimiterBackend) -> None:
    for _ in range(3):
        peeked = await backend.peek("k:peeked", cost=1, interval_s=INTERVAL, burst=2)
        assert (peeked.allowed, peeked.remaining) == (True, 1)
    for _ in range(2):
        assert (await backend.take("k:peeked", cost=1, interval_s=INTERVAL, burst=2)).allowed
    peeked = await backend.peek("k:peeked", cost=1, interval_s=INTERVAL, burst=2)
    taken = await backend.take("k:peeked", cost=1, interval_s=INTERVAL, burst=2)
    assert (peeked.allowed, taken.allowed) == (False, False)
    assert peeked.retry_after_s == pytest.approx(INTERVAL, abs=0.05)
    assert taken.retry_after_s == pytest.approx(peeked.retry_after_s, abs=0.05)


CASES = [
    burst_then_exact_retry_after,
    a_peek_answers_as_a_take_would_and_takes_nothing,
    reservation_refund_and_overdraw,
    slots_lease_and_release,
    budget_spend_and_adjust,
]


async def a_request_is_checked_all_or_nothing(backend: LimiterBackend) -> None:
    requests = Rate("k:requests", 1, INTERVAL, 5)
    slot = Slot("k:streams", "lease-1", 1, 5.0)
    first = await backend.check(requests=requests, slot=slot, tokens=Rate("k:tokens", 60, 1.0, 100))
    assert first.refused is None
    assert (first.requests_remaining, first.tokens_remaining, first.streams_remaining) == (4, 40, 0)
    # The slot is taken: refused, and nothing else was applied (no request, no tokens).
    busy = await backend.check(
        requests=requests,
        slot=Slot("k:streams", "lease-2", 1, 5.0),
        tokens=Rate("k:tokens", 30, 1.0, 100),
    )
    assert busy.refused == "concurrent_streams"
    # What is left is told as it is: the refusal took no request and no tokens.
    assert (busy.requests_remaining, busy.tokens_remaining, busy.streams_remaining) == (4, 40, 0)
    again = await backend.check(requests=requests, slot=None, tokens=Rate("k:tokens", 40, 1.0, 100))
    assert again.refused is None
    assert (again.requests_remaining, again.tokens_remaining) == (3, 0)
    # Too many tokens: refused with the exact wait, and the request unit not spent either.
    short = await backend.check(requests=requests, slot=None, tokens=Rate("k:tokens", 50, 1.0, 100))
    assert short.refused == "tokens_per_minute"
    assert short.retry_after_s == pytest.approx(50, abs=0.5)
    assert short.requests_remaining == 3
    # The run ended having used 10 of its 60: 50 come back, and its slot is free.
    await backend.release(tokens=Rate("k:tokens", 50, 1.0, 0), slot=slot)
    after = await backend.check(
        requests=requests,
        slot=Slot("k:streams", "lease-3", 1, 5.0),
        tokens=Rate("k:tokens", 50, 1.0, 100),
    )
    assert after.refused is None
    assert after.requests_remaining == 2


CASES.append(a_request_is_checked_all_or_nothing)


async def a_burst_of_one_admits_its_first_request(backend: LimiterBackend) -> None:
    """(now + interval) - now is a hair over the interval at some clock readings: a full
    bucket of one must still admit its one unit."""
    for per_minute in range(590, 610):
        interval = 60 / per_minute
        key = f"k:one:{per_minute}"
        assert (await backend.take(key, cost=1, interval_s=interval, burst=1)).allowed
        checked = await backend.check(
            requests=Rate(f"{key}:checked", 1, interval, 1), slot=None, tokens=None
        )
        assert checked.refused is None, per_minute
        # The checks not made (tokens, a stream slot) have nothing left to tell: 0.
        assert (checked.tokens_remaining, checked.streams_remaining) == (0, 0)


CASES.append(a_burst_of_one_admits_its_first_request)
