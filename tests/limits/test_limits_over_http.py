"""Limits as a client meets them: 429 with the envelope, an exact Retry-After, the RateLimit
fields on every response of the limited route, `done` saying what was charged; and, with
Redis, limits that hold across two service processes and survive Redis going away."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from tests.databases import REDIS_DATABASE, REDIS_URL, forget_redis_prefix, redis_reachable
from tests.fake_upstream import Behaviour
from tests.integration.harness import RunningService, read_events, running_service
from tests.integration.test_main_process import parse_sse
from tests.integration.test_upstream_faults import ensemble, upstream
from tests.proxy import TcpProxy
from tests.service_process import served

BODY = {"message": "Hi?"}


def body(number: int) -> dict[str, str]:
    return {**BODY, "message_id": f"m-{number}-{secrets.token_hex(3)}"}


@asynccontextmanager
async def limited(tmp_path: Path, limits: str, **env: str) -> AsyncIterator[RunningService]:
    path = tmp_path / "limits.toml"
    path.write_text(limits)
    quick = {"MOCK_FIRST_TOKEN_MS": "0", "MOCK_TOKEN_MS": "0"}
    settings = {"LIMITS_FILE": str(path), **quick, **env}
    async with running_service(tmp_path, None, env=settings) as service:
        yield service


async def test_a_refusal_is_a_429_with_an_exact_retry_after_and_the_fields(
    tmp_path: Path,
) -> None:
    async with limited(tmp_path, "[anonymous]\nrequests_per_minute = 30\nburst = 2\n") as s:
        first = await s.client.post("/api/process", json=body(1))
        second = await s.client.post("/api/process", json=body(2))
        refused = await s.client.post("/api/process", json=body(3))
        unlimited = await s.client.get("/api/conversations")
    assert [first.status_code, second.status_code, refused.status_code] == [200, 200, 429]
    assert first.headers["RateLimit-Policy"] == '"requests";q=2;w=4'
    assert first.headers["RateLimit"] == '"requests";r=1;t=2'
    assert refused.json()["error"] == {
        "code": "rate_limited",
        "message": "requests_per_minute reached; retry in 2 s",
        "field": None,
    }
    assert refused.headers["Retry-After"] == "2"
    assert refused.headers["RateLimit"] == '"requests";r=0;t=2'
    assert "RateLimit" not in unlimited.headers  # only the limited route


async def test_done_says_what_the_request_was_charged(tmp_path: Path) -> None:
    async with limited(tmp_path, "[anonymous]\ntokens_per_minute = 100000\n") as s:
        async with s.client.stream("POST", "/api/process", json=body(1)) as response:
            done = (await read_events(response))[-1]
    used = sum(u["prompt_tokens"] + u["completion_tokens"] for u in done.data["usage"].values())
    assert done.data["charged"] == {"requests": 1, "tokens": used}


async def test_the_charge_counts_the_calls_paid_for_and_not_used_as_the_ledger_does(
    tmp_path: Path,
) -> None:
    """A straggler cut after the grace was paid for: the tokens settled (and `charged`) are
    the usage ledger's, the straggler's reckoned tokens included."""
    fake = upstream(fake_straggle=Behaviour(tokens=("Slow ", "and ", "late."), token_delay_s=30))
    agents = {"ok": {"model": "fake-ok"}, "straggler": {"model": "fake-straggle"}}
    limits = tmp_path / "limits.toml"
    limits.write_text("[anonymous]\ntokens_per_minute = 100000\n")
    text = ensemble(agents, min_agents=1, straggler_grace_ms=300)
    env = {"LIMITS_FILE": str(limits)}
    async with running_service(tmp_path, fake, ensemble=text, env=env) as service:
        async with service.client.stream("POST", "/api/process", json=body(1)) as response:
            done = (await read_events(response))[-1]
        ledger = (await service.client.get("/api/usage")).json()["usage"]

    assert done.data["agents"]["cut"] == 1
    answered = sum(u["prompt_tokens"] + u["completion_tokens"] for u in done.data["usage"].values())
    in_ledger = sum(line["prompt_tokens"] + line["completion_tokens"] for line in ledger)
    straggler = next(line for line in ledger if line["model"] == "fake-straggle")
    assert straggler["prompt_tokens"] > 0
    assert done.data["charged"] == {"requests": 1, "tokens": in_ledger}
    assert in_ledger == answered + straggler["prompt_tokens"] + straggler["completion_tokens"]


async def test_a_spoofed_forwarded_for_is_ignored_and_a_trusted_one_counts(
    tmp_path: Path,
) -> None:
    limits = "[anonymous]\nrequests_per_minute = 1\nburst = 1\n"
    async with limited(tmp_path, limits) as s:
        ok = await s.client.post("/api/process", json=body(1))
        spoofed = await s.client.post(
            "/api/process", json=body(2), headers={"X-Forwarded-For": "203.0.113.77"}
        )
    async with limited(tmp_path, limits, TRUSTED_PROXIES="127.0.0.0/8") as s:
        one = await s.client.post(
            "/api/process", json=body(3), headers={"X-Forwarded-For": "203.0.113.1"}
        )
        other = await s.client.post(
            "/api/process", json=body(4), headers={"X-Forwarded-For": "203.0.113.2"}
        )
        again = await s.client.post(
            "/api/process", json=body(5), headers={"X-Forwarded-For": "203.0.113.1"}
        )
    assert (ok.status_code, spoofed.status_code) == (200, 429)
    assert (one.status_code, other.status_code, again.status_code) == (200, 200, 429)


# --- two processes, one Redis -------------------------------------------------------------


@asynccontextmanager
async def two_instances(tmp_path: Path, limits: str, **env: str) -> AsyncIterator[tuple[str, str]]:
    await redis_reachable()
    path = tmp_path / "limits.toml"
    path.write_text(limits)
    settings = {
        "LIMITS_FILE": str(path),
        "REDIS_URL": REDIS_URL,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        # Exactness, not the outage policy: on a busy machine a Redis answer can take longer
        # than the default 0.25 s, and the default policy then admits the request.
        "RATE_LIMIT_TIMEOUT_S": "5",
        **env,
    }
    async with (
        served(tmp_path, INSTANCE_ID="one", **settings) as one,
        served(tmp_path, INSTANCE_ID="two", **settings) as two,
    ):
        yield one.url, two.url


async def post(url: str, payload: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.post("/api/process", json=payload)


async def status_on(client: httpx.AsyncClient, payload: dict[str, str]) -> int:
    """The status a request gets; an admitted stream is left at once (a hang-up)."""
    async with client.stream("POST", "/api/process", json=payload) as response:
        return response.status_code


async def status_of(url: str, payload: dict[str, str]) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await status_on(client, payload)


async def test_a_burst_across_two_instances_admits_exactly_the_limit(tmp_path: Path) -> None:
    limits = "[anonymous]\nrequests_per_minute = 1\nburst = 10\n"
    async with two_instances(tmp_path, limits) as (one, two):
        statuses: list[int] = []
        retry_after: list[str] = []

        async def send(number: int) -> None:
            response = await post(one if number % 2 else two, body(number))
            statuses.append(response.status_code)
            if response.status_code == 429:
                retry_after.append(response.headers["Retry-After"])

        async with trio.open_nursery() as nursery:
            for number in range(50):
                nursery.start_soon(send, number)
    await forget_redis_prefix("fanout:rl:{ip:127.0.0.1}")
    assert statuses.count(200) == 10
    assert statuses.count(429) == 40
    # The next unit comes one minute after the burst began (to the second, rounded up).
    assert all(55 <= int(value) <= 60 for value in retry_after)


async def test_the_stream_limit_holds_across_instances_and_frees_on_hang_up(
    tmp_path: Path,
) -> None:
    limits = "[anonymous]\nconcurrent_streams = 1\n"
    slow = {"MOCK_FIRST_TOKEN_MS": "3000"}
    async with two_instances(tmp_path, limits, **slow) as (one, two):
        async with httpx.AsyncClient(base_url=one, timeout=30) as client:
            async with client.stream("POST", "/api/process", json=body(1)) as holding:
                assert holding.status_code == 200
                refused = await post(two, body(2))
            # The first stream's client hung up: its slot is free, on the other instance too.
            with trio.fail_after(5):
                while await status_of(two, body(3)) == 429:  # noqa: ASYNC110
                    await trio.sleep(0.1)
    await forget_redis_prefix("fanout:rl:{ip:127.0.0.1}")
    assert refused.status_code == 429
    assert refused.json()["error"]["message"].startswith("concurrent_streams reached")


async def test_a_killed_instances_slots_free_themselves_when_the_lease_expires(
    tmp_path: Path,
) -> None:
    limits = "[anonymous]\nconcurrent_streams = 1\n"
    env = {"MOCK_FIRST_TOKEN_MS": "60000", "STREAM_LEASE_S": "2"}
    async with two_instances(tmp_path, limits, **env) as (one, two):
        async with served(
            tmp_path,
            INSTANCE_ID="three",
            LIMITS_FILE=str(tmp_path / "limits.toml"),
            REDIS_URL=REDIS_URL,
            **env,
        ) as doomed:
            client = httpx.AsyncClient(base_url=doomed.url, timeout=30)
            stream = client.stream("POST", "/api/process", json=body(1))
            response = await stream.__aenter__()
            assert response.status_code == 200
            assert await status_of(one, body(2)) == 429
            doomed.process.kill()
            await doomed.process.wait()
            killed_at = trio.current_time()
        # Asked often, on one connection: the bound is on the lease, not on the polling.
        async with httpx.AsyncClient(base_url=two, timeout=30) as poller:
            with trio.fail_after(10):
                while await status_on(poller, body(3)) == 429:  # noqa: ASYNC110
                    await trio.sleep(0.05)
        freed_after = trio.current_time() - killed_at
        await client.aclose()
    await forget_redis_prefix("fanout:rl:{ip:127.0.0.1}")
    assert freed_after <= 2.5


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_redis_going_away_is_the_configured_policy_never_a_500(
    tmp_path: Path, policy: str
) -> None:
    await redis_reachable()
    proxy = TcpProxy("127.0.0.1", 6379)
    path = tmp_path / "limits.toml"
    path.write_text("[anonymous]\nrequests_per_minute = 600\nburst = 100\n")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        env = {
            "LIMITS_FILE": str(path),
            "REDIS_URL": f"redis://127.0.0.1:{port}/{REDIS_DATABASE}",
            "RATE_LIMIT_ON_ERROR": policy,
            "RATE_LIMIT_TIMEOUT_S": "0.3",
        }
        async with running_service(tmp_path, None, env=env) as service:
            before = await service.client.post("/api/process", json=body(1))
            proxy.cut()
            started = trio.current_time()
            during = await service.client.post("/api/process", json=body(2))
            took = trio.current_time() - started
            await nursery.start(proxy.serve)
            with trio.fail_after(10):
                while (  # noqa: ASYNC110
                    after := await service.client.post("/api/process", json=body(3))
                ).status_code != 200:
                    await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    await forget_redis_prefix("fanout:rl:{ip:127.0.0.1}")
    assert before.status_code == 200
    if policy == "open":
        assert during.status_code == 200
        assert parse_sse(during.text)[-1].event == "done"
    else:
        assert during.status_code == 503
        assert during.json()["error"]["code"] == "rate_limiter_unavailable"
        assert during.headers["Retry-After"] == "1"
    assert took < 5  # never a hung request: the timeout, plus the stream itself
    assert after.status_code == 200
