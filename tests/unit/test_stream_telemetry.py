"""What a stream's life and events tell the metrics."""

from __future__ import annotations

import trio
from opentelemetry import trace
from prometheus_client import REGISTRY
from trio.testing import MockClock

from service.api.writers.event_stream import EventStreamBody
from service.pipeline import AgentStarted, Done, Event, Timings
from service.telemetry.stream import StreamTelemetry
from tests.unit.streams import driven_body

DONE = Done(summarizer="s", usage={}, timings=Timings(agents_ms={}, first_token_ms=1, total_ms=2))


def in_flight() -> float:
    value = REGISTRY.get_sample_value("fanout_streams_in_flight")
    assert value is not None
    return value


def body(produce, telemetry: StreamTelemetry) -> EventStreamBody:  # type: ignore[no-untyped-def]
    return driven_body(produce, telemetry=telemetry)


async def test_a_stream_is_in_flight_from_entering_its_body_until_it_ends(
    autojump_clock: MockClock,
) -> None:
    before = in_flight()
    seen: list[float] = []

    async def produce(events: trio.MemorySendChannel[Event]) -> None:
        async with events:
            await events.send(AgentStarted(agent="a"))
            await trio.sleep(1)
            seen.append(in_flight())
            await events.send(DONE)

    telemetry = StreamTelemetry(trace.INVALID_SPAN, primary_models={})
    async with body(produce, telemetry) as stream:
        async for _chunk in stream:
            seen.append(in_flight())
    assert seen == [before + 1] * 3
    assert in_flight() == before
    assert telemetry.outcome == "done"


async def test_a_stream_left_early_is_no_longer_in_flight(autojump_clock: MockClock) -> None:
    before = in_flight()
    seen: list[float] = []

    async def forever(events: trio.MemorySendChannel[Event]) -> None:
        async with events:
            await events.send(AgentStarted(agent="a"))
            await trio.sleep_forever()

    telemetry = StreamTelemetry(trace.INVALID_SPAN, primary_models={})
    async with body(forever, telemetry) as stream:
        async for _chunk in stream:
            seen.append(in_flight())
            break
    assert seen == [before + 1]
    assert in_flight() == before
    assert telemetry.outcome == "disconnected"


def first_token_count(agent: str) -> float:
    return (
        REGISTRY.get_sample_value("fanout_agent_first_token_seconds_count", {"agent": agent}) or 0.0
    )


async def test_each_agents_first_piece_of_text_is_timed_once(autojump_clock: MockClock) -> None:
    from service.events import AgentDelta

    before = first_token_count("tele-a"), first_token_count("tele-b")
    telemetry = StreamTelemetry(trace.INVALID_SPAN, primary_models={})
    await trio.sleep(0.5)
    for agent, text in (("tele-a", "one"), ("tele-a", "two"), ("tele-b", "three")):
        telemetry.observe(AgentDelta(agent=agent, text=text))
    after = first_token_count("tele-a"), first_token_count("tele-b")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    total = REGISTRY.get_sample_value("fanout_agent_first_token_seconds_sum", {"agent": "tele-b"})
    assert total is not None
    assert total >= 0.5
