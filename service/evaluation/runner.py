"""Ask every question of an evaluation of every contestant: the ensemble as it runs for a
request, and each of its agents alone (the same model, prompt, provider, retries and
fallbacks it has in the ensemble). Each result goes to the evaluation's book as it comes
(an output folder, or the database), so an interrupted evaluation picks up where it stopped.

    outcome = await evaluate(plan, model)   # every result, and whether the budget stopped it
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import trio

from ..ensemble import Agent, Ensemble, LoadedEnsembles, Member
from ..ensemble.prices import run_cost
from ..errors import ServiceError
from ..events import FIRST_STEP, AgentDelta, Done, Event, Failed, SummaryDelta
from ..llm import ChatModel, Usage
from ..pipeline import PipelineRequest, RunContext, run_pipeline
from ..pipeline.agent_text import AgentText
from ..pipeline.answers import Answer, ask_agent
from ..pipeline.calls import Attempts
from ..pipeline.coalesce import DeltaCoalescer
from ..pipeline.context import AgentStreaming
from ..pipeline.prompt import agent_messages
from .book import Book, EvaluationError
from .budget import Budget, reckon_question
from .dataset import Item
from .results import ModelSpend, Result
from .scoring import score

__all__ = [
    "Contestant",
    "EvaluationError",
    "Outcome",
    "Plan",
    "Result",
    "Ticket",
    "contestants_of",
    "evaluate",
    "judge_of",
]


@dataclass(frozen=True, slots=True)
class Contestant:
    """An ensemble (`agent` None) or one of its agents alone, named `ensemble` or
    `ensemble/agent` in the report."""

    ensemble_name: str
    ensemble: Ensemble
    agent: Agent | None = None

    @property
    def name(self) -> str:
        return (
            self.ensemble_name if self.agent is None else f"{self.ensemble_name}/{self.agent.name}"
        )

    def max_tokens(self) -> list[int | None]:
        """Each upstream call one question makes of it: its `max_tokens`, None unset."""
        if self.agent is None:
            return self.ensemble.max_tokens_per_call()
        return [self.agent.max_tokens]


def contestants_of(loaded: LoadedEnsembles, names: Sequence[str]) -> list[Contestant]:
    """Each ensemble named (none: the default), then each of its agents alone; raises
    UnknownEnsemble."""
    contestants = []
    chosen: Sequence[str | None] = names or [None]
    for name in chosen:
        picked, ensemble = loaded.pick(name)
        contestants.append(Contestant(picked, ensemble))
        contestants += [Contestant(picked, ensemble, agent) for agent in ensemble.agents]
    return contestants


def judge_of(contestants: Sequence[Contestant], name: str) -> Member | None:
    """The member of the first ensemble named `name` (an agent or the summarizer)."""
    return {m.name: m for m in contestants[0].ensemble.members}.get(name)


@dataclass
class Ticket:
    """What an admitted question used, for its admission to settle: the tokens the
    providers reported (None: it ran nothing)."""

    used_tokens: int | None = None


# Around each question asked: a server admits it through the caller's limits (waiting its
# turn), and settles with the ticket's tokens when it is done.
Admit = Callable[[Contestant], AbstractAsyncContextManager[Ticket]]


@dataclass
class Plan:
    items: list[Item]
    contestants: list[Contestant]
    scorer: str
    book: Book
    default_base_url: str
    # The mock answers: every call costs $0, whatever model it names.
    free: bool = False
    tolerance: float = 1e-6
    concurrency: int = 4
    max_cost_usd: float | None = None
    timeout_s: float = 120.0
    # Told of every result as it comes (a progress bar, the server's progress events).
    on_result: Callable[[Result, int, int], None] | None = None
    admit: Admit | None = None


@dataclass
class Outcome:
    """What evaluate() leaves: every result, and whether the budget stopped it early."""

    results: list[Result]
    stopped_by_budget: bool = False
    spent_usd: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def fingerprint(plan: Plan) -> dict[str, Any]:
    """What makes two runs the same evaluation: one may finish what the other began."""
    return {
        "items": [item.key for item in plan.items],
        "contestants": [c.name for c in plan.contestants],
        "scorer": plan.scorer,
    }


async def evaluate(plan: Plan, model: ChatModel) -> Outcome:
    results = await plan.book.begin(fingerprint(plan))
    asked_before = {(r.contestant, r.item) for r in results}
    todo = [
        (item, contestant)
        for item in plan.items  # a deterministic order: question by question
        for contestant in plan.contestants
        if (contestant.name, item.key) not in asked_before
    ]
    outcome = Outcome(results=results)
    budget = Budget(plan.max_cost_usd, spent_usd=sum(r.cost_usd or 0.0 for r in results))
    # The most each contestant's question has cost so far: a reckoning is never below it.
    dearest: dict[str, float] = {}
    for result in results:
        dearest[result.contestant] = max(dearest.get(result.contestant, 0.0), result.cost_usd or 0)
    if plan.max_cost_usd is not None and todo:
        for contestant in plan.contestants:  # an unknown price refuses before anything is asked
            _reckoned(plan, contestant, todo[0][0], dearest)
    slots = trio.Semaphore(plan.concurrency)
    total = len(plan.items) * len(plan.contestants)

    async def ask(item: Item, contestant: Contestant, reckoned: float) -> None:
        try:
            result, spent = await _admitted(plan, model, contestant, item)
        finally:
            slots.release()
        budget.settle(reckoned, result.cost_usd)
        outcome.results.append(result)
        dearest[contestant.name] = max(dearest.get(contestant.name, 0.0), result.cost_usd or 0)
        await plan.book.add(result, spent)
        if plan.on_result is not None:
            plan.on_result(result, len(outcome.results), total)

    async with trio.open_nursery() as nursery:
        for index, (item, contestant) in enumerate(todo):
            await slots.acquire()
            reckoned = _reckoned(plan, contestant, item, dearest)
            # Started only if what is spent, what those in flight may cost and what this
            # one may cost stay within the budget (docs/evaluation.md#a-good-citizen).
            if not await budget.reserve(reckoned):
                slots.release()
                outcome.skipped = [(c.name, i.key) for i, c in todo[index:]]
                break
            nursery.start_soon(ask, item, contestant, reckoned)
    outcome.stopped_by_budget = budget.stopped
    outcome.spent_usd = budget.spent_usd
    return outcome


def _reckoned(plan: Plan, contestant: Contestant, item: Item, dearest: dict[str, float]) -> float:
    """What a question is held at against the budget: its reckoning, or what the same
    contestant's dearest question cost if more; nothing without a budget."""
    if plan.max_cost_usd is None:
        return 0.0
    reckoned = reckon_question(
        contestant.ensemble,
        contestant.agent,
        item.question,
        default_base_url=plan.default_base_url,
        free=plan.free,
    )
    return max(reckoned, dearest.get(contestant.name, 0.0))


async def _admitted(
    plan: Plan, model: ChatModel, contestant: Contestant, item: Item
) -> tuple[Result, list[ModelSpend]]:
    if plan.admit is None:
        return await _ask(plan, model, contestant, item)
    async with plan.admit(contestant) as ticket:
        result, spent = await _ask(plan, model, contestant, item)
        ticket.used_tokens = result.prompt_tokens + result.completion_tokens
    return result, spent


async def _ask(
    plan: Plan, model: ChatModel, contestant: Contestant, item: Item
) -> tuple[Result, list[ModelSpend]]:
    started = time.monotonic()
    if contestant.agent is None:
        asked = await _ask_ensemble(plan, model, contestant, item)
    else:
        asked = await _ask_alone(plan, model, contestant, item)
    latency = time.monotonic() - started
    first_token = asked.first_token
    spent = _spent(plan, contestant.ensemble, asked)
    costs = [s.cost_usd for s in spent]
    result = Result(
        contestant=contestant.name,
        item=item.key,
        answer=asked.text,
        correct=asked.error is None
        and score(asked.text, item.answers, plan.scorer, plan.tolerance),
        latency_s=round(latency, 4),
        first_token_s=None if first_token is None else round(first_token - started, 4),
        prompt_tokens=sum(u.prompt_tokens for u in asked.usage.values()),
        completion_tokens=sum(u.completion_tokens for u in asked.usage.values()),
        # Every call: those whose answers were used and those wasted (docs/evaluation.md);
        # None if one price is unknown.
        cost_usd=None if None in costs else sum(c or 0.0 for c in costs),
        error=asked.error,
    )
    return result, spent


@dataclass(frozen=True, slots=True)
class _Asked:
    """One contestant's reply to one question, with what its calls used: the answers'
    tokens per member and the model of each, and the calls paid for and not used, as
    (member, model, tokens, calls)."""

    text: str
    first_token: float | None
    usage: dict[str, Usage]
    models: dict[str, str]
    error: str | None
    wasted: tuple[tuple[str, str, Usage, int], ...] = ()


async def _ask_ensemble(plan: Plan, model: ChatModel, contestant: Contestant, item: Item) -> _Asked:
    """The ensemble as a request runs it: its strategy, quorum, retries, deadline."""
    run = RunContext(
        request=PipelineRequest(message=item.question, message_id=f"eval-{item.key}"),
        ensemble=contestant.ensemble,
        model=model,
        request_timeout_s=plan.timeout_s,
    )
    send, receive = trio.open_memory_channel[Event](64)
    text: list[str] = []
    first_token: float | None = None
    terminal: Done | Failed | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_pipeline, run, send)
        async with receive:
            async for event in receive:
                if isinstance(event, SummaryDelta):
                    first_token = first_token or time.monotonic()
                    text.append(event.text)
                elif isinstance(event, Done | Failed):
                    terminal = event
    if terminal is None:
        return _Asked("".join(text), first_token, {}, {}, "no_answer")
    # A failed question's calls cost money too: its finished answers and its wasted calls.
    wasted = tuple((w.member, w.model, w.usage, w.calls) for w in terminal.wasted)
    if isinstance(terminal, Done):
        return _Asked(
            "".join(text), first_token, dict(terminal.usage), dict(terminal.models), None, wasted
        )
    return _Asked("".join(text), first_token, dict(terminal.usage), {}, terminal.error.code, wasted)


async def _ask_alone(plan: Plan, model: ChatModel, contestant: Contestant, item: Item) -> _Asked:
    """One agent alone, with its own prompt, model, retries and fallbacks."""
    agent = contestant.agent
    assert agent is not None
    ensemble = contestant.ensemble.model_copy(update={"agents": (agent,)})
    run = RunContext(
        request=PipelineRequest(message=item.question, message_id=f"eval-{item.key}"),
        ensemble=ensemble,
        model=model,
        request_timeout_s=plan.timeout_s,
    )
    attempts = Attempts()
    messages = agent_messages(agent, item.question)
    # The answer streams, as an agent's does in a request, so that its first piece is
    # seen when it comes: the time to the first token.
    send, receive = trio.open_memory_channel[Event](16)
    text = AgentText(
        send, DeltaCoalescer(send, AgentStreaming()), agent=agent.name, step=FIRST_STEP
    )
    first_token: float | None = None

    async def watch_for_text() -> None:
        nonlocal first_token
        async with receive:
            async for event in receive:
                if isinstance(event, AgentDelta) and first_token is None:
                    first_token = time.monotonic()

    answer: Answer | None = None
    error = "upstream_timeout"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_for_text)
        async with send:  # closed when the answer is in: the watch ends
            try:
                with trio.fail_after(agent.timeout_s or plan.timeout_s):
                    answer = await ask_agent(run, agent, attempts, messages, text)
            except ServiceError as exc:
                error = exc.code
            except trio.TooSlowError:
                pass
    if answer is None:
        return _Asked("", None, {}, {}, error, _wasted(agent.name, attempts))
    usage = {agent.name: answer.usage} if answer.usage is not None else {}
    return _Asked(
        answer.text,
        first_token,
        usage,
        {agent.name: answer.model},
        None,
        _wasted(agent.name, attempts),
    )


def _wasted(member: str, attempts: Attempts) -> tuple[tuple[str, str, Usage, int], ...]:
    return tuple((member, model, usage, calls) for model, (calls, usage) in attempts.wasted.items())


def _spent(plan: Plan, ensemble: Ensemble, asked: _Asked) -> list[ModelSpend]:
    """What the calls of one question used per model, with their dollars: the answers' (a
    member whose model is not known counts as its primary one) and the wasted calls."""
    base_url = plan.default_base_url
    members = {member.name: member for member in ensemble.members}
    calls: list[tuple[str, str, Usage, int]] = []
    for name, usage in asked.usage.items():
        member = members.get(name)
        primary = ensemble.targets(member)[0].model if member is not None else "unknown"
        calls.append((name, asked.models.get(name) or primary, usage, 1))
    calls += list(asked.wasted)
    by_model: dict[str, ModelSpend] = {}
    for name, model, usage, count in calls:
        cost = run_cost(
            ensemble, {name: usage}, {name: model}, default_base_url=base_url, free=plan.free
        )[name]
        before = by_model.get(model)
        if before is not None:
            cost = None if cost is None or before.cost_usd is None else before.cost_usd + cost
        by_model[model] = ModelSpend(
            model=model,
            calls=(before.calls if before else 0) + count,
            prompt_tokens=(before.prompt_tokens if before else 0) + usage.prompt_tokens,
            completion_tokens=(before.completion_tokens if before else 0) + usage.completion_tokens,
            cost_usd=cost,
        )
    return list(by_model.values())


def progress_bar(result: Result, done: int, total: int) -> None:
    """A line on a terminal that redraws itself; nothing when the output is not one."""
    if not sys.stderr.isatty():
        return
    width = 30
    filled = round(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()
