"""A judge for answers no rule can score: an LLM (a member of the user's choice) reads the
question and two answers and says which is better, once in each order, so its bias for
the first (or the second) answer cancels out. An answer wins a question when it wins both
orders; a split or a tie is half a win each.

    judging = await judge_pairs(plan, model, results, judge=member, spent_usd=asking_spent)
    win_rates(judging.verdicts, seed=0)   # ensemble against each member: wins, losses, ties, rate
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import trio

from ..ensemble import Ensemble, Member
from ..ensemble.prices import run_cost
from ..errors import ServiceError
from ..llm import ChatMessage, ChatModel, Usage
from ..pipeline import PipelineRequest, RunContext
from ..pipeline.answers import ask_agent
from ..pipeline.calls import Attempts
from .budget import Budget, reckon_call
from .results import ModelSpend, Result, Verdict
from .runner import Plan
from .scoring import interval

JUDGE_PROMPT = """\
Which answer to the question is better: more correct, more complete, clearer?

<question>
{question}
</question>

<answer_a>
{first}
</answer_a>

<answer_b>
{second}
</answer_b>

Reply with one word: A, B or TIE."""
_VERDICT = re.compile(r"\b(A|B|TIE)\b")
Messages = tuple[ChatMessage, ChatMessage]


def _parse(reply: str) -> str:
    found = _VERDICT.search(reply.strip().upper())
    return found.group(1) if found else ""


@dataclass(frozen=True, slots=True)
class Judging:
    """What judge_pairs leaves: every verdict (earlier runs' too), whether the budget
    stopped it, and what the verdicts cost."""

    verdicts: list[Verdict]
    stopped_by_budget: bool
    spent_usd: float


async def judge_pairs(
    plan: Plan,
    model: ChatModel,
    results: Sequence[Result],
    *,
    judge: Member,
    spent_usd: float = 0.0,
) -> Judging:
    """Every question both an ensemble and one of its members answered (no error), judged
    in both orders; added to the plan's book as they come, and picked up from it. With the
    plan's `max_cost_usd`, what is left of it after `spent_usd` (what asking spent) bounds
    the judging as it does the asking: no judgement starts that could pass it."""
    earlier = await plan.book.verdicts()
    seen = {(v.ensemble, v.member, v.item, v.first) for v in earlier}
    answers = {(r.contestant, r.item): r for r in results if r.error is None}
    questions = {item.key: item.question for item in plan.items}
    pairs = [
        (ensemble.name, member.name, item.key, first)
        for item in plan.items
        for ensemble in plan.contestants
        if ensemble.agent is None
        for member in plan.contestants
        if member.agent is not None and member.ensemble_name == ensemble.name
        for first in ("ensemble", "member")
        if (ensemble.name, item.key) in answers and (member.name, item.key) in answers
    ]
    todo = [pair for pair in pairs if pair not in seen]
    verdicts = list(earlier)
    agent = judge.as_agent()
    ensemble = plan.contestants[0].ensemble.model_copy(update={"agents": (agent,)})
    slots = trio.Semaphore(plan.concurrency)
    spent_before = sum(v.cost_usd or 0.0 for v in earlier)
    budget = Budget(plan.max_cost_usd, spent_usd=spent_usd + spent_before)

    def messages_of(ensemble_name: str, member_name: str, key: str, first: str) -> Messages:
        ours, theirs = answers[(ensemble_name, key)], answers[(member_name, key)]
        a, b = (ours, theirs) if first == "ensemble" else (theirs, ours)
        prompt = JUDGE_PROMPT.format(question=questions[key], first=a.answer, second=b.answer)
        return (ChatMessage("system", judge.system_prompt), ChatMessage("user", prompt))

    async def ask(
        ensemble_name: str, member_name: str, key: str, first: str, reckoned: float
    ) -> None:
        try:
            messages = messages_of(ensemble_name, member_name, key, first)
            run = RunContext(
                request=PipelineRequest(message=messages[-1].content, message_id=f"judge-{key}"),
                ensemble=ensemble,
                model=model,
                request_timeout_s=plan.timeout_s,
            )
            said = ""
            attempts = Attempts()
            calls: list[tuple[str, Usage, int]] = []
            try:
                with trio.fail_after(judge.timeout_s or plan.timeout_s):
                    reply = await ask_agent(run, agent, attempts, messages)
                said = _parse(reply.text)
                if reply.usage is not None:
                    calls.append((reply.model, reply.usage, 1))
            except (ServiceError, trio.TooSlowError):
                said = ""
            calls += [(model, usage, n) for model, (n, usage) in attempts.wasted.items()]
            spent = [_spend(plan, ensemble, agent.name, *call) for call in calls]
        finally:
            slots.release()
        costs = [s.cost_usd for s in spent]
        cost = None if None in costs or not spent else sum(c or 0.0 for c in costs)
        budget.settle(reckoned, cost)
        verdict = Verdict(ensemble_name, member_name, key, first, said, cost)
        verdicts.append(verdict)
        await plan.book.add_verdict(verdict, spent)

    async with trio.open_nursery() as nursery:
        for pair in todo:
            await slots.acquire()
            reckoned = 0.0
            if plan.max_cost_usd is not None:
                reckoned = reckon_call(
                    ensemble,
                    agent,
                    messages_of(*pair),
                    default_base_url=plan.default_base_url,
                    free=plan.free,
                )
            if not await budget.reserve(reckoned):
                slots.release()
                break
            nursery.start_soon(ask, *pair, reckoned)
    spent = budget.spent_usd - spent_usd
    return Judging(verdicts, stopped_by_budget=budget.stopped, spent_usd=round(spent, 8))


def _spend(
    plan: Plan, ensemble: Ensemble, member: str, model: str, usage: Usage, calls: int
) -> ModelSpend:
    """The judge's calls to one model, priced."""
    cost = run_cost(
        ensemble,
        {member: usage},
        {member: model},
        default_base_url=plan.default_base_url,
        free=plan.free,
    )
    return ModelSpend(model, calls, usage.prompt_tokens, usage.completion_tokens, cost[member])


@dataclass(frozen=True, slots=True)
class WinRate:
    ensemble: str
    member: str
    questions: int
    wins: int
    losses: int
    ties: int
    rate: float
    low: float
    high: float
    # Replies that named neither answer, and pairs whose two orders disagreed.
    unreadable: int
    split: int
    cost_usd: float | None


def _winner(said: str, first: str) -> str:
    """Who a verdict favours: "ensemble", "member" or "tie" ("" unreadable)."""
    if said == "TIE":
        return "tie"
    if said in ("A", "B"):
        other = "member" if first == "ensemble" else "ensemble"
        return first if said == "A" else other
    return ""


def win_rates(verdicts: Sequence[Verdict], *, seed: int) -> list[WinRate]:
    by_pair: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for v in verdicts:
        by_pair.setdefault((v.ensemble, v.member), {}).setdefault(v.item, {})[v.first] = _winner(
            v.said, v.first
        )
    rates = []
    for (ensemble, member), items in by_pair.items():
        points, wins, losses, ties, unreadable, split = [], 0, 0, 0, 0, 0
        for orders in items.values():
            if len(orders) < 2:
                continue
            both = set(orders.values())
            if "" in both:
                unreadable += 1
                continue
            if both == {"ensemble"}:
                wins += 1
                points.append(1.0)
            elif both == {"member"}:
                losses += 1
                points.append(0.0)
            else:
                ties += 1
                split += both != {"tie"}
                points.append(0.5)
        low, high = interval(points, seed=seed)
        costs = [v.cost_usd for v in verdicts if (v.ensemble, v.member) == (ensemble, member)]
        cost = (
            None
            if None in costs
            else round(float(sum(Decimal(str(c)) for c in costs if c is not None)), 6)
        )
        rates.append(
            WinRate(
                ensemble=ensemble,
                member=member,
                questions=len(points),
                wins=wins,
                losses=losses,
                ties=ties,
                rate=round(sum(points) / len(points), 4) if points else 0.0,
                low=round(low, 4),
                high=round(high, 4),
                unreadable=unreadable,
                split=split,
                cost_usd=cost,
            )
        )
    return rates
