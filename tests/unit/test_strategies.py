"""A deliberation is a strategy made of steps, under one driver. The proof that a new one
is small: a review round (each agent reads the others' answers and revises, then the
summarizer combines the revisions) written here in a dozen lines, with the driver's
guarantees (one terminal event, the deadline, the cut agents reported) holding for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
from trio.testing import MockClock

from service.ensemble import Agent, Ensemble, Summarizer
from service.errors import DeadlineExceeded
from service.events import AgentCompleted, AgentFailed, AgentStarted, Done, Failed, Step
from service.llm import ChatMessage
from service.pipeline import RunContext, strategies
from service.pipeline.gather import Ask
from service.pipeline.steps import Steps
from tests.fake_models import Script, ScriptedModel
from tests.unit.recorder import run

REVIEW = Step(phase="review", round=1)


async def review(run: RunContext, steps: Steps) -> Done | Failed:
    first = await steps.ask(Ask(run.ensemble.agents, steps.first_answer))
    if (failed := steps.shortfall(first)) is not None:
        return failed
    others = "\n".join(f"{name}: {answer.text}" for name, answer in first.answers())

    def revise(agent: Agent) -> Sequence[ChatMessage]:
        return (ChatMessage(role="user", content=f"The answers:\n{others}\nRevise yours."),)

    second = await steps.ask(Ask(run.ensemble.agents, revise, REVIEW))
    return steps.shortfall(second) or await steps.summarize(second)


def ensemble(strategy: str = "summarize") -> Ensemble:
    built = Ensemble(
        agents=tuple(
            Agent(name=name, system_prompt=f"You are {name}.", model="m") for name in "ab"
        ),
        summarizer=Summarizer(name="sum", system_prompt="Combine.", model="m"),
    )
    # Validation knows only the shipped strategies; the test's own is put in by hand.
    return built.model_copy(update={"strategy": strategy})


def test_answer_then_summarize_is_the_default_strategy() -> None:
    assert ensemble().strategy == "summarize"
    assert strategies.STRATEGIES["summarize"] is strategies.summarize


async def test_a_review_round_asks_every_agent_again_with_the_answers_and_summarizes_those(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(strategies.STRATEGIES, "review", review)  # type: ignore[index]
    model = ScriptedModel(
        {
            "a": [Script(text="A first."), Script(text="A revised.")],
            "b": [Script(text="B first."), Script(text="B revised.")],
            "sum": Script(tokens=("all ", "revised")),
        }
    )
    events = await run(ensemble("review"), model)

    completed = events.of_type(AgentCompleted)
    assert sorted((e.agent, e.text) for e in completed if e.step == REVIEW) == [
        ("a", "A revised."),
        ("b", "B revised."),
    ]
    assert sorted(e.agent for e in events.of_type(AgentStarted) if e.step == REVIEW) == ["a", "b"]
    revise_prompt = model.calls_of("a")[1].request.messages[-1].content
    assert "a: A first." in revise_prompt
    assert "b: B first." in revise_prompt
    summary_prompt = model.call("sum").request.messages[-1].content
    assert "A revised." in summary_prompt
    assert "A first." not in summary_prompt
    assert isinstance(events.terminal, Done)


async def test_the_deadline_holds_inside_any_strategy_and_reports_the_step_it_cut(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(strategies.STRATEGIES, "review", review)  # type: ignore[index]
    model = ScriptedModel(
        {
            "a": [Script(text="A first."), Script(delay_s=60, text="late")],
            "b": [Script(text="B first."), Script(delay_s=60, text="late")],
            "sum": Script(text="never"),
        }
    )
    start = trio.current_time()
    events = await run(ensemble("review"), model, request_timeout_s=10)

    terminal = events.terminal
    assert isinstance(terminal, Failed)
    assert terminal.error.code == DeadlineExceeded.code
    assert trio.current_time() - start == pytest.approx(10)
    cut = [e for e in events.of_type(AgentFailed) if e.step == REVIEW]
    assert sorted(e.agent for e in cut) == ["a", "b"]
    assert all(e.error.code == DeadlineExceeded.code for e in cut)
