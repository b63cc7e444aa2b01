"""The limits a caller gets, and admission and settlement in one process (virtual time)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from service.auth import Principal
from service.limits import Limiter, LimitPolicy, MemoryBackend, RateLimited, load_policy

POLICY = """
[default]
requests_per_minute = 60
burst = 2
concurrent_streams = 1
tokens_per_minute = 10000
[anonymous]
requests_per_minute = 6
burst = 1
[roles.admin]
requests_per_minute = 600
burst = 20
[tenants.acme]
concurrent_streams = 3
tokens_per_day = 5000
[keys.key_narrow]
concurrent_streams = 1
"""
ALICE = Principal(user="alice", tenant="acme", key_id="key_a")


def policy(tmp_path: Path, text: str = POLICY) -> LimitPolicy:
    path = tmp_path / "limits.toml"
    path.write_text(text)
    return load_policy(path)


def test_the_most_specific_section_wins_field_by_field(tmp_path: Path) -> None:
    limits = policy(tmp_path)
    admin = limits.for_caller(Principal(user="r", tenant="acme", role="admin"), anonymous=False)
    assert (admin.requests_per_minute, admin.burst, admin.concurrent_streams) == (600, 20, 3)
    narrow = limits.for_caller(
        Principal(user="u", tenant="acme", key_id="key_narrow"), anonymous=False
    )
    assert narrow.concurrent_streams == 1
    other = limits.for_caller(Principal(user="u", tenant="globex"), anonymous=False)
    assert (other.requests_per_minute, other.concurrent_streams) == (60, 1)
    anonymous = limits.for_caller(Principal(user="anonymous"), anonymous=True)
    assert (anonymous.requests_per_minute, anonymous.concurrent_streams) == (6, None)
    assert limits.tenant_budget("acme") == 5000
    assert limits.tenant_budget("globex") is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[default]\nrequests_per_hour = 5\n", "default.requests_per_hour: not a limit"),
        ("[default]\nburst = -1\n", "default.burst: must be a positive number"),
        ("[default]\nburst = 1.5\n", "default.burst: must be a positive number"),
        ("[tenant.acme]\nburst = 1\n", "unknown section(s) tenant"),
        ("[default\n", "limits.toml"),
    ],
)
def test_a_bad_limits_file_is_refused_naming_the_field(
    tmp_path: Path, text: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        policy(tmp_path, text)


async def test_a_burst_then_an_exact_retry_after(tmp_path: Path, autojump_clock: MockClock) -> None:
    limiter = Limiter(policy(tmp_path), MemoryBackend(), on_error="open")
    first = await limiter.admit(ALICE, "1.2.3.4", anonymous=False, max_tokens=[100, 100, 100])
    await first.settle(300)
    second = await limiter.admit(ALICE, "1.2.3.4", anonymous=False, max_tokens=[100])
    await second.settle(100)
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(ALICE, "1.2.3.4", anonymous=False, max_tokens=[100])
    assert refused.value.limit == "requests_per_minute"
    assert refused.value.retry_after == 1  # one request a second, rounded up
    assert refused.value.headers["Retry-After"] == "1"
    assert refused.value.headers["RateLimit-Policy"].startswith('"requests";q=2;w=2')
    assert refused.value.status == 429
    await trio.sleep(1)
    admitted = await limiter.admit(ALICE, "1.2.3.4", anonymous=False, max_tokens=[100])
    assert admitted.headers["RateLimit"].startswith('"requests";r=0')


async def test_streams_are_slots_freed_when_settled(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    text = "[default]\nconcurrent_streams = 2\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
    held = [await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[None]) for _ in range(2)]
    with pytest.raises(RateLimited, match="concurrent_streams"):
        await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[None])
    await held[0].settle(None)
    again = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[None])
    assert again.slot is not None


async def test_tokens_are_reserved_fan_out_aware_and_unused_ones_come_back(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    text = "[default]\ntokens_per_minute = 1000\nestimate_tokens_per_call = 200\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
    # Two agents with max_tokens 300, a summarizer without: 300 + 300 + 200.
    run = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[300, 300, None])
    assert run.reserved_tokens == 800
    with pytest.raises(RateLimited, match="tokens_per_minute"):
        await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[300])
    await run.settle(150)  # a cut run: 650 of the 800 come back
    second = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[300, 300, 250])
    assert second.reserved_tokens == 850


async def test_a_tenants_daily_budget_is_shared_and_settled(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    text = "[tenants.acme]\ntokens_per_day = 1000\n"
    limiter = Limiter(policy(tmp_path, text), MemoryBackend(), on_error="open")
    bob = Principal(user="bob", tenant="acme")
    alices = await limiter.admit(ALICE, "a", anonymous=False, max_tokens=[600])
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(bob, "b", anonymous=False, max_tokens=[600])
    assert refused.value.limit == "tokens_per_day"
    assert 1 <= refused.value.retry_after <= 86_400
    await alices.settle(100)  # used 100 of its 600
    await limiter.admit(bob, "b", anonymous=False, max_tokens=[600])


async def test_anonymous_callers_are_limited_per_address(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    limiter = Limiter(policy(tmp_path), MemoryBackend(), on_error="open")
    nobody = Principal(user="anonymous", role="admin")
    await limiter.admit(nobody, "10.0.0.1", anonymous=True, max_tokens=[None])
    with pytest.raises(RateLimited):
        await limiter.admit(nobody, "10.0.0.1", anonymous=True, max_tokens=[None])
    await limiter.admit(nobody, "10.0.0.2", anonymous=True, max_tokens=[None])


def test_the_forwarded_header_counts_only_from_trusted_proxies() -> None:
    from service.client_address import client_address, parse_networks

    trusted = parse_networks("10.0.0.0/8")
    xff = partial(client_address, header="X-Forwarded-For", trusted=trusted)
    spoof = "6.6.6.6, 203.0.113.9"
    assert xff("198.51.100.7", chain=spoof) == "198.51.100.7"
    assert xff("10.1.2.3", chain=spoof) == "203.0.113.9"
    hops = "6.6.6.6, 203.0.113.9, 10.9.9.9"  # the rightmost untrusted hop, past our proxies
    assert xff("10.1.2.3", chain=hops) == "203.0.113.9"
    assert xff("10.1.2.3", chain="junk") == "10.1.2.3"
    assert xff("10.1.2.3", chain=None) == "10.1.2.3"
    forwarded = 'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"'
    assert client_address("10.1.2.3", chain=forwarded, header="Forwarded", trusted=trusted) == (
        "2001:db8::1"
    )
    assert client_address("10.1.2.3", chain=spoof, header="X-Forwarded-For", trusted=()) == (
        "10.1.2.3"
    )


def test_the_shipped_limits_file_loads() -> None:
    shipped = load_policy(Path(__file__).resolve().parents[2] / "deploy" / "limits.toml")
    assert shipped.for_caller(Principal(user="u"), anonymous=False).requests_per_minute == 60
    assert shipped.for_caller(Principal(user="a"), anonymous=True).burst == 3
