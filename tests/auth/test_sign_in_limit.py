"""The refused sign-ins limit's 429 is like every other 429 (`Retry-After`, the `RateLimit`
fields, the envelope), and with REDIS_URL its count is shared by every instance."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from tests.databases import REDIS_URL, forget_redis_prefix, redis_reachable
from tests.integration.harness import running_service

GUESS = {"Authorization": "Bearer fo_not-a-key"}


async def guess(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.get("/api/conversations", headers={**GUESS, **headers})


async def test_the_sign_in_429_says_when_to_retry_and_carries_the_ratelimit_fields(
    tmp_path: Path,
) -> None:
    env = {"AUTH": "keys", "AUTH_FAILURE_BURST": "4", "AUTH_FAILURE_EVERY_S": "60"}
    async with running_service(tmp_path, None, env=env) as service:
        refused = [await guess(service.client) for _ in range(4)]
        limited = await guess(service.client)
    assert [r.status_code for r in refused] == [401] * 4
    assert limited.status_code == 429
    retry_after = int(limited.headers["Retry-After"])
    assert 55 <= retry_after <= 60  # the next failure's room comes back a minute after the first
    assert limited.headers["RateLimit-Policy"] == '"sign_ins";q=4;w=240'
    assert limited.headers["RateLimit"] == f'"sign_ins";r=0;t={retry_after}'
    assert limited.json()["error"] == {
        "code": "rate_limited",
        "message": f"too many failed sign-ins from this address; retry in {retry_after} s",
        "field": None,
    }


async def test_two_instances_on_one_redis_share_the_count(tmp_path: Path) -> None:
    await redis_reachable()
    # A client address of this test only (through a trusted proxy), so its key is too.
    address = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    env = {
        "AUTH": "keys",
        "AUTH_FAILURE_BURST": "4",
        "AUTH_FAILURE_EVERY_S": "60",
        "REDIS_URL": REDIS_URL,
        "TRUSTED_PROXIES": "127.0.0.0/8",
    }
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    try:
        async with (
            running_service(tmp_path / "one", None, env=env) as one,
            running_service(tmp_path / "two", None, env=env) as two,
        ):
            statuses = []
            for client in (one.client, two.client, one.client, two.client):
                statuses.append((await guess(client, **{"X-Forwarded-For": address})).status_code)
            on_one = await guess(one.client, **{"X-Forwarded-For": address})
            on_two = await guess(two.client, **{"X-Forwarded-For": address})
    finally:
        await forget_redis_prefix(f"fanout:rl:{{ip:{address}}}")
    assert statuses == [401] * 4
    assert (on_one.status_code, on_two.status_code) == (429, 429)
    assert on_two.headers["RateLimit"].startswith('"sign_ins";r=0;')
