"""The refused sign-ins count in a limiter backend: the same answers as in memory, and while
the backend does not answer, this process's own count, asking the backend again only now
and then."""

from __future__ import annotations

import secrets

import trio
from trio.testing import MockClock

from service.auth.failures import FailedAttempts, SignInLimit
from service.limits import LimiterError, MemoryBackend
from service.limits.backend import Verdict
from service.limits.redis import RedisBackend
from service.limits.sign_ins import REDIS_RETRY_S, SharedFailedAttempts
from tests.databases import REDIS_URL, forget_redis_prefix, redis_reachable


async def verdicts(limit: SignInLimit, address: str, failures: int) -> list[tuple[bool, int]]:
    """(allowed, remaining) before each of `failures` failures, and once after."""
    seen = []
    for _ in range(failures):
        verdict = await limit.check(address)
        seen.append((verdict.allowed, verdict.remaining))
        await limit.failed(address)
    verdict = await limit.check(address)
    return [*seen, (verdict.allowed, verdict.remaining)]


async def test_shared_and_in_memory_counts_agree(autojump_clock: MockClock) -> None:
    expected = [(True, 3), (True, 2), (True, 1), (False, 0)]
    in_memory = await verdicts(FailedAttempts(burst=3, every_s=60), "a", 3)
    shared = await verdicts(SharedFailedAttempts(MemoryBackend(), burst=3, every_s=60), "a", 3)
    assert in_memory == shared == expected


async def test_in_redis_the_refusal_says_when_the_next_try_is_allowed() -> None:
    await redis_reachable()
    prefix = f"test:{secrets.token_hex(4)}:"
    try:
        async with RedisBackend(REDIS_URL, timeout_s=1.0, prefix=prefix) as backend:
            limit = SharedFailedAttempts(backend, burst=2, every_s=30)
            seen = await verdicts(limit, "203.0.113.5", 2)
            refused = await limit.check("203.0.113.5")
    finally:
        await forget_redis_prefix(prefix)
    assert seen == [(True, 2), (True, 1), (False, 0)]
    assert 29 < refused.retry_after_s <= 30


class Unreachable(MemoryBackend):
    """A backend whose every call fails as a Redis that does not answer would."""

    calls = 0

    async def peek(self, key: str, *, cost: float, interval_s: float, burst: float) -> Verdict:
        self.calls += 1
        raise LimiterError("redis peek: timed out")

    async def take(self, key: str, *, cost: float, interval_s: float, burst: float) -> Verdict:
        self.calls += 1
        raise LimiterError("redis take: timed out")


async def test_while_the_backend_is_down_this_process_counts_and_asks_it_rarely(
    autojump_clock: MockClock,
) -> None:
    backend = Unreachable()
    limit = SharedFailedAttempts(backend, burst=2, every_s=60)
    seen = await verdicts(limit, "a", 2)
    asked_during_outage = backend.calls
    await trio.sleep(REDIS_RETRY_S)
    await limit.check("a")
    assert seen == [(True, 2), (True, 1), (False, 0)]  # still limited, by this process
    assert asked_during_outage == 1  # the first failure, then not again for a while
    assert backend.calls == 2
