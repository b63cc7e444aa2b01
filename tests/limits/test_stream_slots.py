"""Every stream counts toward `concurrent_streams`: a resume (`GET /api/messages/{id}/events`)
takes a slot like a run does, is refused with 429 when the caller's slots are taken, and
gives its slot back when it ends or its client hangs up; in memory and on Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
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
        as_runner = {"Authorization": f"Bearer {runner}"}
        await service.client.post("/api/messages/m-1/cancel", headers=as_runner)
        with trio.fail_after(10):
            while (  # noqa: ASYNC110
                await service.client.get("/api/messages/m-1", headers=as_runner)
            ).json()["status"] == "running":
                await trio.sleep(0.05)
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
