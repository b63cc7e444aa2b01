"""The two limiter backends against the same cases: memory in virtual time, Redis for real."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import pytest
import trio
from trio.testing import MockClock

from service.limits import LimiterBackend, MemoryBackend
from service.limits.redis import RedisBackend
from tests.databases import REDIS_URL, forget_redis_prefix, redis_reachable
from tests.limits.cases import CASES, a_burst_of_one_admits_its_first_request

Case = Callable[[LimiterBackend], Awaitable[None]]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
async def test_in_process(case: Case, autojump_clock: MockClock) -> None:
    await case(MemoryBackend())


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
async def test_in_redis(case: Case) -> None:
    await redis_reachable()
    prefix = f"test:{secrets.token_hex(4)}:"
    try:
        async with RedisBackend(REDIS_URL, timeout_s=1.0, prefix=prefix) as backend:
            await case(backend)
    finally:
        await forget_redis_prefix(prefix)


async def test_a_burst_of_one_admits_at_any_clock_reading(autojump_clock: MockClock) -> None:
    """Found by the contract tests: at a monotonic clock of about 1e5 s, 600 requests per
    minute with no burst refused the very first request."""
    backend = MemoryBackend()
    for reading in (100000.3, 123456.789):
        await trio.sleep_until(reading)
        await a_burst_of_one_admits_its_first_request(backend)
