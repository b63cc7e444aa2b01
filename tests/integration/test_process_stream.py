"""POST /api/process through a real Hypercorn server, with a real fake upstream over HTTP."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.fake_upstream import SECRET_DETAIL_MARKER, Behaviour, FakeUpstream
from tests.integration.harness import SseEvent, iter_events, read_events, running_service

BODY = {"message": "Why is the sky blue?", "message_id": "msg-1", "conversation_id": "conv-1"}
SUMMARY_TOKENS = ("The sky ", "is blue\n", "because\n\nof ", "Rayleigh\r\nscattering", ".")


def types(events: list[SseEvent]) -> list[str]:
    return [event.event for event in events]


async def test_the_full_event_sequence_with_agents_whole_and_summary_tokens_with_newlines(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(reply="Alpha: light scatters.", first_token_delay_s=0.05),
            "fake-b": Behaviour(reply="Beta: short wavelengths.", first_token_delay_s=0.15),
            "fake-summary": Behaviour(tokens=SUMMARY_TOKENS, token_delay_s=0.01),
        }
    )
    async with running_service(tmp_path, fake) as service:
        whole = {**BODY, "stream_agents": False}
        async with service.client.stream("POST", "/api/process", json=whole) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            events = await read_events(response)

    assert types(events) == [
        "agent.started",
        "agent.started",
        "agent.completed",
        "agent.completed",
        "summary.started",
        *["summary.delta"] * len(SUMMARY_TOKENS),
        "done",
    ]
    assert [event.id for event in events] == [str(n) for n in range(1, len(events) + 1)]
    for event in events:
        assert event.data["type"] == event.event
        assert event.data["message_id"] == "msg-1"
        assert event.data["conversation_id"] == "conv-1"
        assert event.data["final"] is (event.event == "done")
    completed = {
        e.data["source"]: e.data["message"] for e in events if e.event == "agent.completed"
    }
    assert completed == {"alpha": "Alpha: light scatters.", "beta": "Beta: short wavelengths."}
    assert [e.data["source"] for e in events if e.event == "agent.completed"] == ["alpha", "beta"]
    summary = "".join(e.data["message"] for e in events if e.event == "summary.delta")
    assert summary == "".join(SUMMARY_TOKENS)
    done = events[-1].data
    assert done["status"] == "Completed"
    assert done["source"] == "combine"
    assert set(done["usage"]) == {"alpha", "beta", "combine"}
    assert done["usage"]["combine"]["completion_tokens"] > 0
    assert done["timings"]["first_token_ms"] >= 150
    assert done["timings"]["total_ms"] >= done["timings"]["first_token_ms"]

    # The upstream saw one call per agent and a streamed summary call built from both answers.
    (summary_call,) = fake.calls_for("fake-summary")
    assert summary_call.stream is True
    prompt = summary_call.messages[-1]["content"]
    assert "Why is the sky blue?" in prompt
    assert '<answer from="alpha">\nAlpha: light scatters.\n</answer>' in prompt
    assert '<answer from="beta">\nBeta: short wavelengths.\n</answer>' in prompt
    assert [c.stream for c in fake.calls_for("fake-a")] == [False]
    assert fake.calls_for("fake-a")[0].headers["authorization"] == "Bearer test-key"
    assert not fake.open_calls()


async def test_a_failing_agent_is_reported_without_leaking_the_providers_text(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(reply="Alpha answers."),
            "fake-b": Behaviour(status=500),
            "fake-summary": Behaviour(reply="Combined."),
        }
    )
    async with running_service(tmp_path, fake) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            raw = b"".join([chunk async for chunk in response.aiter_bytes()])

    assert SECRET_DETAIL_MARKER.encode() not in raw
    text = raw.decode()
    assert "event: agent.failed" in text
    assert '"code":"upstream_unavailable"' in text
    assert '"missing":["beta"]' in text
    assert text.rstrip().split("\n")[-2] == "event: done"
    assert (
        "No answer arrived from: beta" in fake.calls_for("fake-summary")[0].messages[-1]["content"]
    )


async def test_every_agent_failing_ends_with_an_error_event(tmp_path: Path) -> None:
    fake = FakeUpstream(
        {"fake-a": Behaviour(status=401), "fake-b": Behaviour(status=429)},
    )
    async with running_service(tmp_path, fake) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = await read_events(response)

    failed = {
        e.data["source"]: e.data["error"]["code"] for e in events if e.event == "agent.failed"
    }
    assert failed == {"alpha": "upstream_auth_failed", "beta": "upstream_rate_limited"}
    assert events[-1].event == "error"
    assert events[-1].data["error"]["code"] == "no_agent_succeeded"
    assert events[-1].data["final"] is True
    assert not fake.calls_for("fake-summary")


async def test_an_agent_over_its_timeout_is_cut_and_its_connection_closed(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(reply="quick"),
            "fake-b": Behaviour(stall=True),
            "fake-summary": Behaviour(reply="Combined."),
        }
    )
    async with running_service(tmp_path, fake, agent_extra={"timeout_s": "0.5"}) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = await read_events(response)

    (failed,) = [e for e in events if e.event == "agent.failed"]
    assert failed.data["source"] == "beta"
    assert failed.data["error"]["code"] == "upstream_timeout"
    assert events[-1].event == "done"
    (stalled,) = fake.calls_for("fake-b")
    assert stalled.outcome == "disconnected"


async def test_idle_streams_carry_keepalive_comments(tmp_path: Path) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(reply="slow answer", first_token_delay_s=0.7),
            "fake-b": Behaviour(reply="slow answer", first_token_delay_s=0.7),
            "fake-summary": Behaviour(reply="ok"),
        }
    )
    async with running_service(tmp_path, fake, env={"SSE_KEEPALIVE_S": "0.2"}) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            lines = [line async for line in response.aiter_lines()]

    assert lines.count(": keep-alive") >= 2
    assert "event: done" in lines


async def test_the_mock_llm_streams_a_summary_built_from_both_answers(tmp_path: Path) -> None:
    env = {"MOCK_FIRST_TOKEN_MS": "5", "MOCK_TOKEN_MS": "1"}
    async with running_service(tmp_path, None, env=env) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = await read_events(response)

    answers = {e.data["source"]: e.data["message"] for e in events if e.event == "agent.completed"}
    assert set(answers) == {"llm-1", "llm-2"}
    summary = "".join(e.data["message"] for e in events if e.event == "summary.delta")
    for name, answer in answers.items():
        assert f"From {name}: {answer.split('. ')[0]}." in summary
    assert events[-1].event == "done"


async def test_many_concurrent_streams_each_get_their_own_complete_answer(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream(
        {"fake-summary": Behaviour(token_delay_s=0.005)},
        default=Behaviour(first_token_delay_s=0.05),
    )
    results: dict[str, list[SseEvent]] = {}

    async def one(index: int) -> None:
        body = {"message": f"question {index}", "message_id": f"m-{index}"}
        async with service.client.stream("POST", "/api/process", json=body) as response:
            results[f"m-{index}"] = [e async for e in iter_events(response)]

    async with running_service(tmp_path, fake) as service, trio.open_nursery() as nursery:
        for index in range(20):
            nursery.start_soon(one, index)

    assert len(results) == 20
    for message_id, events in results.items():
        assert events[-1].event == "done"
        assert {e.data["message_id"] for e in events} == {message_id}
    assert len(fake.calls) == 60
    assert not fake.open_calls()


async def test_text_that_is_not_valid_unicode_cannot_cut_the_stream(tmp_path: Path) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(reply="half a pair: \ud800"),
            "fake-b": Behaviour(reply="fine"),
            "fake-summary": Behaviour(tokens=("sum ", "\udfff")),
        }
    )
    async with running_service(tmp_path, fake) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = await read_events(response)

    assert events[-1].event == "done"
    answers = {e.data["source"]: e.data["message"] for e in events if e.event == "agent.completed"}
    assert answers["alpha"] == "half a pair: ?"
