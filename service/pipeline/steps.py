"""What a strategy's steps are made of, bound to one run: ask members (gather.py), check the
quorum, stream the summary (summarize.py). The run's driver makes one and hands it to the
strategy; it keeps the step running, so a deadline can report the step it cut (each
step's answers are the strategy's: `ask` returns them).

    answers = await steps.ask(Ask(run.ensemble.agents, steps.first_answer))
    terminal = steps.shortfall(answers) or await steps.summarize(answers)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import trio

from ..ensemble import Agent
from ..ensemble.prices import run_cost
from ..errors import ServiceError
from ..events import (
    AnswerChosen,
    Done,
    Event,
    Failed,
    PublicError,
    RoundCompleted,
    RoundStarted,
    SummaryDelta,
    SummaryStarted,
    Timings,
    VoteTally,
)
from ..llm import ChatMessage
from .ballots import count_votes
from .coalesce import DeltaCoalescer
from .context import RunContext
from .gather import Ask, Gathered, gather_answers, quorum_shortfall, report_cut
from .prompt import agent_messages
from .spend import Spend
from .summarize import Briefing, summarize
from .timing import ms_since


class Steps:
    def __init__(
        self,
        run: RunContext,
        events: trio.MemorySendChannel[Event],
        coalescer: DeltaCoalescer | None = None,
        spend: Spend | None = None,
    ) -> None:
        self.run = run
        self.events = events
        # Where the agents' pieces of text go on their way out; None: answers come whole.
        self.coalescer = coalescer
        self.started = trio.current_time()
        # The step that asks members now, or did last.
        self.current = Gathered()
        # What the calls of every step so far used, kept as each step ends (or is cut).
        self.spend = spend or Spend(run.ensemble, free=run.free)

    def first_answer(self, agent: Agent) -> Sequence[ChatMessage]:
        """The prompt of a member's first answer: its templates, the question, the history."""
        run = self.run
        return agent_messages(agent, run.request.message, run.history, run.client_context)

    async def ask(self, ask: Ask) -> Gathered:
        """Ask the members of `ask` at once; their outcomes, once every one has one."""
        gathered = self.current = Gathered(step=ask.step)
        try:
            await gather_answers(self.run, self.events, gathered, ask, self.coalescer)
        finally:
            for name, usage in gathered.usage.items():
                self.spend.add(name, usage, None)
            for name, attempts in gathered.attempts.items():
                self.spend.add(name, None, attempts)
        return gathered

    async def round(self, ask: Ask) -> Gathered:
        """`ask`, announced as a step of a strategy with several (`round.started` before,
        `round.completed` after)."""
        strategy = self.run.ensemble.strategy
        names = tuple(member.name for member in ask.members)
        await self.events.send(RoundStarted(strategy=strategy, step=ask.step, agents=names))
        gathered = await self.ask(ask)
        answered = tuple(name for name, _ in gathered.answers())
        missing = tuple(gathered.missing())
        await self.events.send(
            RoundCompleted(strategy=strategy, step=ask.step, answered=answered, missing=missing)
        )
        return gathered

    async def vote(self, gathered: Gathered, method: str) -> Done:
        """The answer most agents of `gathered` gave (or the one most like the rest) is the
        reply, with the tally and the reason."""
        answers = {name: answer.text for name, answer in gathered.answers()}
        tally = count_votes(answers, method)
        strategy = self.run.ensemble.strategy
        await self.events.send(VoteTally(strategy=strategy, method=method, groups=tally.groups))
        return await self.give_answer(gathered, tally.chosen, tally.reason)

    async def give_answer(self, gathered: Gathered, agent: str, reason: str) -> Done:
        """`agent`'s answer in `gathered` is the reply, as it is: no call writes it."""
        await self.events.send(AnswerChosen(agent=agent, reason=reason))
        chosen = dict(gathered.answers())[agent]
        run = self.run
        await self.events.send(
            SummaryStarted(
                summarizer=agent,
                agents=tuple(name for name, _ in gathered.answers()),
                missing=tuple(gathered.missing()),
                ensemble_version=run.ensemble_version,
            )
        )
        await self.events.send(SummaryDelta(summarizer=agent, text=chosen.text))
        elapsed = ms_since(self.started)
        models = {name: answer.model for name, answer in gathered.answers()}
        return Done(
            summarizer=agent,
            usage=dict(self.spend.usage),
            timings=Timings(
                agents_ms=gathered.elapsed_ms(), first_token_ms=elapsed, total_ms=elapsed
            ),
            agents=gathered.counts(),
            models=models,
            ensemble_version=run.ensemble_version,
            finish_reason="stop",
            cost=run_cost(run.ensemble, self.spend.usage, models, free=run.free),
            wasted=self.spend.wasted.priced(run.ensemble, free=run.free),
        )

    def shortfall(self, gathered: Gathered) -> Failed | None:
        """The run's end when the answers are too few to go on; None when they are enough."""
        error = quorum_shortfall(self.run, gathered)
        if error is None:
            return None
        return replace(self.spend.failed("agents", PublicError.of(error)), agents=gathered.counts())

    async def summarize(
        self, gathered: Gathered, briefing: Briefing | None = None
    ) -> Done | Failed:
        """The summarizer combines `gathered`'s answers, streamed: the run's terminal event.
        The tokens are those of every step so far."""
        briefing = replace(
            briefing or Briefing(), usage=dict(self.spend.usage), wasted=self.spend.wasted
        )
        return await summarize(self.run, self.events, gathered, self.started, briefing)

    async def cut_short(self, error: ServiceError) -> Failed:
        """The run's end when `error` (its deadline) stopped the strategy midway."""
        gathered = self.current
        await report_cut(self.run, self.events, gathered, error, self.started)
        return replace(
            self.spend.failed("pipeline", PublicError.of(error)),
            agents=gathered.counts() if gathered.started else None,
        )
