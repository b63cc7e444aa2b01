"""What a strategy's steps are made of, bound to one run: ask members (gather.py), check the
quorum, stream the summary (summarize.py). The run's driver makes one and hands it to the
strategy; it keeps the step running, so a deadline can report the step it cut (each
step's answers are the strategy's: `ask` returns them).

    answers = await steps.ask(Ask(run.ensemble.agents, steps.first_answer))
    terminal = steps.shortfall(answers) or await steps.summarize(answers)
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ..ensemble import Agent
from ..errors import ServiceError
from ..events import Done, Event, Failed, PublicError
from ..llm import ChatMessage
from .coalesce import DeltaCoalescer
from .context import RunContext
from .gather import Ask, Gathered, gather_answers, quorum_shortfall, report_cut
from .prompt import agent_messages
from .summarize import summarize


class Steps:
    def __init__(
        self,
        run: RunContext,
        events: trio.MemorySendChannel[Event],
        coalescer: DeltaCoalescer | None = None,
    ) -> None:
        self.run = run
        self.events = events
        # Where the agents' pieces of text go on their way out; None: answers come whole.
        self.coalescer = coalescer
        self.started = trio.current_time()
        # The step that asks members now, or did last.
        self.current = Gathered()

    def first_answer(self, agent: Agent) -> Sequence[ChatMessage]:
        """The prompt of a member's first answer: its templates, the question, the history."""
        run = self.run
        return agent_messages(agent, run.request.message, run.history, run.client_context)

    async def ask(self, ask: Ask) -> Gathered:
        """Ask the members of `ask` at once; their outcomes, once every one has one."""
        gathered = self.current = Gathered(step=ask.step)
        await gather_answers(self.run, self.events, gathered, ask, self.coalescer)
        return gathered

    def shortfall(self, gathered: Gathered) -> Failed | None:
        """The run's end when the answers are too few to go on; None when they are enough."""
        error = quorum_shortfall(self.run, gathered)
        if error is None:
            return None
        return Failed(
            source="agents",
            error=PublicError.of(error),
            usage=gathered.usage,
            agents=gathered.counts(),
        )

    async def summarize(self, gathered: Gathered) -> Done | Failed:
        """The summarizer combines `gathered`'s answers, streamed: the run's terminal event."""
        return await summarize(self.run, self.events, gathered, self.started)

    async def cut_short(self, error: ServiceError) -> Failed:
        """The run's end when `error` (its deadline) stopped the strategy midway."""
        gathered = self.current
        await report_cut(self.run, self.events, gathered, error, self.started)
        return Failed(
            source="pipeline",
            error=PublicError.of(error),
            usage=gathered.usage,
            agents=gathered.counts() if gathered.started else None,
        )
