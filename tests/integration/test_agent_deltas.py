"""Every agent's answer streams to the client as `agent.delta` events, over real sockets on
both sides: the fake upstream streams each agent's tokens, the service coalesces them."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import SseEvent, iter_events, read_events, running_service
from tests.integration.test_disconnect import assert_closed_soon_after, read_until

ALPHA = tuple(f"a{n} " for n in range(20))
BETA = tuple(f"b{n} " for n in range(10))


def of(events: list[SseEvent], agent: str) -> list[SseEvent]:
    return [e for e in events if e.data["source"] == agent]


async def test_each_agents_answer_streams_in_pieces_that_add_up_to_its_answer(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(tokens=ALPHA, token_delay_s=0.03),
            "fake-b": Behaviour(tokens=BETA, token_delay_s=0.04),
        }
    )
    async with running_service(tmp_path, fake) as service:
        body = {"message": "Why is the sky blue?", "message_id": "m-1"}
        async with service.client.stream("POST", "/api/process", json=body) as response:
            events = await read_events(response)

    for agent, tokens in (("alpha", ALPHA), ("beta", BETA)):
        kinds = [e.event for e in of(events, agent)]
        assert kinds[0] == "agent.started"
        assert kinds[-1] == "agent.completed"
        assert set(kinds[1:-1]) == {"agent.delta"}
        deltas = [e.data for e in of(events, agent) if e.event == "agent.delta"]
        assert "".join(d["message"] for d in deltas) == "".join(tokens)
        assert of(events, agent)[-1].data["message"] == "".join(tokens)
        assert {d["attempt"] for d in deltas} == {1}
        # Coalesced: tokens 30-40 ms apart leave in pieces of 50 ms, not one frame each.
        assert 1 < len(deltas) < len(tokens)
    assert [e.id for e in events] == [str(n) for n in range(1, len(events) + 1)]


async def test_an_answer_that_breaks_midway_is_restarted_and_the_retry_streams_anew(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream(
        {"fake-a": Behaviour(tokens=ALPHA, token_delay_s=0.01, cut_after_tokens=8, fail_first=1)}
    )
    async with running_service(tmp_path, fake) as service:
        body = {"message": "Why?", "message_id": "m-1"}
        async with service.client.stream("POST", "/api/process", json=body) as response:
            events = await read_events(response)

    alpha = of(events, "alpha")
    kinds = [e.event for e in alpha]
    retry, restart = kinds.index("agent.retrying"), kinds.index("agent.restarted")
    # The retry is announced, and its first text comes after the restart.
    assert restart == retry + 1
    before, after = alpha[1:retry], alpha[restart + 1 : -1]
    assert {e.event for e in before} == {"agent.delta"}
    assert {e.data["attempt"] for e in before} == {1}
    assert "".join(e.data["message"] for e in before) == "".join(ALPHA[:8])
    assert alpha[restart].data["attempt"] == 2
    assert alpha[restart].data["discard"] is True
    assert alpha[restart].data["error"]["code"] == "upstream_unavailable"
    assert {e.event for e in after} == {"agent.delta"}
    assert {e.data["attempt"] for e in after} == {2}
    # What the client holds after the restart is exactly the answer.
    assert "".join(e.data["message"] for e in after) == alpha[-1].data["message"]
    assert alpha[-1].data["message"] == "".join(ALPHA)


async def test_a_resume_in_the_middle_of_an_agents_answer_continues_it_once(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream(
        {"fake-a": Behaviour(tokens=ALPHA, token_delay_s=0.05), "fake-b": Behaviour(reply="B.")}
    )
    async with running_service(tmp_path, fake) as service:
        body = {"message": "Why?", "message_id": "m-1", "on_disconnect": "continue"}
        seen: list[SseEvent] = []
        async with service.client.stream("POST", "/api/process", json=body) as response:
            events = iter_events(response)

            def keep(event: SseEvent) -> bool:
                seen.append(event)
                return event.event == "agent.delta" and event.data["source"] == "alpha"

            await read_until(events, keep)
        # The client left after alpha's first piece; it comes back with the last id it has.
        headers = {"Last-Event-ID": seen[-1].id}
        async with service.client.stream(
            "GET", "/api/messages/m-1/events", headers=headers
        ) as response:
            rest = await read_events(response)

    everything = seen + rest
    assert [e.id for e in everything] == [str(n) for n in range(1, len(everything) + 1)]
    alpha = of(everything, "alpha")
    streamed = "".join(e.data["message"] for e in alpha if e.event == "agent.delta")
    assert streamed == alpha[-1].data["message"] == "".join(ALPHA)
    assert rest[-1].event == "done"


async def test_stream_agents_false_sends_each_answer_whole(tmp_path: Path) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(tokens=ALPHA, token_delay_s=0.01)})
    async with running_service(tmp_path, fake) as service:
        body = {"message": "Why?", "message_id": "m-1", "stream_agents": False}
        async with service.client.stream("POST", "/api/process", json=body) as response:
            events = await read_events(response)
    assert not [e for e in events if e.event == "agent.delta"]
    assert [c.body.get("stream") for c in fake.calls_for("fake-a")] in ([False], [None])


async def test_hanging_up_while_agents_stream_closes_every_agent_stream(tmp_path: Path) -> None:
    slow = Behaviour(tokens=("tick ",) * 200, token_delay_s=0.05)
    fake = FakeUpstream({"fake-a": slow, "fake-b": slow})
    async with running_service(tmp_path, fake) as service:
        async with service.client.stream(
            "POST", "/api/process", json={"message": "Go", "message_id": "m-1"}
        ) as response:
            events = iter_events(response)
            streaming: set[str] = set()

            def both_streaming(event: SseEvent) -> bool:
                if event.event == "agent.delta":
                    streaming.add(event.data["source"])
                return streaming == {"alpha", "beta"}

            await read_until(events, both_streaming)
            calls = fake.calls_for("fake-a") + fake.calls_for("fake-b")
            assert [call.outcome for call in calls] == ["open", "open"]
            hung_up_at = trio.current_time()
        await assert_closed_soon_after(calls, hung_up_at)
