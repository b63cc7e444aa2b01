"""How an ensemble deliberates: a strategy is the order of its steps, chosen by the ensemble
file (`strategy = "summarize"`, the default, or vote, usc, council, moa, debate; their
options under `[deliberation]`). The driver (run.py) gives it the run's `Steps` and holds
the guarantees every strategy shares: the request's deadline, one terminal event, a
client's hang-up cancelling everything; inside a step, each member's timeout, retries,
fallbacks and hedge, the quorum and the stragglers (gather.py).

    async def summarize(run: RunContext, steps: Steps) -> Done | Failed:
        answers = await steps.ask(Ask(run.ensemble.agents, steps.first_answer))
        return steps.shortfall(answers) or await steps.summarize(answers)

Steps that give answers (the first answers, a debate's revisions, a mixture's layers) must
meet the quorum for the run to go on; steps that judge them (a council's reviews, a
selector's choice) are advice: a review or a choice that fails or cannot be read is
reported and the run goes on without it.

A new strategy is a function here (or in a module of its own beside this one) and its name
in STRATEGIES and in the ensemble's `strategy` field (ensemble/model.py), with its options.
docs/ensemble.md says what each one costs and why to choose it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from ..ensemble import Agent, Member
from ..ensemble.templates import (
    DEFAULT_CHAIRMAN_PROMPT,
    DEFAULT_LAYER_PROMPT,
    DEFAULT_REVIEW_PROMPT,
    DEFAULT_REVISE_PROMPT,
    DEFAULT_SELECT_PROMPT,
    AnswerView,
    RankView,
)
from ..errors import ServiceError
from ..events import CouncilRanking, CouncilReview, Done, Failed, PublicError, Step
from ..llm import ChatMessage
from .ballots import aggregate_ranking, count_votes, parse_ranking, parse_selection, shown_to
from .context import RunContext
from .gather import Ask
from .prompt import answer_view, step_messages
from .steps import Steps
from .summarize import Briefing

Strategy = Callable[[RunContext, Steps], Awaitable[Done | Failed]]

FIRST_ANSWERS = Step("answer", 0)


class RankingUnreadable(ServiceError):
    code = "ranking_unreadable"
    default_message = "the review's FINAL RANKING could not be read"


async def summarize(run: RunContext, steps: Steps) -> Done | Failed:
    """Every agent answers the question; the summarizer combines the answers."""
    answers = await steps.ask(Ask(run.ensemble.agents, steps.first_answer))
    return steps.shortfall(answers) or await steps.summarize(answers)


async def vote(run: RunContext, steps: Steps) -> Done | Failed:
    """Every agent answers; the answer most of them gave (or the one most like the rest)
    is the reply. N calls, no summarizer."""
    answers = await steps.round(Ask(run.ensemble.agents, steps.first_answer, FIRST_ANSWERS))
    return steps.shortfall(answers) or await steps.vote(answers, run.ensemble.deliberation.vote)


async def usc(run: RunContext, steps: Steps) -> Done | Failed:
    """Universal self-consistency: every agent answers; the selector (the summarizer) reads
    them as Response 1, 2... and names the most consistent, which is the reply as given."""
    answers = await steps.round(Ask(run.ensemble.agents, steps.first_answer, FIRST_ANSWERS))
    if end := steps.shortfall(answers):
        return end
    given = answers.answers()
    labels = _numbered(len(given))
    shown = [
        _view(run, label, answer.text) for label, (_, answer) in zip(labels, given, strict=True)
    ]
    template = run.ensemble.deliberation.select_prompt or DEFAULT_SELECT_PROMPT
    # The ensemble's own summarizer: a client's max_tokens caps the reply, not this choice.
    assert run.ensemble.summarizer is not None
    selector = run.ensemble.summarizer.as_agent()

    def prompt(member: Agent) -> Sequence[ChatMessage]:
        return _step_prompt(run, member, template, shown)

    selection = await steps.round(Ask((selector,), prompt, Step("select", 1), advice=True))
    replies = selection.answers()
    choice = parse_selection(replies[0][1].text, len(given)) if replies else None
    if choice is None:
        # The selector failed or named no response: the answer most like the others.
        why = "its reply named no response" if replies else "it gave no reply"
        tally = count_votes({name: answer.text for name, answer in given}, "similar")
        return await steps.give_answer(answers, tally.chosen, f"{tally.reason}; {why}")
    agent = given[choice][0]
    return await steps.give_answer(answers, agent, f"the selector chose {labels[choice]}")


async def council(run: RunContext, steps: Steps) -> Done | Failed:
    """Every agent answers; each ranks the others' answers (anonymised as Response A, B...,
    in an order of its own, unless `anonymize = false`); the chairman (the summarizer)
    writes the reply from the answers, the reviews and the aggregate ranking."""
    ensemble = run.ensemble
    answers = await steps.round(Ask(ensemble.agents, steps.first_answer, FIRST_ANSWERS))
    if end := steps.shortfall(answers):
        return end
    given = dict(answers.answers())
    agents = list(given)
    anonymize = ensemble.deliberation.anonymize
    shown = {
        reviewer: shown_to(reviewer, agents, anonymize=anonymize, seed=run.request.message_id)
        for reviewer in agents
    }
    template = ensemble.deliberation.review_prompt or DEFAULT_REVIEW_PROMPT

    def prompt(member: Agent) -> Sequence[ChatMessage]:
        views = [_view(run, label, given[agent].text) for label, agent in shown[member.name]]
        return _step_prompt(run, member, template, views)

    reviewers = tuple(agent for agent in ensemble.agents if agent.name in given)
    reviewed = await steps.round(Ask(reviewers, prompt, Step("review", 1), advice=True))
    rankings: list[list[str]] = []
    reviews: list[AnswerView] = []
    for reviewer, review in reviewed.answers():
        labels = dict(shown[reviewer])
        order = parse_ranking(review.text, list(labels))
        ranking = [labels[label] for label in order] if order is not None else None
        error = None if ranking is not None else PublicError.of(RankingUnreadable())
        await steps.events.send(
            CouncilReview(
                reviewer=reviewer,
                ranking=tuple(ranking) if ranking is not None else None,
                labels=labels,
                error=error,
            )
        )
        if ranking is not None:
            rankings.append(ranking)
        reviews.append(_view(run, reviewer, _named(review.text, labels)))
    ranks = aggregate_ranking(agents, rankings)
    await steps.events.send(CouncilRanking(strategy=ensemble.strategy, ranking=tuple(ranks)))
    briefing = Briefing(
        reviews=reviews,
        ranking=[RankView(r.agent, r.average_rank, r.reviews) for r in ranks],
        default_prompt=DEFAULT_CHAIRMAN_PROMPT,
    )
    return await steps.summarize(answers, briefing)


async def moa(run: RunContext, steps: Steps) -> Done | Failed:
    """Mixture of agents: every agent answers; in each next layer every agent synthesizes
    all the answers of the layer before; the aggregator (the summarizer) writes the reply
    from the last layer's."""
    ensemble = run.ensemble
    layers = ensemble.deliberation.layers
    template = ensemble.deliberation.layer_prompt or DEFAULT_LAYER_PROMPT
    answers = await steps.round(Ask(ensemble.agents, steps.first_answer, FIRST_ANSWERS))
    for layer in range(1, layers - 1):
        if end := steps.shortfall(answers):
            return end
        shown = [_view(run, name, answer.text) for name, answer in answers.answers()]

        def prompt(
            member: Agent, shown: list[AnswerView] = shown, layer: int = layer
        ) -> Sequence[ChatMessage]:
            return _step_prompt(run, member, template, shown, round=layer, rounds=layers - 2)

        answers = await steps.round(Ask(ensemble.agents, prompt, Step("layer", layer)))
    return steps.shortfall(answers) or await steps.summarize(answers)


async def debate(run: RunContext, steps: Steps) -> Done | Failed:
    """Every agent answers; in each of `rounds` rounds every agent that answered reads the
    others' latest answers and revises its own; the summarizer combines the last round's
    answers, or (`final = "vote"`) they vote."""
    ensemble = run.ensemble
    options = ensemble.deliberation
    template = options.revise_prompt or DEFAULT_REVISE_PROMPT
    answers = await steps.round(Ask(ensemble.agents, steps.first_answer, FIRST_ANSWERS))
    for number in range(1, options.rounds + 1):
        if end := steps.shortfall(answers):
            return end
        latest = {name: answer.text for name, answer in answers.answers()}

        def prompt(
            member: Agent, latest: Mapping[str, str] = latest, number: int = number
        ) -> Sequence[ChatMessage]:
            others = [
                _view(run, name, text) for name, text in latest.items() if name != member.name
            ]
            return _step_prompt(
                run,
                member,
                template,
                others,
                own=latest.get(member.name, ""),
                round=number,
                rounds=options.rounds,
            )

        debaters = tuple(agent for agent in ensemble.agents if agent.name in latest)
        answers = await steps.round(Ask(debaters, prompt, Step("revise", number)))
    if end := steps.shortfall(answers):
        return end
    if options.final == "vote":
        return await steps.vote(answers, options.vote)
    return await steps.summarize(answers)


STRATEGIES: Mapping[str, Strategy] = {
    "summarize": summarize,
    "vote": vote,
    "usc": usc,
    "council": council,
    "moa": moa,
    "debate": debate,
}


def _view(run: RunContext, name: str, text: str) -> AnswerView:
    return answer_view(name, text, run.ensemble.max_shown_chars)


def _numbered(count: int) -> list[str]:
    return [f"Response {number}" for number in range(1, count + 1)]


def _step_prompt(
    run: RunContext,
    member: Member,
    template: str,
    shown: Sequence[AnswerView],
    *,
    own: str = "",
    round: int = 1,
    rounds: int = 1,
) -> Sequence[ChatMessage]:
    return step_messages(
        member,
        template,
        run.request.message,
        shown,
        own=own,
        round=round,
        rounds=rounds,
        history=run.history,
        client_context=run.client_context,
    )


def _named(text: str, labels: Mapping[str, str]) -> str:
    """A review's text with each label it used replaced by the agent's name, for the
    chairman (the longest labels first, so "Response AB" is not read as "Response A")."""
    for label in sorted(labels, key=len, reverse=True):
        text = text.replace(label, labels[label])
    return text
