"""The response body that drives its run: keep-alives, shutdown, crashes, one terminal."""

from __future__ import annotations

import json

import pytest
import trio
from trio.testing import MockClock

from service.api.writers.event_stream import EventStreamBody
from service.api.writers.sse import KEEPALIVE
from service.lifecycle import Lifecycle
from service.pipeline import AgentStarted, Done, Event, Timings
from tests.unit.streams import driven_body

DONE = Done(summarizer="s", usage={}, timings=Timings(agents_ms={}, first_token_ms=1, total_ms=2))


def body(produce, lifecycle: Lifecycle | None = None) -> EventStreamBody:  # type: ignore[no-untyped-def]
    return driven_body(produce, lifecycle)


async def read_all(stream: EventStreamBody) -> list[tuple[float, bytes]]:
    start = trio.current_time()
    chunks = []
    async with stream as chunks_in:
        async for chunk in chunks_in:
            chunks.append((trio.current_time() - start, chunk))
    return chunks


def event_type(chunk: bytes) -> str:
    return chunk.decode().split("\n")[1].removeprefix("event: ")


def payload(chunk: bytes) -> dict[str, object]:
    data = json.loads(chunk.decode().split("\n")[2].removeprefix("data: "))
    assert isinstance(data, dict)
    return data


async def test_idle_streams_get_a_keepalive_comment_every_interval(
    autojump_clock: MockClock,
) -> None:
    async def slow(events: trio.MemorySendChannel[Event]) -> None:
        async with events:
            await events.send(AgentStarted(agent="a"))
            await trio.sleep(40)
            await events.send(DONE)

    chunks = await read_all(body(slow))
    assert [c for _, c in chunks[1:3]] == [KEEPALIVE, KEEPALIVE]
    assert [round(t) for t, _ in chunks] == [0, 15, 30, 40]
    assert event_type(chunks[-1][1]) == "done"


async def test_events_already_waiting_leave_in_one_write(autojump_clock: MockClock) -> None:
    async def bursty(events: trio.MemorySendChannel[Event]) -> None:
        async with events:
            for name in ("a", "b", "c"):
                events.send_nowait(AgentStarted(agent=name))
            await trio.sleep(1)
            await events.send(DONE)

    chunks = await read_all(body(bursty))
    assert len(chunks) == 2
    burst = chunks[0][1].decode().split("\n\n")
    assert [part.split("\n")[1] for part in burst if part] == ["event: agent.started"] * 3
    assert event_type(chunks[1][1]) == "done"


async def test_nothing_is_sent_after_the_terminal_event(autojump_clock: MockClock) -> None:
    async def chatty(events: trio.MemorySendChannel[Event]) -> None:
        async with events:
            await events.send(DONE)
            await events.send(AgentStarted(agent="late"))

    chunks = await read_all(body(chatty))
    assert [event_type(c) for _, c in chunks] == ["done"]


async def test_a_crashing_producer_still_ends_the_stream_with_an_error(
    autojump_clock: MockClock,
) -> None:
    async def broken(events: trio.MemorySendChannel[Event]) -> None:
        async with events:
            await events.send(AgentStarted(agent="a"))
            raise RuntimeError("secret internals")

    chunks = await read_all(body(broken))
    assert [event_type(c) for _, c in chunks] == ["agent.started", "error"]
    final = payload(chunks[-1][1])
    assert final["error"] == {"code": "internal_error", "message": "internal error"}
    assert final["final"] is True


async def test_the_end_of_the_grace_period_ends_open_streams_with_shutting_down(
    autojump_clock: MockClock,
) -> None:
    lifecycle = Lifecycle()
    cancelled_at: list[float] = []

    async def forever(events: trio.MemorySendChannel[Event]) -> None:
        async with events:
            await events.send(AgentStarted(agent="a"))
            try:
                await trio.sleep_forever()
            finally:
                cancelled_at.append(trio.current_time())

    async def end_grace_later() -> None:
        await trio.sleep(5)
        assert lifecycle.open_streams == 1
        lifecycle.end_grace()

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(end_grace_later)
        chunks = await read_all(body(forever, lifecycle))
    assert [event_type(c) for _, c in chunks] == ["agent.started", "error"]
    error = payload(chunks[-1][1])["error"]
    assert isinstance(error, dict)
    assert error["code"] == "shutting_down"
    assert cancelled_at == [pytest.approx(start + 5)]
    assert lifecycle.open_streams == 0


async def test_leaving_the_body_early_cancels_the_producer(autojump_clock: MockClock) -> None:
    cancelled: list[bool] = []

    async def forever(events: trio.MemorySendChannel[Event]) -> None:
        async with events:
            await events.send(AgentStarted(agent="a"))
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                cancelled.append(True)
                raise

    async with body(forever) as stream:
        async for _chunk in stream:
            break
    assert cancelled == [True]
