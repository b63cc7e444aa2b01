"""Every stream counts toward `concurrent_streams`: a resume (`GET /api/messages/{id}/events`)
takes a slot like a run does, is refused with 429 when the caller's slots are taken, and
gives its slot back when it ends or its client hangs up; in memory and on Redis."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from tests.auth.test_access import make_key
from tests.databases import REDIS_URL, forget_redis_prefix, redis_reachable
from tests.integration.harness import RunningService, running_service

# Admins run the message (their slots are not the point); users are capped at 2 streams.
LIMITS = "[roles.user]\nconcurrent_streams = 2\n[roles.admin]\nconcurrent_streams = 100\n"


@asynccontextmanager
async def service_with(tmp_path: Path, backend: str) -> AsyncIterator[RunningService]:
    path = tmp_path / "limits.toml"
    path.write_text(LIMITS)
    env = {
        "AUTH": "keys",
        "LIMITS_FILE": str(path),
        # The run stays live for the whole test: resumes follow it until they leave.
        "MOCK_FIRST_TOKEN_MS": "60000",
    }
    if backend == "redis":
        await redis_reachable()
        env["REDIS_URL"] = REDIS_URL
    async with running_service(tmp_path, None, env=env) as service:
        yield service


@asynccontextmanager
async def resume(
    service: RunningService, key: str, message_id: str
) -> AsyncIterator[httpx.Response]:
    """A resume stream, open (its headers read) until the block ends: then its client leaves."""
    headers = {"Authorization": f"Bearer {key}"}
    async with service.client.stream(
        "GET", f"/api/messages/{message_id}/events", headers=headers
    ) as response:
        yield response


async def cancel_and_wait(service: RunningService, key: str, message_id: str) -> None:
    """Cancel the caller's running message and wait until it is stored as ended."""
    headers = {"Authorization": f"Bearer {key}"}
    await service.client.post(f"/api/messages/{message_id}/cancel", headers=headers)
    with trio.fail_after(10):
        while (  # noqa: ASYNC110
            await service.client.get(f"/api/messages/{message_id}", headers=headers)
        ).json()["status"] == "running":
            await trio.sleep(0.05)


async def until_admitted(
    opened: Callable[[], AbstractAsyncContextManager[httpx.Response]],
) -> httpx.Headers:
    """Open the stream again and again (its client leaving each time) until one is admitted,
    a slot having come back; that one's headers."""
    with trio.fail_after(10):
        while True:
            async with opened() as again:
                if again.status_code == 200:
                    return again.headers
            await trio.sleep(0.05)


async def resume_status(service: RunningService, key: str, message_id: str) -> int:
    async with resume(service, key, message_id) as response:
        return response.status_code


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_key_capped_at_two_cannot_open_a_third_resume_and_gets_slots_back(
    tmp_path: Path, backend: str
) -> None:
    async with service_with(tmp_path, backend) as service:
        runner, runner_id = await make_key(service, "runner", role="admin")
        user, user_id = await make_key(service, "user")
        async with service.client.stream(
            "POST",
            "/api/process",
            json={"message": "Hi?", "message_id": "m-1", "on_disconnect": "continue"},
            headers={"Authorization": f"Bearer {runner}"},
        ) as started:
            assert started.status_code == 200  # and its client leaves: the run goes on
        async with AsyncExitStack() as streams:
            first = await streams.enter_async_context(resume(service, user, "m-1"))
            second = await streams.enter_async_context(resume(service, user, "m-1"))
            async with resume(service, user, "m-1") as third:
                third_status = third.status_code
                third_retry_after = third.headers.get("Retry-After")
                third_error = None
                if third_status == 429:  # else a stream, open as long as the run
                    await third.aread()
                    third_error = third.json()["error"]
            # Still both held: a fourth is refused too.
            fourth_status = await resume_status(service, user, "m-1")
        # Both clients left: their slots come back (the server notices the hang-up).
        with trio.fail_after(10):
            while True:
                async with AsyncExitStack() as again:
                    statuses = [
                        (await again.enter_async_context(resume(service, user, "m-1"))).status_code
                        for _ in range(2)
                    ]
                if statuses == [200, 200]:
                    break
                await trio.sleep(0.05)
        # The run ends before the service stops (a run cut by the shutdown is another story).
        await cancel_and_wait(service, runner, "m-1")
    if backend == "redis":
        for key_id in (user_id, runner_id):
            await forget_redis_prefix(f"fanout:rl:{{key:{key_id}}}")
    assert (first.status_code, second.status_code) == (200, 200)
    assert third_status == 429
    assert third_error is not None
    assert third_error["code"] == "rate_limited"
    assert third_error["message"].startswith("concurrent_streams reached")
    assert third_retry_after is not None
    assert fourth_status == 429


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_stream_limit_429_tells_the_truth_about_what_is_left(
    tmp_path: Path, backend: str
) -> None:
    """Refused for its stream slot, a request was charged nothing: its `RateLimit` says the
    requests it still has (the next one is admitted once a slot is free) and no free slot."""
    path = tmp_path / "limits.toml"
    path.write_text("[anonymous]\nrequests_per_minute = 60\nburst = 3\nconcurrent_streams = 1\n")
    # An address of this test only (through a trusted proxy): its Redis keys are its own.
    address = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    env = {
        "LIMITS_FILE": str(path),
        "MOCK_FIRST_TOKEN_MS": "60000",
        "TRUSTED_PROXIES": "127.0.0.0/8",
    }
    if backend == "redis":
        await redis_reachable()
        env["REDIS_URL"] = REDIS_URL
    headers = {"X-Forwarded-For": address}
    try:
        async with running_service(tmp_path, None, env=env) as service:

            def post(number: int) -> AbstractAsyncContextManager[httpx.Response]:
                payload = {"message": "Hi?", "message_id": f"m-{number}"}
                return service.client.stream("POST", "/api/process", json=payload, headers=headers)

            async with post(1) as holding:
                held_fields = holding.headers["RateLimit"]
                async with post(2) as refused:
                    refused_status = refused.status_code
                    refused_fields = refused.headers["RateLimit"]
                    policy = refused.headers["RateLimit-Policy"]
            # The holder left: its slot comes back, and the request the 429 promised is there.
            after_fields = (await until_admitted(lambda: post(3)))["RateLimit"]
    finally:
        await forget_redis_prefix(f"fanout:rl:{{ip:{address}}}")
    assert held_fields == '"requests";r=2;t=1, "streams";r=0'
    assert refused_status == 429
    assert refused_fields == '"requests";r=2;t=1, "streams";r=0'
    assert policy == '"requests";q=3;w=3, "streams";q=1'
    assert after_fields.startswith('"requests";r=1;')
    assert after_fields.endswith('"streams";r=0')


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_post_that_joins_a_running_message_holds_a_slot_while_it_streams(
    tmp_path: Path, backend: str
) -> None:
    """Sending a running message again joins it (nothing runs twice), and that join is a
    stream like any other: it holds one of the caller's slots until its client leaves."""
    async with service_with(tmp_path, backend) as service:
        user, user_id = await make_key(service, "user")
        as_user = {"Authorization": f"Bearer {user}"}
        payload = {"message": "Hi?", "message_id": "m-1", "on_disconnect": "continue"}

        def post() -> AbstractAsyncContextManager[httpx.Response]:
            return service.client.stream("POST", "/api/process", json=payload, headers=as_user)

        async with post() as started:
            assert started.status_code == 200  # its run goes on, holding one slot
        async with post() as joined:
            async with post() as refused:
                refused_status = refused.status_code
                await refused.aread()
        # The join's client left: its slot comes back, and a join is admitted again.
        await until_admitted(post)
        await cancel_and_wait(service, user, "m-1")
    if backend == "redis":
        await forget_redis_prefix(f"fanout:rl:{{key:{user_id}}}")
    assert joined.status_code == 200
    assert refused_status == 429


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_an_evaluation_s_progress_stream_holds_a_slot_too(
    tmp_path: Path, backend: str
) -> None:
    """An admin following an evaluation (`GET /admin/evals/{id}/events`) holds a stream slot
    per stream like any caller: a key capped at two is refused a third, and gets its slots
    back when its clients leave. The evaluation runs under another key of the same admin,
    so its own questions take none of the watcher's slots."""
    path = tmp_path / "limits.toml"
    path.write_text("[roles.admin]\nconcurrent_streams = 2\n")
    env = {"AUTH": "keys", "LIMITS_FILE": str(path), "MOCK_FIRST_TOKEN_MS": "60000"}
    if backend == "redis":
        await redis_reachable()
        env["REDIS_URL"] = REDIS_URL
    rows = [{"question": "What is 2 + 2?", "answer": "4"}]
    async with running_service(tmp_path, None, env=env) as service:
        runner, runner_id = await make_key(service, "runner", user="boss", role="admin")
        watcher, watcher_id = await make_key(service, "watcher", user="boss", role="admin")
        as_runner = {"Authorization": f"Bearer {runner}"}
        started = await service.client.post(
            "/admin/evals", json={"rows": rows, "concurrency": 1}, headers=as_runner
        )
        assert started.status_code == 202, started.text
        evaluation_id = started.json()["id"]

        @asynccontextmanager
        async def follow() -> AsyncIterator[httpx.Response]:
            headers = {"Authorization": f"Bearer {watcher}"}
            path = f"/admin/evals/{evaluation_id}/events"
            async with service.client.stream("GET", path, headers=headers) as response:
                yield response

        async with follow() as first, follow() as second, follow() as third:
            statuses = [first.status_code, second.status_code, third.status_code]
            await third.aread()
            third_error = third.json()["error"] if third.status_code == 429 else None
            retry_after = third.headers.get("Retry-After")
        # Both clients left: their slots come back.
        await until_admitted(follow)
        cancelled = await service.client.post(
            f"/admin/evals/{evaluation_id}/cancel", headers=as_runner
        )
    if backend == "redis":
        for key_id in (runner_id, watcher_id):
            await forget_redis_prefix(f"fanout:rl:{{key:{key_id}}}")
    assert statuses == [200, 200, 429]
    assert third_error is not None
    assert third_error["message"].startswith("concurrent_streams reached")
    assert retry_after is not None
    assert cancelled.status_code == 200
