"""Two instances on one database and one Redis, as behind a load balancer: a run started on
one is joined and resumed from the other, live, every event once and in order; the same
message id sent to both at once runs once."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

from tests.databases import REDIS_URL, forget_redis_prefix, redis_reachable
from tests.integration.harness import SseEvent, iter_events
from tests.service_process import ServiceProcess, served

SLOW_SUMMARY = {"MOCK_FIRST_TOKEN_MS": "200", "MOCK_TOKEN_MS": "60"}


@asynccontextmanager
async def two(tmp_path: Path) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess]]:
    await redis_reachable()
    env = {
        "REDIS_URL": REDIS_URL,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        **SLOW_SUMMARY,
    }
    try:
        async with (
            served(tmp_path, INSTANCE_ID="one", **env) as one,
            served(tmp_path, INSTANCE_ID="two", **env) as two,
        ):
            yield one, two
    finally:
        await forget_redis_prefix("fanout:events:{default/anonymous/")


async def events_of(url: str, method: str, path: str, **kw: object) -> list[SseEvent]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with client.stream(method, path, **kw) as response:  # type: ignore[arg-type]
            assert response.status_code == 200, await response.aread()
            return [event async for event in iter_events(response)]


async def test_a_run_on_one_instance_resumes_live_on_the_other(tmp_path: Path) -> None:
    message_id = f"m-{secrets.token_hex(3)}"
    payload = {"message": "A long story?", "message_id": message_id, "on_disconnect": "continue"}
    async with two(tmp_path) as (one, other):
        seen: list[SseEvent] = []
        async with httpx.AsyncClient(base_url=one.url, timeout=30) as client:
            async with client.stream("POST", "/api/process", json=payload) as response:
                async for event in iter_events(response):
                    seen.append(event)
                    if event.event == "summary.delta":
                        break  # the connection drops mid-summary
        rest = await events_of(
            other.url,
            "GET",
            f"/api/messages/{message_id}/events",
            headers={"Last-Event-ID": seen[-1].id},
        )
    ids = [int(e.id) for e in seen + rest]
    assert ids == list(range(1, len(ids) + 1))
    assert rest[-1].event == "done"
    deltas = [e for e in rest if e.event == "summary.delta"]
    # Live, not in one piece at the end: the tokens came about MOCK_TOKEN_MS apart.
    assert deltas[-1].arrived_at - deltas[0].arrived_at > 0.5


async def test_the_same_message_sent_to_both_instances_runs_once(tmp_path: Path) -> None:
    message_id = f"m-{secrets.token_hex(3)}"
    payload = {"message": "Once?", "message_id": message_id}
    async with two(tmp_path) as (one, other):
        streams: dict[str, list[SseEvent]] = {}

        async def ask(name: str, url: str) -> None:
            streams[name] = await events_of(url, "POST", "/api/process", json=payload)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "one", one.url)
            nursery.start_soon(ask, "two", other.url)
        async with httpx.AsyncClient(base_url=one.url, timeout=30) as client:
            stored = (await client.get(f"/api/messages/{message_id}")).json()
    one_frames = [(e.id, e.event, e.data) for e in streams["one"]]
    two_frames = [(e.id, e.event, e.data) for e in streams["two"]]
    assert one_frames == two_frames  # one ran it, the other followed it: the same stream
    assert one_frames[-1][1] == "done"
    assert stored["status"] == "completed"
    assert len(stored["agents"]) == 2
