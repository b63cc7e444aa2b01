"""A client that hangs up at any moment cancels every upstream call made for it at once.

Real sockets on both sides: the fake upstream records when it saw each connection close.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from tests.fake_upstream import Behaviour, CallRecord, FakeUpstream
from tests.integration.harness import SseEvent, host_port, iter_events, running_service

BODY = {"message": "Tell me a long story", "message_id": "msg-hangup"}
# The bound: the upstream sees its connection closed within 100 ms of the hang-up.
UPSTREAM_CLOSE_BOUND_S = 0.1


async def read_until(events: AsyncIterator[SseEvent], done: Callable[[SseEvent], bool]) -> None:
    """Read events until `done` says stop, keeping the stream open.

    (Breaking out of `async for` over the generator would let it be finalized, which closes
    the response: a hang-up at a moment the test did not choose.)
    """
    with trio.fail_after(5):
        while not done(await anext(events)):
            pass


async def wait_until_ended(records: list[CallRecord]) -> None:
    with trio.fail_after(2):
        for record in records:
            await record.ended.wait()


async def assert_closed_soon_after(records: list[CallRecord], hung_up_at: float) -> None:
    """Every call in `records` was closed by the hang-up at `hung_up_at`, within the bound."""
    await wait_until_ended(records)
    for call in records:
        assert call.outcome == "disconnected"
        assert call.ended_at is not None
        assert call.ended_at - hung_up_at < UPSTREAM_CLOSE_BOUND_S


async def test_hanging_up_while_agents_run_closes_every_agent_connection(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(stall=True), "fake-b": Behaviour(stall=True)})
    async with running_service(tmp_path, fake) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = iter_events(response)
            await read_until(events, lambda event: event.data["source"] == "beta")
            with trio.fail_after(5):
                calls = [await fake.wait_for_call("fake-a"), await fake.wait_for_call("fake-b")]
            assert [call.outcome for call in calls] == ["open", "open"]
            hung_up_at = trio.current_time()
        await assert_closed_soon_after(calls, hung_up_at)
        assert not fake.calls_for("fake-summary")
        with trio.fail_after(1):
            while service.resources.lifecycle.open_streams:  # noqa: ASYNC110
                await trio.sleep(0.01)


async def test_hanging_up_while_the_summary_streams_closes_the_summarizer_connection(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(reply="A."),
            "fake-b": Behaviour(reply="B."),
            "fake-summary": Behaviour(tokens=("tick ",) * 500, token_delay_s=0.05),
        }
    )
    async with running_service(tmp_path, fake) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = iter_events(response)
            for _ in range(3):
                await read_until(events, lambda event: event.event == "summary.delta")
            hung_up_at = trio.current_time()
        (summary_call,) = fake.calls_for("fake-summary")
        await wait_until_ended([summary_call])

    assert summary_call.outcome == "disconnected"
    assert summary_call.ended_at is not None
    assert summary_call.ended_at - hung_up_at < UPSTREAM_CLOSE_BOUND_S
    assert [c.outcome for c in fake.calls_for("fake-a")] == ["completed"]


async def test_hanging_up_mid_upload_starts_nothing_and_the_server_stays_up(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream()
    async with running_service(tmp_path, fake) as service:
        stream = await trio.open_tcp_stream(*host_port(service.url))
        await stream.send_all(
            b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 500\r\n\r\n" + b'{"message": "hal'
        )
        await stream.aclose()
        await trio.sleep(0.2)
        health = await service.client.get("/healthz")

    assert health.status_code == 200
    assert fake.calls == []


async def test_many_clients_hanging_up_together_leave_no_upstream_call_open(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream(default=Behaviour(stall=True))
    clients = 25

    async def hang_up_after_start(index: int, everyone_started: trio.Semaphore) -> None:
        body = {"message": f"q{index}", "message_id": f"m{index}"}
        async with service.client.stream("POST", "/api/process", json=body) as response:
            events = iter_events(response)
            await read_until(events, lambda event: True)
            await everyone_started.acquire()

    async with running_service(tmp_path, fake) as service:
        gate = trio.Semaphore(0)
        async with trio.open_nursery() as nursery:
            for index in range(clients):
                nursery.start_soon(hang_up_after_start, index, gate)
            with trio.fail_after(5):
                while len(fake.calls) < clients * 2:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            hung_up_at = trio.current_time()
            for _ in range(clients):
                gate.release()
        await wait_until_ended(fake.calls)

    assert not fake.open_calls()
    slowest = max((call.ended_at or 0) - hung_up_at for call in fake.calls)
    assert slowest < 1.0, f"slowest upstream close took {slowest:.3f} s"
