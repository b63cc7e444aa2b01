"""The fan-out in virtual time: concurrency, timeouts, deadlines, failures, cancellation.

Every test takes `autojump_clock`, so sleeps cost nothing and timings are exact.
"""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import trio
from trio.testing import MockClock

from service.ensemble import Agent, Ensemble, Summarizer
from service.errors import UpstreamRateLimited, UpstreamRejected, UpstreamUnavailable
from service.pipeline import (
    AgentCompleted,
    AgentFailed,
    AgentStarted,
    Done,
    Event,
    Failed,
    PipelineRequest,
    RunContext,
    SummaryDelta,
    SummaryStarted,
    run_pipeline,
)
from tests.fake_models import Script, ScriptedModel
from tests.unit.recorder import REQUEST, Recorder, run


def ensemble(*agents: tuple[str, float], summarizer_timeout_s: float | None = None) -> Ensemble:
    return Ensemble(
        agents=tuple(
            Agent(name=name, system_prompt=f"You are {name}.", model="m", timeout_s=timeout)
            for name, timeout in agents
        ),
        summarizer=Summarizer(
            name="sum", system_prompt="Combine.", model="m", timeout_s=summarizer_timeout_s
        ),
    )


async def test_agents_run_concurrently_so_the_summary_waits_only_for_the_slowest(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(delay_s=1, text="A says hi."),
            "b": Script(delay_s=3, text="B says hi."),
            "c": Script(delay_s=2, text="C says hi."),
            "sum": Script(delay_s=0.5, tokens=("one ", "two"), token_delay_s=0.25),
        }
    )
    start = trio.current_time()
    events = await run(ensemble(("a", 10), ("b", 10), ("c", 10)), model)

    assert [e.agent for e in events.of_type(AgentStarted)] == ["a", "b", "c"]
    assert [e.agent for e in events.of_type(AgentCompleted)] == ["a", "c", "b"]
    assert events.time_of(SummaryStarted) - start == pytest.approx(3.0)
    assert [e.text for e in events.of_type(SummaryDelta)] == ["one ", "two"]
    done = events.terminal
    assert isinstance(done, Done)
    assert done.timings.total_ms == pytest.approx(3750)
    assert done.timings.first_token_ms == pytest.approx(3500)
    assert done.timings.agents_ms == {"a": 1000, "b": 3000, "c": 2000}
    assert set(done.usage) == {"a", "b", "c", "sum"}
    for caller in "abc":
        assert model.call(caller).started_at == start


async def test_summarizer_prompt_labels_every_answer_and_the_question(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(text="Rayleigh scattering."),
            "b": Script(text="Blue light bends more."),
            "sum": Script(),
        }
    )
    await run(ensemble(("a", 10), ("b", 10)), model)

    prompt = model.call("sum").request.messages[-1].content
    assert "Why is the sky blue?" in prompt
    assert '<answer from="a">\nRayleigh scattering.\n</answer>' in prompt
    assert '<answer from="b">\nBlue light bends more.\n</answer>' in prompt
    assert "No answer arrived" not in prompt
    assert model.call("sum").request.messages[0].content == "Combine."


async def test_an_agent_over_its_timeout_is_cut_and_the_rest_are_summarized(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel({"fast": Script(delay_s=1), "slow": Script(delay_s=50), "sum": Script()})
    start = trio.current_time()
    events = await run(ensemble(("fast", 10), ("slow", 4)), model)

    (failed,) = events.of_type(AgentFailed)
    assert failed.agent == "slow"
    assert failed.error.code == "upstream_timeout"
    assert events.time_of(AgentFailed) - start == pytest.approx(4.0)
    assert model.call("slow").outcome == "cancelled"
    assert model.call("slow").ended_at == pytest.approx(start + 4.0)
    (started,) = events.of_type(SummaryStarted)
    assert started.agents == ("fast",)
    assert started.missing == ("slow",)
    assert "No answer arrived from: slow" in model.call("sum").request.messages[-1].content
    assert isinstance(events.terminal, Done)


async def test_partial_failure_reports_the_code_and_keeps_going(autojump_clock: MockClock) -> None:
    model = ScriptedModel(
        {
            "ok": Script(delay_s=2),
            "limited": Script(delay_s=1, error=UpstreamRateLimited()),
            "sum": Script(),
        }
    )
    events = await run(ensemble(("ok", 10), ("limited", 10)), model)

    (failed,) = events.of_type(AgentFailed)
    assert (failed.agent, failed.error.code) == ("limited", "upstream_rate_limited")
    assert failed.error.message == UpstreamRateLimited.default_message
    assert model.call("ok").outcome == "completed"
    assert isinstance(events.terminal, Done)


async def test_every_agent_failing_ends_with_an_error_and_no_summary_call(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {"a": Script(error=UpstreamUnavailable()), "b": Script(delay_s=9), "sum": Script()}
    )
    events = await run(ensemble(("a", 10), ("b", 2)), model)

    assert len(events.of_type(AgentFailed)) == 2
    assert not events.of_type(SummaryStarted)
    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert terminal.error.code == "no_agent_succeeded"
    assert terminal.agents is not None
    assert terminal.agents.as_dict() == {"succeeded": 0, "failed": 2, "cut": 0}
    # `a` is retryable and retried twice (the default); nothing reaches the summarizer.
    assert Counter(c.caller for c in model.calls) == {"a": 3, "b": 1}


async def test_an_empty_agent_answer_counts_as_a_failure(autojump_clock: MockClock) -> None:
    model = ScriptedModel({"a": Script(text="  \n"), "b": Script(text="real"), "sum": Script()})
    events = await run(ensemble(("a", 10), ("b", 10)), model)

    (failed,) = events.of_type(AgentFailed)
    assert (failed.agent, failed.error.code) == ("a", "upstream_bad_response")


async def test_request_deadline_cancels_every_agent_at_that_instant(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel({"a": Script(delay_s=30), "b": Script(delay_s=40), "sum": Script()})
    start = trio.current_time()
    events = await run(ensemble(("a", 60), ("b", 60)), model, request_timeout_s=5)

    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert terminal.error.code == "deadline_exceeded"
    assert events.events[-1][0] - start == pytest.approx(5.0)
    for caller in "ab":
        assert model.call(caller).outcome == "cancelled"
        assert model.call(caller).ended_at == pytest.approx(start + 5.0)


async def test_request_deadline_also_bounds_the_summary_stream(autojump_clock: MockClock) -> None:
    model = ScriptedModel(
        {"a": Script(delay_s=1), "sum": Script(tokens=("x",) * 100, token_delay_s=1)}
    )
    start = trio.current_time()
    events = await run(ensemble(("a", 60)), model, request_timeout_s=10)

    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert terminal.error.code == "deadline_exceeded"
    assert model.call("sum").outcome == "cancelled"
    assert model.call("sum").ended_at == pytest.approx(start + 10.0)
    # Tokens at t = 1, 2, ... 9; the one due at t = 10 loses to the deadline.
    assert len(events.of_type(SummaryDelta)) == 9


async def test_summarizer_failing_mid_stream_ends_with_its_error_code(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(),
            "sum": Script(
                tokens=("x", "y", "z"), error=UpstreamUnavailable(), error_after_tokens=2
            ),
        }
    )
    events = await run(ensemble(("a", 60)), model)

    assert [e.text for e in events.of_type(SummaryDelta)] == ["x", "y"]
    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert (terminal.source, terminal.error.code) == ("sum", "upstream_unavailable")
    # Retryable, but text already reached the client: never sent again.
    assert len(model.calls_of("sum")) == 1


async def test_summarizer_timeout_is_enforced_when_configured(autojump_clock: MockClock) -> None:
    model = ScriptedModel({"a": Script(), "sum": Script(delay_s=100)})
    events = await run(ensemble(("a", 60), summarizer_timeout_s=3), model)

    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert (terminal.source, terminal.error.code) == ("sum", "upstream_timeout")


@pytest.mark.parametrize(
    ("hang_up_at", "phase"),
    [(0.5, "agents"), (2.5, "agents"), (3.6, "summary")],
)
async def test_cancelling_the_run_cancels_every_call_in_flight_at_that_instant(
    hang_up_at: float, phase: str, autojump_clock: MockClock
) -> None:
    model = ScriptedModel(
        {
            "a": Script(delay_s=2),
            "b": Script(delay_s=3),
            "sum": Script(tokens=("t",) * 50, token_delay_s=0.1),
        }
    )
    send, receive = trio.open_memory_channel[Event](100)
    recorder = Recorder()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.drain, receive)
        with trio.move_on_after(hang_up_at):
            run_context = RunContext(REQUEST, ensemble(("a", 9), ("b", 9)), model, 100)
            await run_pipeline(run_context, send)

    cancelled = [c for c in model.calls if c.outcome == "cancelled"]
    assert cancelled, "something must have been in flight"
    for call in cancelled:
        assert call.ended_at == pytest.approx(start + hang_up_at)
    assert not [c for c in model.calls if c.outcome == "open"]
    if phase == "agents":
        assert {c.caller for c in model.calls} == {"a", "b"}
    else:
        assert model.call("sum").outcome == "cancelled"
    assert not [e for _, e in recorder.events if isinstance(e, Done | Failed)]


async def test_a_crashing_model_adapter_fails_only_its_agent(autojump_clock: MockClock) -> None:
    class Broken(ScriptedModel):
        async def complete(self, request):  # type: ignore[no-untyped-def]
            if request.caller == "bad":
                raise RuntimeError("bug in an adapter")
            return await super().complete(request)

    model = Broken({"good": Script(), "sum": Script()})
    events = await run(ensemble(("good", 9), ("bad", 9)), model)

    (failed,) = events.of_type(AgentFailed)
    assert (failed.agent, failed.error.code) == ("bad", "internal_error")
    assert "bug in an adapter" not in failed.error.message
    assert isinstance(events.terminal, Done)


async def test_a_deadline_error_still_reports_the_usage_of_finished_calls(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel({"a": Script(delay_s=1), "b": Script(delay_s=50), "sum": Script()})
    events = await run(ensemble(("a", 60), ("b", 60)), model, request_timeout_s=5)

    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert terminal.error.code == "deadline_exceeded"
    assert set(terminal.usage) == {"a"}


async def test_a_summary_template_failing_at_request_time_fails_the_summary_only(
    autojump_clock: MockClock,
) -> None:
    # Checked at load, but a path the checks missed (here: an answer that is not there).
    summarizer = Summarizer.model_construct(
        name="sum", system_prompt="Combine.", prompt="{{ answers[3].text }}", model="m"
    )
    the_ensemble = Ensemble(
        agents=(Agent(name="a", system_prompt="You are a.", model="m", timeout_s=9),),
        summarizer=summarizer,
    )
    model = ScriptedModel({"a": Script(), "sum": Script()})
    events = await run(the_ensemble, model)

    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert (terminal.source, terminal.error.code) == ("sum", "internal_error")
    assert "answers" not in terminal.error.message
    assert set(terminal.usage) == {"a"}
    assert not model.calls_of("sum")


async def test_the_conversation_id_is_in_every_log_line_of_the_run(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.pipeline")
    model = ScriptedModel(
        {
            "a": Script(),
            "b": Script(error=UpstreamRejected()),
            "sum": Script(error=UpstreamRejected()),
        }
    )
    request = PipelineRequest(message="Why?", message_id="m-7", conversation_id="c-7")
    await run(ensemble(("a", 9), ("b", 9)), model, request=request)

    run_lines = [record for record in caplog.records if hasattr(record, "message_id")]
    # The agent's failed attempt and failure, the summarizer's attempt and failure.
    assert len(run_lines) >= 4
    assert {getattr(record, "agent", None) for record in run_lines} == {"b", "sum"}
    for record in run_lines:
        assert (record.message_id, record.conversation_id) == ("m-7", "c-7")  # type: ignore[attr-defined]
