"""Each deliberation strategy run in virtual time with scripted members: the calls made and
their order, what each member is shown, the events, and a member failing in a later step."""

from __future__ import annotations

from typing import Any

import pytest
from trio.testing import MockClock

from service.ensemble import Agent, Ensemble, Summarizer
from service.ensemble.model import Deliberation
from service.errors import UpstreamUnavailable
from service.events import (
    AgentCompleted,
    AgentFailed,
    AnswerChosen,
    CouncilRanking,
    CouncilReview,
    Done,
    Failed,
    RoundCompleted,
    RoundStarted,
    Step,
    SummaryDelta,
    VoteTally,
)
from tests.fake_models import Script, ScriptedModel
from tests.unit.recorder import run

NAMES = ("a", "b", "c")


def ensemble(strategy: str, summarizer: bool = True, **options: Any) -> Ensemble:
    agents = tuple(Agent(name=n, system_prompt=f"You are {n}.", model="m") for n in NAMES)
    return Ensemble(
        strategy=strategy,  # type: ignore[arg-type]
        deliberation=Deliberation(**options),
        agents=agents,
        summarizer=Summarizer(name="sum", system_prompt="Combine.", model="m")
        if summarizer
        else None,
    )


def prompt_of(model: ScriptedModel, caller: str, index: int) -> str:
    return model.calls_of(caller)[index].request.messages[-1].content


def steps_of(events: Any) -> list[tuple[str, int]]:
    return [(e.step.phase, e.step.round) for e in events.of_type(RoundStarted)]


async def test_a_vote_takes_the_answer_most_agents_gave_with_no_summarizer_call(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel({"a": Script(text="42"), "b": Script(text="41"), "c": Script(text="42.")})
    events = await run(ensemble("vote", summarizer=False), model, agent_streaming=None)

    assert sorted(call.caller for call in model.calls) == ["a", "b", "c"]
    (tally,) = events.of_type(VoteTally)
    assert tally.groups == (("a", "c"), ("b",))
    (chosen,) = events.of_type(AnswerChosen)
    assert chosen.agent == "a"
    assert "2 of 3" in chosen.reason
    assert "".join(e.text for e in events.of_type(SummaryDelta)) == "42"
    assert isinstance(events.terminal, Done)
    assert steps_of(events) == [("answer", 0)]


async def test_usc_asks_the_selector_once_and_replies_with_the_answer_it_names(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(text="Paris."),
            "b": Script(text="Lyon."),
            "c": Script(text="It is Paris."),
            "sum": Script(text="The most consistent response is Response 3."),
        }
    )
    events = await run(ensemble("usc"), model)

    assert [call.caller for call in model.calls][-1] == "sum"
    assert len(model.calls) == 4
    shown = prompt_of(model, "sum", 0)
    assert "Response 1: Paris." in shown
    assert "Response 3: It is Paris." in shown
    (chosen,) = events.of_type(AnswerChosen)
    assert chosen.agent == "c"
    assert "".join(e.text for e in events.of_type(SummaryDelta)) == "It is Paris."
    assert steps_of(events) == [("answer", 0), ("select", 1)]


async def test_usc_falls_back_to_the_most_similar_answer_when_the_reply_names_none(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {
            "a": Script(text="the capital is paris"),
            "b": Script(text="lyon maybe"),
            "c": Script(text="paris is the capital"),
            "sum": Script(text="I cannot decide."),
        }
    )
    events = await run(ensemble("usc"), model)
    (chosen,) = events.of_type(AnswerChosen)
    assert chosen.agent == "a"
    assert "named no response" in chosen.reason


async def test_a_council_reviews_anonymised_answers_and_its_chairman_sees_the_ranking(
    autojump_clock: MockClock,
) -> None:
    ranking = "Both fine.\nFINAL RANKING:\n1. Response B\n2. Response A"
    scripts: dict[str, Any] = {
        n: [Script(text=f"answer of {n}"), Script(text=ranking)] for n in NAMES
    }
    scripts["c"] = [Script(text="answer of c"), Script(text="no ranking here")]
    scripts["sum"] = Script(text="final")
    model = ScriptedModel(scripts)
    events = await run(ensemble("council"), model)

    # 2N + 1 calls: answers, reviews, the chairman last.
    assert len(model.calls) == 7
    assert model.calls[-1].caller == "sum"
    for reviewer in NAMES:
        review = prompt_of(model, reviewer, 1)
        assert f"answer of {reviewer}" not in review  # its own answer is not shown
        assert not any(f'<answer from="{n}"' in review for n in NAMES)
        assert not any(f"{n}:" in review.split("\n") for n in NAMES)
    reviews = {r.reviewer: r for r in events.of_type(CouncilReview)}
    assert reviews["c"].ranking is None
    assert reviews["c"].error is not None
    for reviewer in ("a", "b"):
        labels = reviews[reviewer].labels
        assert sorted(labels.values()) == sorted(set(NAMES) - {reviewer})
        assert reviews[reviewer].ranking == (labels["Response B"], labels["Response A"])
    (aggregate,) = events.of_type(CouncilRanking)
    assert {rank.agent for rank in aggregate.ranking} == set(NAMES)
    chairman = prompt_of(model, "sum", 0)
    assert '<review from="a">' in chairman
    assert "Aggregate ranking" in chairman
    assert steps_of(events) == [("answer", 0), ("review", 1)]
    assert isinstance(events.terminal, Done)


async def test_a_mixture_feeds_each_layer_all_the_answers_of_the_one_before(
    autojump_clock: MockClock,
) -> None:
    model = ScriptedModel(
        {n: [Script(text=f"{n} first"), Script(text=f"{n} second")] for n in NAMES}
        | {"sum": Script(text="final")}
    )
    events = await run(ensemble("moa", layers=3), model)

    # N * (layers - 1) + 1 calls.
    assert len(model.calls) == 7
    layer = prompt_of(model, "b", 1)
    assert all(f"{n} first" in layer for n in NAMES)
    aggregator = prompt_of(model, "sum", 0)
    assert all(f"{n} second" in aggregator for n in NAMES)
    assert "first" not in aggregator
    assert steps_of(events) == [("answer", 0), ("layer", 1)]


async def test_a_debate_revises_for_each_round_and_a_member_failing_later_drops_out(
    autojump_clock: MockClock,
) -> None:
    failing = Script(error=UpstreamUnavailable("gone"))
    model = ScriptedModel(
        {
            "a": [Script(text="a0"), Script(text="a1"), Script(text="a2")],
            "b": [Script(text="b0"), Script(text="b1"), Script(text="b2")],
            "c": [Script(text="c0"), failing],
            "sum": Script(text="final"),
        }
    )
    the_ensemble = ensemble("debate", rounds=2).model_copy(
        update={
            "agents": tuple(a.model_copy(update={"retries": 0}) for a in ensemble("debate").agents)
        }
    )
    events = await run(the_ensemble, model)

    revise = prompt_of(model, "a", 1)
    assert "a0" in revise
    assert "b0" in revise
    assert "c0" in revise
    assert "round 1 of 2" in revise
    # c failed in round 1: round 2 asks a and b, and a is shown b's latest only.
    assert [c.caller for c in model.calls].count("c") == 2
    second = prompt_of(model, "a", 2)
    assert "b1" in second
    assert "c0" not in second
    failed = [e for e in events.of_type(AgentFailed)]
    assert [(e.agent, e.step) for e in failed] == [("c", Step("revise", 1))]
    completed = [(e.agent, e.step.round) for e in events.of_type(AgentCompleted)]
    assert ("a", 2) in completed
    assert ("c", 2) not in completed
    assert steps_of(events) == [("answer", 0), ("revise", 1), ("revise", 2)]
    assert [e.missing for e in events.of_type(RoundCompleted)] == [(), ("c",), ()]
    assert "a2" in prompt_of(model, "sum", 0)
    done = events.terminal
    assert isinstance(done, Done)
    # Tokens of every round are counted.
    assert done.usage["a"].completion_tokens == 3


async def test_a_debate_whose_quorum_fails_in_a_later_round_ends_there(
    autojump_clock: MockClock,
) -> None:
    failing = Script(error=UpstreamUnavailable("gone"))
    model = ScriptedModel({n: [Script(text=f"{n}0"), failing] for n in NAMES} | {"sum": Script()})
    the_ensemble = ensemble("debate", rounds=1, final="summary").model_copy(
        update={
            "min_agents": 2,
            "agents": tuple(a.model_copy(update={"retries": 0}) for a in ensemble("debate").agents),
        }
    )
    events = await run(the_ensemble, model)
    assert isinstance(events.terminal, Failed)
    assert not model.calls_of("sum")


@pytest.mark.parametrize(
    ("strategy", "options", "summarizer", "calls"),
    [
        ("summarize", {}, True, 4),
        ("vote", {}, False, 3),
        ("usc", {}, True, 4),
        ("council", {}, True, 7),
        ("moa", {"layers": 4}, True, 10),
        ("debate", {"rounds": 2}, True, 10),
        ("debate", {"rounds": 1, "final": "vote"}, False, 6),
    ],
)
def test_the_calls_per_request_are_known_before_any_is_made(
    strategy: str, options: dict[str, Any], summarizer: bool, calls: int
) -> None:
    the_ensemble = ensemble(strategy, summarizer, **options)
    assert the_ensemble.calls_per_request == calls
    # A token limit reserves for every one of them.
    assert len(the_ensemble.max_tokens_per_call()) == calls


def test_a_token_limit_reserves_each_agents_max_tokens_once_per_round() -> None:
    debate = ensemble("debate", rounds=2)
    debate = debate.model_copy(
        update={
            "agents": tuple(a.model_copy(update={"max_tokens": 100}) for a in debate.agents),
            "summarizer": debate.summarizer.model_copy(update={"max_tokens": 50})
            if debate.summarizer
            else None,
        }
    )
    assert debate.max_tokens_per_call() == [100] * 9 + [50]
    vote = ensemble("vote", summarizer=False)
    assert vote.max_tokens_per_call() == [None, None, None]


async def test_a_failed_review_cuts_no_other_review_whatever_the_quorum(
    autojump_clock: MockClock,
) -> None:
    ranking = "FINAL RANKING:\n1. Response A\n2. Response B"
    failing = Script(delay_s=0.1, error=UpstreamUnavailable("gone"))
    scripts: dict[str, Any] = {
        "a": [Script(text="answer of a"), failing],
        "b": [Script(text="answer of b"), Script(delay_s=1, text=ranking)],
        "c": [Script(text="answer of c"), Script(delay_s=1, text="no ranking")],
        "sum": Script(text="final"),
    }
    the_ensemble = ensemble("council").model_copy(
        update={
            "min_agents": 3,
            "agents": tuple(
                a.model_copy(update={"retries": 0}) for a in ensemble("council").agents
            ),
        }
    )
    events = await run(the_ensemble, ScriptedModel(scripts))

    failed = [(e.agent, e.error.code) for e in events.of_type(AgentFailed)]
    assert failed == [("a", "upstream_unavailable")]
    reviews = {r.reviewer: r for r in events.of_type(CouncilReview)}
    assert set(reviews) == {"b", "c"}
    assert reviews["c"].error is not None
    assert reviews["c"].error.message == "the review's FINAL RANKING could not be read"
    assert isinstance(events.terminal, Done)


def test_a_vote_method_for_a_debate_the_summarizer_ends_is_refused() -> None:
    with pytest.raises(ValueError, match=r'deliberation\.vote is read only with final = "vote"'):
        ensemble("debate", vote="similar")
    assert ensemble("debate", summarizer=False, final="vote", vote="similar").calls_per_request == 9
