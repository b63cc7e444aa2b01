"""A step that asks members: every one at once, each outcome reported as it arrives.

    gathered = Gathered()
    await gather_answers(run, events, gathered, Ask(run.ensemble.agents, prompt))
    shortfall = quorum_shortfall(run, gathered)     # None: enough answers to go on

Each agent runs in its own task under its own timeout and turns its failure into an outcome,
so its siblings keep running. Once `min_agents` have answered, the stragglers get
`straggler_grace_ms` (if set) and are then cut; once the quorum is out of reach, the rest
are cut at once. `gathered` is filled in as this happens, so a run cut short by its
deadline can still report every agent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import trio
from opentelemetry.trace import Span

from ..ensemble import Agent
from ..ensemble.prices import run_cost
from ..errors import (
    AgentCut,
    NoAgentSucceeded,
    QuorumNotMet,
    ServiceError,
    UpstreamError,
    UpstreamTimeout,
)
from ..events import (
    FIRST_STEP,
    AgentCompleted,
    AgentCounts,
    AgentFailed,
    AgentRetrying,
    AgentStarted,
    Event,
    PublicError,
    Step,
)
from ..llm import ChatMessage, Usage
from ..telemetry.tracing import end_span, member_span, only_cancelled, record_answer
from .agent_text import AgentText
from .answers import Answer, ask_agent
from .calls import Attempts
from .coalesce import DeltaCoalescer
from .context import RunContext
from .timing import ms_since

log = logging.getLogger(__name__)

# The messages a step sends one member (rendered in the member's own task: a template that
# fails there fails that member only).
Prompt = Callable[[Agent], Sequence[ChatMessage]]


@dataclass(frozen=True, slots=True)
class Ask:
    """One step of a deliberation that asks members: who, with what, and which step it is."""

    members: tuple[Agent, ...]
    prompt: Prompt
    step: Step = FIRST_STEP
    # A step that judges answers (reviews, a selection) rather than giving them: no quorum,
    # so one member's failure never cuts the others (straggler grace still applies).
    advice: bool = False


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    """What one agent task hands back over the results channel."""

    agent: str
    elapsed_ms: float
    attempts: Attempts
    answer: Answer | None = None
    error: ServiceError | None = None


@dataclass
class Gathered:
    """A step's progress, filled in as it happens so a deadline can report it too."""

    step: Step = FIRST_STEP
    # Names in the order the agents are listed, all of them before any agent runs.
    started: list[str] = field(default_factory=list)
    outcomes: list[AgentOutcome] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)
    attempts: dict[str, Attempts] = field(default_factory=dict)
    # Tokens each agent that answered used, in the order the answers came.
    usage: dict[str, Usage] = field(default_factory=dict)

    def counts(self) -> AgentCounts:
        succeeded = sum(1 for o in self.outcomes if o.error is None)
        return AgentCounts(
            succeeded=succeeded, failed=len(self.outcomes) - succeeded, cut=len(self.cut)
        )

    def unfinished(self) -> list[str]:
        """Agents started that have neither an outcome nor been cut."""
        ended = {o.agent for o in self.outcomes} | set(self.cut)
        return [name for name in self.started if name not in ended]

    def answers(self) -> list[tuple[str, Answer]]:
        """(agent, answer) of every agent that answered, in the order the agents are listed."""
        by_agent = {o.agent: o.answer for o in self.outcomes if o.answer is not None}
        return [(name, by_agent[name]) for name in self.started if name in by_agent]

    def missing(self) -> list[str]:
        """Agents without an answer (failed or cut), in the order they are listed."""
        answered = {o.agent for o in self.outcomes if o.answer is not None}
        return [name for name in self.started if name not in answered]

    def elapsed_ms(self) -> dict[str, float]:
        """Each agent's own duration, for those with an outcome."""
        return {o.agent: o.elapsed_ms for o in self.outcomes}


async def _ask_agent(
    run: RunContext,
    agent: Agent,
    prompt: Prompt,
    attempts: Attempts,
    text: AgentText | None,
    results: trio.MemorySendChannel[AgentOutcome],
    cutting: trio.CancelScope,
) -> None:
    """Ask one agent; failures become an outcome here so the sibling agents keep running.
    `cutting` is the scope that cuts the agents still running when the step moves on."""
    async with results:
        with member_span("agent", agent.name, agent.model or "", run.ensemble_version) as span:
            await _ask_agent_in_span(run, agent, prompt, attempts, text, results, cutting, span)


async def _ask_agent_in_span(
    run: RunContext,
    agent: Agent,
    prompt: Prompt,
    attempts: Attempts,
    text: AgentText | None,
    results: trio.MemorySendChannel[AgentOutcome],
    cutting: trio.CancelScope,
    span: Span,
) -> None:
    started = trio.current_time()
    error: ServiceError
    try:
        try:
            with trio.fail_after(agent.timeout_s or float("inf")):
                answer = await ask_agent(run, agent, attempts, prompt(agent), text)
        finally:
            span.set_attribute("fanout.retries", attempts.retries)
    except BaseException as exc:
        if not isinstance(exc, Exception) and cutting.cancel_called and only_cancelled(exc):
            end_span(span, "cut")
            raise
        if not isinstance(exc, Exception):
            raise
        # Built here, not for the agent's whole life: ask_agent holds its own meanwhile.
        context = run.log_context(agent.name)
        error = _agent_error(agent, exc, context)
    else:
        record_answer(span, answer.model, answer.usage)
        outcome = AgentOutcome(agent.name, ms_since(started), attempts, answer=answer)
        _hand_over(results, outcome)
        return
    log.warning(
        "agent %s failed after %d attempt(s): %s",
        agent.name,
        attempts.count,
        error.code,
        exc_info=error if error.__cause__ else None,
        extra=context,
    )
    end_span(span, "failed", error.code)
    _hand_over(results, AgentOutcome(agent.name, ms_since(started), attempts, error=error))


def _agent_error(agent: Agent, exc: Exception, context: dict[str, object]) -> ServiceError:
    """What an agent's failure is reported as."""
    if isinstance(exc, trio.TooSlowError):
        return UpstreamTimeout(f"{agent.name} did not answer within {agent.timeout_s:g} s")
    if isinstance(exc, UpstreamError):
        return exc
    # A bug in one model adapter must not take the other agents down with it.
    log.exception("agent %s crashed", agent.name, exc_info=exc, extra=context)
    error = ServiceError()
    error.__cause__ = exc
    return error


def _hand_over(results: trio.MemorySendChannel[AgentOutcome], outcome: AgentOutcome) -> None:
    """Pass an outcome on without a checkpoint, so a straggler deadline that fires now cannot
    drop an answer already in hand (the channel holds one outcome per agent: never full)."""
    with contextlib.suppress(trio.BrokenResourceError):
        # Broken: the run is over (the client left); nobody needs the outcome.
        results.send_nowait(outcome)


def _report_retry(
    events: trio.MemorySendChannel[Event],
    step: Step,
    agent: str,
    attempt: int,
    model: str,
    error: UpstreamError,
    delay_s: float,
) -> None:
    """Tell the client an agent is retrying. Advisory: never waits, so a full channel (the
    client not reading) drops it rather than holding the agent."""
    retrying = AgentRetrying(
        agent=agent,
        attempt=attempt,
        model=model,
        error=PublicError.of(error),
        delay_ms=round(delay_s * 1000, 1),
        step=step,
    )
    with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
        events.send_nowait(retrying)


async def gather_answers(
    run: RunContext,
    events: trio.MemorySendChannel[Event],
    gathered: Gathered,
    ask: Ask,
    coalescer: DeltaCoalescer | None = None,
) -> None:
    """Ask every member of `ask` concurrently and report each outcome (and its usage) as it
    arrives; with a `coalescer`, each answer streams through it as it comes.

    Once `min_agents` have answered, the stragglers get `straggler_grace_ms` (if set) and are
    then cut; once the quorum can no longer be met, the rest are cut at once.
    """
    ensemble = run.ensemble
    members = ask.members
    step = gathered.step = ask.step
    attempts = gathered.attempts
    attempts |= {
        agent.name: Attempts(on_retry=partial(_report_retry, events, step, agent.name))
        for agent in members
    }
    outcomes = gathered.outcomes
    succeeded = failed = 0
    started = trio.current_time()
    results_in, results_out = trio.open_memory_channel[AgentOutcome](len(members))
    # Cancels the agents still running when the step moves on without them.
    straggler_scope = trio.CancelScope()

    # Every start is reported before any agent runs, so no outcome can come before them.
    for agent in members:
        await events.send(AgentStarted(agent=agent.name, step=step))
        gathered.started.append(agent.name)

    async def run_agents() -> None:
        with straggler_scope:
            async with trio.open_nursery() as agents_nursery:
                async with results_in:
                    for agent in members:
                        agents_nursery.start_soon(
                            _ask_agent,
                            run,
                            agent,
                            ask.prompt,
                            attempts[agent.name],
                            (
                                AgentText(events, coalescer, agent=agent.name, step=step)
                                if coalescer is not None
                                else None
                            ),
                            results_in.clone(),
                            straggler_scope,
                            name=agent.name,
                        )

    cut_reason: AgentCut | None = None
    async with trio.open_nursery() as gather_nursery:
        gather_nursery.start_soon(run_agents)
        async with results_out:
            async for outcome in results_out:
                outcomes.append(outcome)
                if outcome.answer is not None and outcome.answer.usage is not None:
                    gathered.usage[outcome.agent] = outcome.answer.usage
                if outcome.answer is not None:
                    succeeded += 1
                    await events.send(
                        AgentCompleted(
                            agent=outcome.agent,
                            text=outcome.answer.text,
                            model=outcome.answer.model,
                            attempts=outcome.attempts.count,
                            retries=outcome.attempts.retries,
                            elapsed_ms=outcome.elapsed_ms,
                            step=step,
                            cost_usd=_cost(run, outcome.agent, outcome.answer),
                            usage=outcome.answer.usage,
                        )
                    )
                else:
                    failed += 1
                    error = outcome.error or ServiceError()
                    await events.send(
                        AgentFailed(
                            agent=outcome.agent,
                            error=PublicError.of(error),
                            attempts=outcome.attempts.count,
                            retries=outcome.attempts.retries,
                            elapsed_ms=outcome.elapsed_ms,
                            step=step,
                        )
                    )
                waiting = len(members) - succeeded - failed
                if waiting and not ask.advice and len(members) - failed < ensemble.min_agents:
                    cut_reason = AgentCut("stopped: too few agents can answer to reach the quorum")
                    straggler_scope.cancel()
                elif (
                    waiting
                    and succeeded >= ensemble.min_agents
                    and ensemble.straggler_grace_ms is not None
                    and cut_reason is None
                ):
                    cut_reason = AgentCut()
                    straggler_scope.deadline = min(
                        straggler_scope.deadline,
                        trio.current_time() + ensemble.straggler_grace_ms / 1000,
                    )

    await report_cut(run, events, gathered, cut_reason or AgentCut(), started)


def _cost(run: RunContext, agent: str, answer: Answer) -> float | None:
    """The answering call's dollars (ensemble/prices.py), None when its price is unknown."""
    if answer.usage is None:
        return None
    return run_cost(run.ensemble, {agent: answer.usage}, {agent: answer.model}, free=run.free).get(
        agent
    )


async def report_cut(
    run: RunContext,
    events: trio.MemorySendChannel[Event],
    gathered: Gathered,
    reason: ServiceError,
    started: float,
) -> None:
    """Report every agent still unfinished as failed with `reason`, and count it as cut."""
    for name in gathered.unfinished():
        gathered.cut.append(name)
        log.info(
            "agent %s cut after %g ms: %s",
            name,
            ms_since(started),
            reason.public_message,
            extra=run.log_context(name),
        )
        attempts = gathered.attempts.get(name) or Attempts()
        await events.send(
            AgentFailed(
                agent=name,
                error=PublicError.of(reason),
                attempts=attempts.count,
                retries=attempts.retries,
                elapsed_ms=ms_since(started),
                step=gathered.step,
            )
        )


def quorum_shortfall(run: RunContext, gathered: Gathered) -> ServiceError | None:
    """Why the answers gathered are too few to summarize; None when they are enough."""
    ensemble = run.ensemble
    answered = len(gathered.answers())
    if not answered and ensemble.min_agents == 1:
        return NoAgentSucceeded()
    if answered < ensemble.min_agents:
        error = QuorumNotMet(
            f"only {answered} of the {ensemble.min_agents} agents needed produced an answer"
        )
        log.warning("quorum not met: %s", error.public_message, extra=run.log_context())
        return error
    return None
