"""A process killed with SIGKILL during 50 open streams loses no message: after a restart
every one is `completed` or `interrupted`, none missing and none left `running`; the same on
SQLite and on PostgreSQL, whether the restarted process has the dead one's name or another
instance takes over once the dead one's heartbeat has expired."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.databases import BACKENDS, database_url
from tests.integration.test_main_process import parse_sse
from tests.service_process import served

STREAMS = 50
SLOW_MOCK = {"MOCK_FIRST_TOKEN_MS": "400", "MOCK_TOKEN_MS": "100"}


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


async def open_streams(base_url: str, count: int, opened: trio.Semaphore) -> None:
    """`count` streams, each held open (its first event read) until cancelled."""

    async def one(client: httpx.AsyncClient, number: int) -> None:
        payload = {"message": f"Question {number}?", "message_id": f"m-{number}"}
        async with client.stream("POST", "/api/process", json=payload) as response:
            async for _ in response.aiter_lines():
                opened.release()
                await trio.sleep_forever()

    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        async with trio.open_nursery() as nursery:
            for number in range(count):
                nursery.start_soon(one, client, number)


@pytest.mark.parametrize("restart_as", ["the same instance", "another instance"])
async def test_sigkill_during_open_streams_loses_no_message(
    url: str, tmp_path: Path, restart_as: str
) -> None:
    env = {**SLOW_MOCK, "DATABASE_URL": url, "INSTANCE_ID": "first", "HEARTBEAT_S": "0.2"}
    opened = trio.Semaphore(0)
    async with served(tmp_path, **env) as service, trio.open_nursery() as clients:
        clients.start_soon(open_streams, service.url, STREAMS, opened)
        with trio.fail_after(20):
            for _ in range(STREAMS):
                await opened.acquire()
        service.process.kill()
        await service.process.wait()
        clients.cancel_scope.cancel()

    second = "first" if restart_as == "the same instance" else "second"
    async with served(tmp_path, **{**env, "INSTANCE_ID": second}) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            with trio.fail_after(10):
                while True:
                    statuses = [
                        (await client.get(f"/api/messages/m-{number}")).json().get("status")
                        for number in range(STREAMS)
                    ]
                    if "running" not in statuses:
                        break
                    await trio.sleep(0.2)
            interrupted = [n for n, status in enumerate(statuses) if status == "interrupted"]
            replays = [
                parse_sse((await client.get(f"/api/messages/m-{n}/events")).text)
                for n in interrupted
            ]
            last_id = replays[0][-1].id if replays and replays[0] else "0"
            after_the_end = await client.get(
                f"/api/messages/m-{interrupted[0]}/events", headers={"Last-Event-ID": last_id}
            )
    assert None not in statuses  # none missing
    assert set(statuses) <= {"completed", "interrupted"}
    assert interrupted
    # Its server died before it stored an end, so the replay makes one up: the stream of an
    # interrupted message still ends with exactly one terminal event, `interrupted`.
    for events in replays:
        assert [e.event for e in events].count("error") == 1
        assert events[-1].event == "error"
        assert events[-1].data["error"]["code"] == "interrupted"
        assert events[-1].data["final"] is True
    assert after_the_end.status_code == 200, after_the_end.text
    assert "event:" not in after_the_end.text  # nothing after the end it was given
