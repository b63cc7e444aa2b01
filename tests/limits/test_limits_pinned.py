"""Limits a refactor could loosen without another test noticing (in one process, virtual
time): each case here failed with its rule changed by hand before it was kept."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from service.auth import Principal
from service.limits import Limiter, LimitPolicy, MemoryBackend, RateLimited, load_policy
from service.limits.admission import LimiterUnavailable, OnError
from service.limits.backend import Checked, LimiterError
from service.limits.memory import SWEEP_EVERY

ALICE = Principal(user="alice", tenant="acme", key_id="key_a")
BOB = Principal(user="bob", tenant="acme", key_id="key_b")
CAROL = Principal(user="carol", tenant="acme", key_id="key_c")
DAVE = Principal(user="dave", tenant="acme", key_id="key_d")


def policy(tmp_path: Path, text: str) -> LimitPolicy:
    path = tmp_path / "limits.toml"
    path.write_text(text)
    return load_policy(path)


async def refused(limiter: Limiter, principal: Principal, max_tokens: list[int | None]) -> str:
    """The limit that refuses this request ('' if it was admitted; then it is settled)."""
    try:
        admitted = await limiter.admit(principal, "a", anonymous=False, max_tokens=max_tokens)
    except RateLimited as exc:
        return exc.limit
    await admitted.settle(0)
    return ""


async def test_a_stream_longer_than_its_lease_keeps_its_slot_while_it_runs(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    """The slot is a lease renewed while the run lasts: a stream of four leases' length
    still counts toward concurrent_streams at every moment, and frees it when settled."""
    text = "[default]\nconcurrent_streams = 1\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open", lease_s=3.0)
    stream = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[None])
    seen = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.keep_lease)
        for _ in range(48):  # every quarter of a second for 12 s
            await trio.sleep(0.25)
            seen.append(await refused(limiter, ALICE, [None]))
        nursery.cancel_scope.cancel()
    await stream.settle(None)
    assert set(seen) == {"concurrent_streams"}
    assert await refused(limiter, ALICE, [None]) == ""


async def test_settling_twice_gives_the_unused_tokens_back_once(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    text = "[default]\ntokens_per_minute = 1000\n[tenants.acme]\ntokens_per_day = 2000\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
    run = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[600])
    await run.settle(100)
    await run.settle(100)  # a second settle (a retry, a second consumer) changes nothing
    # 100 of the minute's 1000 are used: 901 is one too many, 900 fits.
    assert await refused(limiter, ALICE, [901]) == "tokens_per_minute"
    # And 100 of the day's 2000 (shared by the tenant): 1900 more fit exactly.
    await limiter.admit(BOB, "b", anonymous=False, max_tokens=[950])
    await limiter.admit(CAROL, "c", anonymous=False, max_tokens=[950])
    assert await refused(limiter, DAVE, [1]) == "tokens_per_day"


async def test_the_memory_sweep_keeps_live_budgets_and_buckets(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    """Every SWEEP_EVERY operations the in-memory store forgets state that has run out; a
    day's spending and a spent burst have not, and still refuse afterwards."""
    text = "[default]\nrequests_per_minute = 1\nburst = 1\n[tenants.acme]\ntokens_per_day = 1000\n"
    backend = MemoryBackend()
    limiter = Limiter(policy(tmp_path, text), backend, on_error="open")
    await (await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[900])).settle(900)
    for number in range(SWEEP_EVERY):
        await backend.take(f"other:{number}", cost=1, interval_s=1.0, burst=1)
    assert await refused(limiter, ALICE, [None]) == "requests_per_minute"
    assert await refused(limiter, BOB, [101]) == "tokens_per_day"
    assert await refused(limiter, CAROL, [100]) == ""


async def test_tokens_used_beyond_the_reservation_are_charged_on_an_idle_bucket(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    """A run reserved 100 tokens and used 600 after the bucket had refilled: the 500 over
    are charged from now, not lost in the time the bucket sat idle."""
    text = "[default]\ntokens_per_minute = 1000\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
    run = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[100])
    await trio.sleep(120)
    await run.settle(600)
    assert await refused(limiter, ALICE, [501]) == "tokens_per_minute"
    assert await refused(limiter, ALICE, [500]) == ""


async def test_a_spent_daily_budget_says_retry_at_the_end_of_the_day(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    text = "[tenants.acme]\ntokens_per_day = 1000\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
    await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[1000])
    with pytest.raises(RateLimited) as refusal:
        await limiter.admit(BOB, "b", anonymous=False, max_tokens=[1])
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    expected = math.ceil((midnight - now).total_seconds())
    assert refusal.value.limit == "tokens_per_day"
    assert refusal.value.status == 429
    assert abs(int(refusal.value.headers["Retry-After"]) - expected) <= 2


async def test_a_lease_not_renewed_frees_its_slot_at_exactly_its_length(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    """A crashed instance's streams stop counting once their lease has run out: held up
    to that instant, free from it on."""
    text = "[default]\nconcurrent_streams = 1\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open", lease_s=3.0)
    admitted_at = trio.current_time()
    await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[None])  # never settled
    await trio.sleep_until(admitted_at + 2.999)
    assert await refused(limiter, ALICE, [None]) == "concurrent_streams"
    await trio.sleep_until(admitted_at + 3.0)
    assert await refused(limiter, ALICE, [None]) == ""


async def test_a_request_without_a_stream_limit_has_no_lease_to_keep(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    text = "[default]\nrequests_per_minute = 60\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
    admission = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[None])
    with trio.fail_after(1):
        await admission.keep_lease()  # returns at once: nothing to renew


async def test_callers_without_a_key_are_limited_per_user_not_together(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    """JWT callers have no key id: each user has its own bucket, as each key has."""
    text = "[default]\nrequests_per_minute = 1\nburst = 1\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
    alice, bob = Principal(user="alice", tenant="acme"), Principal(user="bob", tenant="acme")
    assert await refused(limiter, alice, [None]) == ""
    assert await refused(limiter, alice, [None]) == "requests_per_minute"
    assert await refused(limiter, bob, [None]) == ""
    assert await refused(limiter, ALICE, [None]) == ""  # alice's key: a bucket of its own


async def test_a_stream_that_runs_nothing_gives_back_its_tokens_and_keeps_its_slot(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    """A join or a replay was admitted as a run; once it turns out to run nothing, its
    reserved tokens go back to the minute and to the day, its stream slot stays held, and
    its settlement gives nothing back a second time."""
    text = (
        "[default]\ntokens_per_minute = 1000\nconcurrent_streams = 2\n"
        "[tenants.acme]\ntokens_per_day = 1000\n"
    )
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
    joined = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[800])
    await joined.keep_only_the_slot()
    # The 800 are back, for the minute and for the day: 1000 fit.
    run = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[1000])
    assert await refused(limiter, ALICE, [None]) == "concurrent_streams"  # both held
    await run.settle(1000)
    await joined.settle(None)
    await run.keep_only_the_slot()  # settled already: it gives nothing back
    assert await refused(limiter, ALICE, [1]) == "tokens_per_minute"
    assert await refused(limiter, BOB, [1]) == "tokens_per_day"


async def test_a_resume_takes_a_stream_slot_and_nothing_else(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    text = "[default]\nrequests_per_minute = 1\nburst = 1\nconcurrent_streams = 1\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
    held = await limiter.admit_stream(ALICE, "a", anonymous=False)
    assert held.headers["RateLimit"] == '"streams";r=0'
    assert await refused(limiter, ALICE, [None]) == "concurrent_streams"
    await held.settle(None)
    assert await refused(limiter, ALICE, [None]) == ""  # its request was not counted


async def test_anonymous_callers_spend_no_tenants_daily_budget(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    """Callers without identity get the [anonymous] section only; [default]'s daily budget
    is the signed-in tenants'."""
    text = "[default]\ntokens_per_day = 100\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
    nobody = Principal(user="anonymous")
    await limiter.admit(nobody, "a", anonymous=True, max_tokens=[1000])  # admitted
    with pytest.raises(RateLimited, match="tokens_per_day"):
        await limiter.admit(Principal(user="alice"), "a", anonymous=False, max_tokens=[1000])


class UnreachableBackend(MemoryBackend):
    """A limiter store that cannot be reached (Redis down)."""

    async def check(self, **kw: object) -> Checked:  # type: ignore[override]
        raise LimiterError("connection refused")


@pytest.mark.parametrize("on_error", ["open", "closed"])
async def test_an_unreachable_limiter_admits_or_refuses_as_configured(
    tmp_path: Path, autojump_clock: MockClock, on_error: OnError
) -> None:
    text = "[default]\nrequests_per_minute = 1\nconcurrent_streams = 1\n"
    limiter = Limiter(policy(tmp_path, text), UnreachableBackend(), on_error=on_error)
    if on_error == "closed":
        with pytest.raises(LimiterUnavailable) as refusal:
            await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[None])
        assert refusal.value.status == 503
        return
    admitted = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[None])
    assert admitted.backend is None  # nothing reserved, so nothing to settle
    await admitted.settle(10)


async def test_the_ratelimit_fields_name_the_tokens_limit_only_when_there_is_one(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    both = "[default]\nrequests_per_minute = 60\ntokens_per_minute = 1000\n"
    requests_only = "[default]\nrequests_per_minute = 60\n"
    fields = {}
    for name, text in (("both", both), ("requests only", requests_only)):
        limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
        admission = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[100])
        fields[name] = admission.headers["RateLimit"]
    assert '"tokens";r=900;t=60' in fields["both"]
    assert "tokens" not in fields["requests only"]


async def test_memory_slots_and_day_counters_end_at_exactly_their_ttl(
    autojump_clock: MockClock,
) -> None:
    backend = MemoryBackend()
    started = trio.current_time()
    assert await backend.acquire_slot("streams", "a", limit=1, ttl_s=3.0)
    assert await backend.spend("day", 10, budget=10, ttl_s=3.0)
    await trio.sleep_until(started + 2.999)
    assert not await backend.acquire_slot("streams", "b", limit=1, ttl_s=3.0)
    assert not await backend.spend("day", 1, budget=10, ttl_s=3.0)
    await trio.sleep_until(started + 3.0)
    assert await backend.acquire_slot("streams", "b", limit=1, ttl_s=3.0)
    assert await backend.spend("day", 10, budget=10, ttl_s=3.0)


# Mutants of `make mutation` that no test kills, judged equivalent (no caller can tell):
# - memory.py, the sweep's schedule (`% SWEEP_EVERY == 0` negated or flipped to `!=`, or
#   `0` to `1`): the sweep forgets only state that has run out (`_live` is false for it,
#   and every read treats such state as absent), so sweeping at another moment, even at
#   nearly every operation, changes memory use and speed, never an answer.
# - memory.py `_peek`, `> capacity_s + SLACK_S` to `>=`: equality needs a float sum to
#   land exactly on the slack; the slack exists so that no reading is that close.
