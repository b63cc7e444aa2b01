"""Graceful shutdown in-process: open streams get the grace period, then end with an error."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import host_port, iter_events, running_service

BODY = {"message": "q", "message_id": "m-shutdown"}


async def can_connect(url: str) -> bool:
    try:
        stream = await trio.open_tcp_stream(*host_port(url))
    except OSError:
        return False
    await stream.aclose()
    return True


async def test_a_stream_that_finishes_within_the_grace_period_completes(tmp_path: Path) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(reply="A", first_token_delay_s=0.3),
            "fake-b": Behaviour(reply="B", first_token_delay_s=0.3),
            "fake-summary": Behaviour(tokens=("x",) * 10, token_delay_s=0.02),
        }
    )
    async with running_service(tmp_path, fake, env={"SHUTDOWN_GRACE_S": "5"}) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = iter_events(response)
            first = await anext(events)
            service.shutdown.set()
            rest = [event async for event in events]
        with trio.fail_after(3):
            await service.stopped.wait()

    assert first.event == "agent.started"
    assert rest[-1].event == "done"
    assert not fake.open_calls()


async def test_streams_open_when_the_grace_period_ends_get_shutting_down(tmp_path: Path) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(stall=True), "fake-b": Behaviour(stall=True)})
    grace_s = 0.3
    async with running_service(tmp_path, fake, env={"SHUTDOWN_GRACE_S": str(grace_s)}) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = iter_events(response)
            await anext(events)
            with trio.fail_after(5):
                await fake.wait_for_call("fake-b")
            shutdown_at = trio.current_time()
            service.shutdown.set()
            rest = [event async for event in events]
        with trio.fail_after(3):
            await service.stopped.wait()
        stopped_at = trio.current_time()
        with pytest.raises(OSError, match="all attempts to connect"):
            await trio.open_tcp_stream(*host_port(service.url))

    final = rest[-1]
    assert final.event == "error"
    assert final.data["error"]["code"] == "shutting_down"
    assert final.data["final"] is True
    # Not before the grace period is over; promptly after it (a loaded machine may lag).
    assert final.arrived_at - shutdown_at >= grace_s - 0.01
    assert final.arrived_at - shutdown_at < grace_s + 1
    assert stopped_at - shutdown_at < grace_s + 1
    assert not fake.open_calls()
    assert {call.outcome for call in fake.calls} == {"disconnected"}


async def test_new_streams_are_refused_once_shutdown_starts(tmp_path: Path) -> None:
    fake = FakeUpstream(default=Behaviour(stall=True))
    async with running_service(tmp_path, fake, env={"SHUTDOWN_GRACE_S": "1"}) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = iter_events(response)
            await anext(events)
            service.shutdown.set()
            with trio.fail_after(2):
                while await can_connect(service.url):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            with pytest.raises(OSError, match="all attempts to connect"):
                await trio.open_tcp_stream(*host_port(service.url))
            rest = [event async for event in events]
    assert rest[-1].data["error"]["code"] == "shutting_down"
