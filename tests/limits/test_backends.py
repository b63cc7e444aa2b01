"""The two limiter backends against the same cases: memory in virtual time, Redis for real."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import pytest
from trio.testing import MockClock

from service.limits import LimiterBackend, MemoryBackend
from service.limits.redis import RedisBackend
from tests.databases import REDIS_URL, forget_redis_prefix, redis_reachable
from tests.limits.cases import CASES

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
