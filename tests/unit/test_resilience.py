"""Misbehaving upstreams in virtual time: retries, fallbacks, hedging, quorum and restarts.

Every test takes `autojump_clock`, and the backoff jitter always picks the top of its range,
so every instant below is exact.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from service.ensemble import Agent, Ensemble, Summarizer
from service.errors import (
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from service.pipeline import (
    AgentCompleted,
    AgentFailed,
    Done,
    Failed,
    SummaryDelta,
    SummaryRestarted,
    SummaryStarted,
)
from tests.fake_models import Script, ScriptedModel
from tests.unit.recorder import run


def agent(name: str, timeout_s: float = 60, **extra: Any) -> Agent:
    return Agent(
        name=name, system_prompt=f"You are {name}.", model="m", timeout_s=timeout_s, **extra
    )


def build(*agents: Agent, summarizer: dict[str, Any] | None = None, **extra: Any) -> Ensemble:
    return Ensemble(
        agents=agents,
        summarizer=Summarizer(
            name="sum", system_prompt="Combine.", model="m", **(summarizer or {})
        ),
        **extra,
    )


def starts(model: ScriptedModel, caller: str, start: float) -> list[tuple[str, float]]:
    """(model, start offset) of every call `caller` made, in order."""
    return [(c.request.model, c.started_at - start) for c in model.calls_of(caller)]


# --- retries ---------------------------------------------------------------------------


async def test_a_retryable_failure_is_retried_with_exponential_backoff(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": [
                Script(delay_s=1, error=UpstreamUnavailable()),
                Script(delay_s=1, error=UpstreamUnavailable()),
                Script(delay_s=1, text="third time"),
            ],
            "sum": Script(),
        }
    )
    start = trio.current_time()
    events = await run(build(agent("a")), model)

    # Waits of 0.25 s, then 0.5 s (the top of each jittered range) between 1 s attempts.
    assert starts(model, "a", start) == [("m", 0), ("m", 1.25), ("m", 2.75)]
    (completed,) = events.of_type(AgentCompleted)
    assert (completed.text, completed.attempts, completed.model) == ("third time", 3, "m")
    assert isinstance(events.terminal, Done)


async def test_a_rate_limit_waits_exactly_as_long_as_retry_after_says(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": [Script(delay_s=0.5, error=UpstreamRateLimited(retry_after_s=3)), Script()],
            "sum": Script(),
        }
    )
    start = trio.current_time()
    events = await run(build(agent("a")), model)

    assert starts(model, "a", start) == [("m", 0), ("m", 3.5)]
    assert events.of_type(AgentCompleted)[0].attempts == 2


@pytest.mark.parametrize("error", [UpstreamRejected(), UpstreamAuthFailed(), UpstreamBadResponse()])
async def test_client_errors_are_never_retried(error: Exception, autojump_clock: MockClock) -> None:
    model = ScriptedModel({"a": Script(error=error), "b": Script(), "sum": Script()})
    events = await run(build(agent("a"), agent("b")), model)

    assert len(model.calls_of("a")) == 1
    (failed,) = events.of_type(AgentFailed)
    assert (failed.agent, failed.attempts) == ("a", 1)


async def test_no_retry_when_the_wait_would_outlast_the_agents_deadline(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(delay_s=1, error=UpstreamRateLimited(retry_after_s=30)),
            "b": Script(),
            "sum": Script(),
        }
    )
    start = trio.current_time()
    events = await run(build(agent("a", timeout_s=10), agent("b")), model)

    # Gives up at once with the provider's own code instead of idling into a timeout.
    assert len(model.calls_of("a")) == 1
    (failed,) = events.of_type(AgentFailed)
    assert failed.error.code == "upstream_rate_limited"
    assert events.events[[e for _, e in events.events].index(failed)][0] - start == 1


async def test_retries_stop_at_the_configured_count(autojump_clock: MockClock) -> None:
    model = ScriptedModel(
        {"a": Script(error=UpstreamUnavailable()), "b": Script(), "sum": Script()}
    )
    events = await run(build(agent("a", retries=4), agent("b")), model)

    assert len(model.calls_of("a")) == 5
    assert events.of_type(AgentFailed)[0].attempts == 5


# --- fallbacks -------------------------------------------------------------------------


async def test_fallback_models_are_tried_in_order_after_the_primary_gives_up(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(error=UpstreamRejected()),
            "a@first-backup": Script(delay_s=1, error=UpstreamUnavailable()),
            "a@second-backup": Script(delay_s=1, text="from the second backup"),
            "sum": Script(),
        }
    )
    start = trio.current_time()
    the_agent = agent("a", retries=1, fallback_models=("first-backup", "second-backup"))
    events = await run(build(the_agent), model)

    assert starts(model, "a", start) == [
        ("m", 0),
        ("first-backup", 0),
        ("first-backup", 1.25),
        ("second-backup", 2.25),
    ]
    (completed,) = events.of_type(AgentCompleted)
    assert (completed.model, completed.attempts) == ("second-backup", 4)
    done = events.terminal
    assert isinstance(done, Done)
    assert done.models == {"a": "second-backup", "sum": "m"}


async def test_the_last_fallbacks_error_is_reported_when_all_fail(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(error=UpstreamRejected()),
            "a@backup": Script(error=UpstreamAuthFailed()),
            "b": Script(),
            "sum": Script(),
        }
    )
    events = await run(build(agent("a", fallback_models=("backup",)), agent("b")), model)

    (failed,) = events.of_type(AgentFailed)
    assert (failed.agent, failed.error.code, failed.attempts) == ("a", "upstream_auth_failed", 2)


# --- hedging ---------------------------------------------------------------------------


async def test_a_hedge_to_the_fallback_wins_and_the_slow_primary_is_cancelled_at_once(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(delay_s=10, text="slow primary"),
            "a@quick": Script(delay_s=1, text="quick hedge"),
            "sum": Script(),
        }
    )
    start = trio.current_time()
    the_agent = agent("a", hedge_after_ms=2000, fallback_models=("quick",))
    events = await run(build(the_agent), model)

    assert starts(model, "a", start) == [("m", 0), ("quick", 2)]
    primary, hedge = model.calls_of("a")
    assert (hedge.outcome, hedge.ended_at) == ("completed", start + 3)
    assert (primary.outcome, primary.ended_at) == ("cancelled", start + 3)
    (completed,) = events.of_type(AgentCompleted)
    assert (completed.text, completed.model, completed.attempts) == ("quick hedge", "quick", 2)


async def test_without_a_fallback_the_hedge_repeats_the_same_model(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {"a": [Script(delay_s=10, text="first"), Script(delay_s=1, text="second")], "sum": Script()}
    )
    start = trio.current_time()
    events = await run(build(agent("a", hedge_after_ms=500)), model)

    assert starts(model, "a", start) == [("m", 0), ("m", 0.5)]
    assert events.of_type(AgentCompleted)[0].text == "second"
    assert [c.outcome for c in model.calls_of("a")] == ["cancelled", "completed"]
    assert model.calls_of("a")[0].ended_at == start + 1.5


async def test_an_answer_before_the_hedge_time_sends_no_second_request(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel({"a": Script(delay_s=1), "sum": Script()})
    await run(build(agent("a", hedge_after_ms=1500)), model)
    assert len(model.calls_of("a")) == 1


async def test_the_primary_failing_first_leaves_the_hedge_to_answer_alone(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(delay_s=5, error=UpstreamRejected()),
            "a@backup": Script(delay_s=4, text="hedge"),
            "sum": Script(),
        }
    )
    start = trio.current_time()
    the_agent = agent("a", hedge_after_ms=2000, fallback_models=("backup",))
    events = await run(build(the_agent), model)

    # The hedge took the fallback at 2 s; the primary, failing at 5 s, finds nothing
    # untried and leaves it be rather than asking the same model twice.
    assert starts(model, "a", start) == [("m", 0), ("backup", 2)]
    (completed,) = events.of_type(AgentCompleted)
    assert (completed.text, completed.attempts) == ("hedge", 2)
    assert events.time_of(AgentCompleted) - start == 6


async def test_a_hedge_after_the_primary_moved_on_asks_the_next_untried_model(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(delay_s=0.5, error=UpstreamRejected()),
            "a@b1": Script(delay_s=10, text="b1"),
            "a@b2": Script(delay_s=1, text="b2"),
            "sum": Script(),
        }
    )
    start = trio.current_time()
    the_agent = agent("a", hedge_after_ms=2000, fallback_models=("b1", "b2"))
    events = await run(build(the_agent), model)

    assert starts(model, "a", start) == [("m", 0), ("b1", 0.5), ("b2", 2)]
    assert events.of_type(AgentCompleted)[0].model == "b2"
    assert model.calls_of("a")[1].outcome == "cancelled"


async def test_a_hedged_agent_whose_every_request_failed_reports_the_last_upstream_error(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(delay_s=3, error=UpstreamRejected()),
            "a@backup": Script(delay_s=1, error=UpstreamAuthFailed()),
            "b": Script(),
            "sum": Script(),
        }
    )
    start = trio.current_time()
    the_agent = agent("a", hedge_after_ms=1000, fallback_models=("backup",))
    events = await run(build(the_agent, agent("b")), model)

    # The hedge's fallback failed at 2 s, the primary last, at 3 s: its code is the reason.
    assert starts(model, "a", start) == [("m", 0), ("backup", 1)]
    (failed,) = events.of_type(AgentFailed)
    assert (failed.agent, failed.error.code, failed.attempts) == ("a", "upstream_rejected", 2)
    assert events.time_of(AgentFailed) - start == 3


async def test_a_primary_that_gives_up_before_the_hedge_time_is_reported_at_once(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {"a": Script(delay_s=1, error=UpstreamUnavailable()), "b": Script(), "sum": Script()}
    )
    start = trio.current_time()
    events = await run(build(agent("a", hedge_after_ms=10_000), agent("b")), model)

    # Attempts at 0, 1.25 and 2.75 s, each failing after 1 s: nothing is left to hedge with,
    # so the agent's failure does not wait for the hedge time.
    assert starts(model, "a", start) == [("m", 0), ("m", 1.25), ("m", 2.75)]
    (failed,) = events.of_type(AgentFailed)
    assert (failed.agent, failed.error.code, failed.attempts) == ("a", "upstream_unavailable", 3)
    assert events.time_of(AgentFailed) - start == 3.75
    assert events.time_of(SummaryStarted) - start == 3.75


# --- quorum and stragglers ---------------------------------------------------------------


async def test_straggler_grace_cuts_the_slow_agent_once_the_quorum_answered(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(delay_s=1),
            "b": Script(delay_s=2),
            "slow": Script(delay_s=30),
            "sum": Script(),
        }
    )
    start = trio.current_time()
    ensemble = build(agent("a"), agent("b"), agent("slow"), min_agents=2, straggler_grace_ms=500)
    events = await run(ensemble, model)

    assert events.time_of(SummaryStarted) - start == 2.5
    assert (model.call("slow").outcome, model.call("slow").ended_at) == ("cancelled", start + 2.5)
    (cut,) = events.of_type(AgentFailed)
    assert (cut.agent, cut.error.code, cut.attempts) == ("slow", "agent_cut", 1)
    (started,) = events.of_type(SummaryStarted)
    assert (started.agents, started.missing) == (("a", "b"), ("slow",))
    assert "No answer arrived from: slow" in model.call("sum").request.messages[-1].content
    done = events.terminal
    assert isinstance(done, Done)
    assert done.agents.as_dict() == {"succeeded": 2, "failed": 0, "cut": 1}


async def test_a_straggler_answering_within_the_grace_is_kept(autojump_clock: MockClock) -> None:
    model = ScriptedModel({"a": Script(delay_s=1), "b": Script(delay_s=1.4), "sum": Script()})
    start = trio.current_time()
    events = await run(build(agent("a"), agent("b"), straggler_grace_ms=500), model)

    assert events.time_of(SummaryStarted) - start == pytest.approx(1.4)
    assert [e.agent for e in events.of_type(AgentCompleted)] == ["a", "b"]
    done = events.terminal
    assert isinstance(done, Done)
    assert done.agents.as_dict() == {"succeeded": 2, "failed": 0, "cut": 0}


async def test_without_grace_the_summary_waits_for_every_agent_to_finish(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel({"a": Script(delay_s=1), "b": Script(delay_s=8), "sum": Script()})
    start = trio.current_time()
    events = await run(build(agent("a"), agent("b"), min_agents=1), model)
    assert events.time_of(SummaryStarted) - start == 8


async def test_a_failure_does_not_start_the_grace_only_answers_do(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "bad": Script(delay_s=1, error=UpstreamRejected()),
            "a": Script(delay_s=3),
            "b": Script(delay_s=5),
            "sum": Script(),
        }
    )
    start = trio.current_time()
    ensemble = build(agent("bad"), agent("a"), agent("b"), straggler_grace_ms=1000)
    events = await run(ensemble, model)

    assert events.time_of(SummaryStarted) - start == 4
    done = events.terminal
    assert isinstance(done, Done)
    assert done.agents.as_dict() == {"succeeded": 1, "failed": 1, "cut": 1}


async def test_too_few_answers_for_the_quorum_is_an_error_without_a_summary(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {"a": Script(delay_s=1), "b": Script(delay_s=2, error=UpstreamRejected()), "sum": Script()}
    )
    events = await run(build(agent("a"), agent("b"), min_agents=2), model)

    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert terminal.error.code == "quorum_not_met"
    assert terminal.error.message == "only 1 of the 2 agents needed produced an answer"
    assert terminal.agents is not None
    assert terminal.agents.as_dict() == {"succeeded": 1, "failed": 1, "cut": 0}
    assert not model.calls_of("sum")


async def test_once_the_quorum_is_out_of_reach_the_rest_are_cut_at_once(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(delay_s=1, error=UpstreamRejected()),
            "b": Script(delay_s=20),
            "c": Script(delay_s=30),
            "sum": Script(),
        }
    )
    start = trio.current_time()
    events = await run(build(agent("a"), agent("b"), agent("c"), min_agents=3), model)

    assert events.events[-1][0] - start == 1
    assert [(e.agent, e.error.code) for e in events.of_type(AgentFailed)] == [
        ("a", "upstream_rejected"),
        ("b", "agent_cut"),
        ("c", "agent_cut"),
    ]
    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert terminal.error.code == "quorum_not_met"
    for caller in "bc":
        assert model.call(caller).outcome == "cancelled"


# --- the summarizer ----------------------------------------------------------------------


async def test_a_summary_failing_before_its_first_token_is_retried_silently(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(),
            "sum": [Script(delay_s=1, error=UpstreamUnavailable()), Script(tokens=("ok",))],
        }
    )
    events = await run(build(agent("a")), model)

    assert len(model.calls_of("sum")) == 2
    assert not events.of_type(SummaryRestarted)
    assert [e.text for e in events.of_type(SummaryDelta)] == ["ok"]
    assert isinstance(events.terminal, Done)


async def test_a_summary_breaking_mid_stream_restarts_once_on_the_fallback_and_says_so(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(),
            "sum": Script(
                tokens=("half ", "a ", "story"), error=UpstreamUnavailable(), error_after_tokens=2
            ),
            "sum@backup": Script(tokens=("whole ", "answer")),
        }
    )
    events = await run(build(agent("a"), summarizer={"fallback_models": ("backup",)}), model)

    kinds = [type(e).__name__ for _, e in events.events]
    assert kinds[kinds.index("SummaryStarted") :] == [
        "SummaryStarted",
        "SummaryDelta",
        "SummaryDelta",
        "SummaryRestarted",
        "SummaryDelta",
        "SummaryDelta",
        "Done",
    ]
    (restarted,) = events.of_type(SummaryRestarted)
    assert (restarted.model, restarted.error.code) == ("backup", "upstream_unavailable")
    deltas = [e.text for e in events.of_type(SummaryDelta)]
    assert deltas == ["half ", "a ", "whole ", "answer"]
    # The fallback starts over from the cached answers: the same prompt, not a continuation.
    first, second = model.calls_of("sum")
    assert first.request.messages == second.request.messages
    done = events.terminal
    assert isinstance(done, Done)
    assert done.models["sum"] == "backup"


async def test_the_summary_restarts_only_once(autojump_clock: MockClock) -> None:
    breaking = Script(tokens=("x", "y"), error=UpstreamUnavailable(), error_after_tokens=1)
    model = ScriptedModel(
        {"a": Script(), "sum": breaking, "sum@one": breaking, "sum@two": Script(tokens=("z",))}
    )
    events = await run(build(agent("a"), summarizer={"fallback_models": ("one", "two")}), model)

    assert len(events.of_type(SummaryRestarted)) == 1
    assert [c.request.model for c in model.calls_of("sum")] == ["m", "one"]
    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert (terminal.source, terminal.error.code) == ("sum", "upstream_unavailable")


async def test_a_summary_failing_before_any_text_moves_to_the_fallback_without_a_restart(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {"a": Script(), "sum": Script(error=UpstreamAuthFailed()), "sum@backup": Script(text="b")}
    )
    events = await run(build(agent("a"), summarizer={"fallback_models": ("backup",)}), model)

    assert not events.of_type(SummaryRestarted)
    assert [e.text for e in events.of_type(SummaryDelta)] == ["b"]
    done = events.terminal
    assert isinstance(done, Done)
    assert done.models == {"a": "m", "sum": "backup"}


async def test_with_no_grace_every_start_is_still_reported_before_any_outcome(
    autojump_clock: MockClock,
) -> None:
    slow = [f"slow{i}" for i in range(15)]
    model = ScriptedModel(
        {"a": Script(), **{name: Script(delay_s=1) for name in slow}, "sum": Script()}
    )
    ensemble = build(agent("a"), *(agent(name) for name in slow), straggler_grace_ms=0)
    events = await run(ensemble, model, events_buffer=0)

    kinds = [type(e).__name__ for _, e in events.events]
    assert kinds[:17] == ["AgentStarted"] * 16 + ["AgentCompleted"]
    assert [e.agent for e in events.of_type(AgentFailed)] == slow
    assert {c.caller for c in model.calls} == {"a", *slow, "sum"}


async def test_with_every_agent_failing_a_quorum_above_one_is_quorum_not_met(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(error=UpstreamRejected()),
            "b": Script(error=UpstreamRejected()),
            "sum": Script(),
        }
    )
    events = await run(build(agent("a"), agent("b"), min_agents=2), model)
    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert terminal.error.code == "quorum_not_met"


async def test_agents_still_running_at_the_request_deadline_are_reported_and_counted(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel({"a": Script(delay_s=1), "b": Script(delay_s=50), "sum": Script()})
    start = trio.current_time()
    events = await run(build(agent("a"), agent("b")), model, request_timeout_s=5)

    (failed,) = events.of_type(AgentFailed)
    assert (failed.agent, failed.error.code, failed.attempts) == ("b", "deadline_exceeded", 1)
    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert terminal.error.code == "deadline_exceeded"
    assert terminal.agents is not None
    assert terminal.agents.as_dict() == {"succeeded": 1, "failed": 0, "cut": 1}
    assert events.events[-1][0] - start == 5


async def test_the_restart_event_names_the_model_whose_text_follows(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(),
            "sum": Script(tokens=("x", "y"), error=UpstreamUnavailable(), error_after_tokens=1),
            "sum@one": Script(error=UpstreamAuthFailed()),
            "sum@two": Script(tokens=("z",)),
        }
    )
    events = await run(build(agent("a"), summarizer={"fallback_models": ("one", "two")}), model)

    (restarted,) = events.of_type(SummaryRestarted)
    assert (restarted.model, restarted.error.code) == ("two", "upstream_unavailable")
    kinds = [type(e).__name__ for _, e in events.events]
    assert kinds[kinds.index("SummaryStarted") :] == [
        "SummaryStarted",
        "SummaryDelta",
        "SummaryRestarted",
        "SummaryDelta",
        "Done",
    ]


async def test_a_summary_failing_before_any_text_is_retried_with_exponential_backoff(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(),
            "sum": [
                Script(delay_s=1, error=UpstreamUnavailable()),
                Script(delay_s=1, error=UpstreamUnavailable()),
                Script(delay_s=1, tokens=("ok",)),
            ],
        }
    )
    start = trio.current_time()
    events = await run(build(agent("a")), model)

    # Waits of 0.25 s, then 0.5 s (the top of each jittered range) between 1 s attempts.
    assert starts(model, "sum", start) == [("m", 0), ("m", 1.25), ("m", 2.75)]
    assert [e.text for e in events.of_type(SummaryDelta)] == ["ok"]
    assert isinstance(events.terminal, Done)


@pytest.mark.parametrize("retries", [0, 1, 3])
async def test_summary_retries_stop_at_the_configured_count(
    retries: int, autojump_clock: MockClock
) -> None:
    model = ScriptedModel({"a": Script(), "sum": Script(error=UpstreamUnavailable())})
    events = await run(build(agent("a"), summarizer={"retries": retries}), model)

    assert len(model.calls_of("sum")) == retries + 1
    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert (terminal.source, terminal.error.code) == ("sum", "upstream_unavailable")


async def test_an_empty_summary_stream_is_a_bad_response_not_an_empty_done(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel({"a": Script(), "sum": Script(tokens=())})
    events = await run(build(agent("a")), model)

    assert not events.of_type(SummaryDelta)
    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert (terminal.source, terminal.error.code) == ("sum", "upstream_bad_response")
    # Not retryable: the same model would most likely send nothing again.
    assert len(model.calls_of("sum")) == 1


async def test_an_empty_summary_stream_moves_to_the_fallback(autojump_clock: MockClock) -> None:
    model = ScriptedModel(
        {"a": Script(), "sum": Script(tokens=()), "sum@backup": Script(tokens=("b",))}
    )
    events = await run(build(agent("a"), summarizer={"fallback_models": ("backup",)}), model)

    assert not events.of_type(SummaryRestarted)
    assert [e.text for e in events.of_type(SummaryDelta)] == ["b"]
    done = events.terminal
    assert isinstance(done, Done)
    assert done.models["sum"] == "backup"
