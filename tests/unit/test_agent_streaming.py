"""Agents streaming their answers, in virtual time: the pieces coalesced by time and size,
and what the client is told when another call takes over (a retry, a hedge)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from service.ensemble import Agent, Ensemble, Summarizer
from service.errors import UpstreamUnavailable
from service.events import AgentCompleted, AgentDelta, AgentRestarted, Event
from service.pipeline.coalesce import DeltaCoalescer
from service.pipeline.context import AgentStreaming
from tests.fake_models import Script, ScriptedModel
from tests.unit.recorder import Recorder, run

PACING = AgentStreaming(interval_s=0.05, max_chars=512)


def build(*agents: Agent) -> Ensemble:
    return Ensemble(
        agents=agents, summarizer=Summarizer(name="sum", system_prompt="Combine.", model="m")
    )


def agent(name: str, **extra: Any) -> Agent:
    return Agent(name=name, system_prompt=f"You are {name}.", model="m", **extra)


def of(events: Recorder, agent: str) -> list[Event]:
    return [e for _, e in events.events if getattr(e, "agent", None) == agent]


def deltas(events: Recorder, agent: str) -> list[tuple[float, AgentDelta]]:
    return [(at, e) for at, e in events.events if isinstance(e, AgentDelta) and e.agent == agent]


async def test_pieces_within_the_interval_leave_together_and_add_up_to_the_answer(
    autojump_clock: MockClock,
) -> None:
    # 40 tokens 10 ms apart: 50 ms of pieces per event, about 8 events, never one per token.
    tokens = tuple(f"t{n} " for n in range(40))
    model = ScriptedModel({"a": Script(tokens=tokens, token_delay_s=0.01), "sum": Script()})
    start = trio.current_time()
    events = await run(build(agent("a")), model, agent_streaming=PACING)

    sent = deltas(events, "a")
    assert "".join(e.text for _, e in sent) == "".join(tokens)
    assert 6 <= len(sent) <= 10
    # A piece waits at most the interval: one event every 50-60 ms while tokens come.
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(sent)]
    assert all(0.05 - 1e-9 <= gap <= 0.06 + 1e-9 for gap in gaps[:-1])
    (completed,) = events.of_type(AgentCompleted)
    assert completed.text == "".join(tokens)
    assert events.time_of(AgentCompleted) - start == pytest.approx(0.39, abs=0.011)


async def test_the_agents_deltas_waiting_leave_together_when_one_is_due(
    autojump_clock: MockClock,
) -> None:
    # b starts 20 ms after a: its pieces leave with a's, not 20 ms later in a write of their
    # own, and neither agent sends more than one delta per interval.
    tokens = tuple(f"t{n} " for n in range(30))
    model = ScriptedModel(
        {
            "a": Script(tokens=tokens, token_delay_s=0.01),
            "b": Script(delay_s=0.02, tokens=tokens, token_delay_s=0.01),
            "sum": Script(),
        }
    )
    events = await run(build(agent("a"), agent("b")), model, agent_streaming=PACING)

    # Until a completes (which sends everything waiting, as any other event does).
    a_done = min(at for at, e in events.events if isinstance(e, AgentCompleted))
    times_a = [at for at, _ in deltas(events, "a") if at < a_done]
    times_b = [at for at, _ in deltas(events, "b") if at < a_done]
    assert len(times_b) >= 4
    assert times_b == times_a
    assert all(later - earlier >= 0.05 - 1e-9 for earlier, later in itertools.pairwise(times_a))
    assert "".join(e.text for _, e in deltas(events, "b")) == "".join(tokens)


async def test_a_size_bound_sends_pieces_before_the_interval_is_up(
    autojump_clock: MockClock,
) -> None:
    tokens = ("x" * 100,) * 10
    model = ScriptedModel({"a": Script(tokens=tokens, token_delay_s=0.001), "sum": Script()})
    events = await run(
        build(agent("a")), model, agent_streaming=AgentStreaming(interval_s=1, max_chars=300)
    )
    sizes = [len(e.text) for _, e in deltas(events, "a")]
    assert sizes == [300, 300, 300, 100]


async def test_a_call_that_fails_after_its_text_is_void_and_the_retry_follows_a_restart(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": [
                Script(
                    tokens=("one ", "two ", "three"),
                    token_delay_s=0.1,
                    error=UpstreamUnavailable("gone"),
                    error_after_tokens=2,
                ),
                Script(tokens=("fresh ", "start"), token_delay_s=0.1),
            ],
            "sum": Script(),
        }
    )
    events = await run(build(agent("a", retries=1)), model, agent_streaming=PACING)

    kinds = [type(e).__name__ for e in of(events, "a") if type(e).__name__ != "AgentRetrying"]
    restart = kinds.index("AgentRestarted")
    shown = [e for e in of(events, "a") if isinstance(e, AgentDelta)]
    before = "".join(e.text for e in shown if e.attempt == 1)
    after = "".join(e.text for e in shown if e.attempt == 2)
    assert before == "one two "
    assert after == "fresh start"
    (restarted,) = [e for e in of(events, "a") if isinstance(e, AgentRestarted)]
    assert (restarted.attempt, restarted.error and restarted.error.code) == (
        2,
        "upstream_unavailable",
    )
    assert kinds[restart + 1] == "AgentDelta"
    (completed,) = events.of_type(AgentCompleted)
    assert completed.text == after


async def test_a_hedge_that_wins_over_the_call_being_shown_restarts_with_its_whole_text(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": [
                Script(tokens=("slow ",) * 50, token_delay_s=0.5),
                Script(delay_s=0.1, tokens=("quick ", "answer"), token_delay_s=0.01),
            ],
            "sum": Script(),
        }
    )
    events = await run(build(agent("a", hedge_after_ms=1000)), model, agent_streaming=PACING)

    shown = of(events, "a")
    (restarted,) = [e for e in shown if isinstance(e, AgentRestarted)]
    assert restarted.attempt == 2
    assert restarted.error is None  # nothing failed: the hedge was quicker
    after = shown[shown.index(restarted) + 1 :]
    text = "".join(e.text for e in after if isinstance(e, AgentDelta))
    (completed,) = events.of_type(AgentCompleted)
    assert text == completed.text == "quick answer"
    assert {e.attempt for e in after if isinstance(e, AgentDelta)} == {2}


async def test_without_streaming_no_piece_is_sent_and_the_answer_is_asked_whole(
    autojump_clock: MockClock,
) -> None:
    # The scripted model answers a whole request with `text`, a stream with `tokens`.
    model = ScriptedModel(
        {"a": Script(text="whole", tokens=("one ", "two"), token_delay_s=0.1), "sum": Script()}
    )
    events = await run(build(agent("a")), model)
    assert not [e for _, e in events.events if isinstance(e, AgentDelta)]
    (completed,) = events.of_type(AgentCompleted)
    assert completed.text == "whole"


async def test_a_piece_never_overtakes_one_still_on_its_way_to_the_coalescer() -> None:
    """A piece too big for the waiting delta goes through the channel; the next, small one
    used to join the waiting delta at once, ahead of it ("more some" for "some more")."""
    send, receive = trio.open_memory_channel[Event](10)
    out_send, out_receive = trio.open_memory_channel[Event](10)
    coalescer = DeltaCoalescer(out_send, AgentStreaming(interval_s=60, max_chars=10))

    def piece(text: str) -> AgentDelta:
        return AgentDelta(agent="a", text=text, attempt=1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(coalescer.run, receive)
        assert not coalescer.held(piece("and "))
        await send.send(piece("and "))
        await wait_all_tasks_blocked()  # "and " waits in the coalescer
        # As AgentText sends them: each refused piece into the channel, in order; the
        # coalescer has not taken the first when the second comes.
        for text in ("then some", " more"):
            if not coalescer.held(piece(text)):
                send.send_nowait(piece(text))
        await send.aclose()
    out_send.close()
    texts = [event.text async for event in out_receive if isinstance(event, AgentDelta)]
    assert "".join(texts) == "and then some more"
