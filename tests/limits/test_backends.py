"""The two limiter backends against the same cases: memory in virtual time, Redis for real."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from service.auth import Principal
from service.limits import Limiter, LimiterBackend, MemoryBackend, RateLimited, load_policy
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


async def test_in_redis_a_run_without_a_daily_budget_gives_its_tokens_back(
    tmp_path: Path,
) -> None:
    """Settling and following touch only what was reserved: with no daily budget there is
    no counter to adjust (on Redis, a counter without a key would be an error, not a
    no-op as in memory)."""
    await redis_reachable()
    limits = tmp_path / "limits.toml"
    limits.write_text("[default]\ntokens_per_minute = 1000\n")
    alice = Principal(user="alice", tenant="acme", key_id="key_a")
    prefix = f"test:{secrets.token_hex(4)}:"
    try:
        async with RedisBackend(REDIS_URL, timeout_s=1.0, prefix=prefix) as backend:
            limiter = Limiter(load_policy(limits), backend, on_error="closed")
            run = await limiter.admit(alice, "a", anonymous=False, max_tokens=[600])
            await run.settle(100)
            joined = await limiter.admit(alice, "a", anonymous=False, max_tokens=[300])
            await joined.keep_only_the_slot()
            # 100 used in all: 1000 do not fit (the 100 refill in 6 s), 900 do.
            with pytest.raises(RateLimited, match="tokens_per_minute"):
                await limiter.admit(alice, "a", anonymous=False, max_tokens=[1000])
            await limiter.admit(alice, "a", anonymous=False, max_tokens=[900])
    finally:
        await forget_redis_prefix(prefix)
