"""One fan-out: every agent at once, then the summarizer streams, reported as events.

    send, receive = trio.open_memory_channel[Event](16)
    nursery.start_soon(run_pipeline, RunContext(request, ensemble, model, 120.0), send)
    async for event in receive:
        ...

The run owns its nursery; whoever cancels the run (a client that hung up) cancels every
agent and the summarizer with it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import trio
from opentelemetry.trace import Span

from ..ensemble import Agent
from ..ensemble.templates import TemplateFailed
from ..errors import (
    AgentCut,
    DeadlineExceeded,
    NoAgentSucceeded,
    QuorumNotMet,
    ServiceError,
    UpstreamError,
    UpstreamTimeout,
)
from ..events import (
    AgentCompleted,
    AgentCounts,
    AgentFailed,
    AgentStarted,
    Done,
    Event,
    Failed,
    PublicError,
    SummaryDelta,
    SummaryStarted,
    Timings,
)
from ..llm import Usage
from ..telemetry.tracing import end_span, member_span, only_cancelled, record_answer
from .answers import Answer, ask_agent
from .calls import Attempts
from .context import RunContext
from .prompt import summary_messages
from .summary import stream_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    """What one agent task hands back over the results channel."""

    agent: str
    elapsed_ms: float
    attempts: Attempts
    answer: Answer | None = None
    error: ServiceError | None = None


def _ms_since(start: float) -> float:
    return round((trio.current_time() - start) * 1000, 1)


async def _ask_agent(
    run: RunContext,
    agent: Agent,
    attempts: Attempts,
    results: trio.MemorySendChannel[AgentOutcome],
    cutting: trio.CancelScope,
) -> None:
    """Ask one agent; failures become an outcome here so the sibling agents keep running.
    `cutting` is the scope that cuts the agents still running when the summary starts."""
    async with results:
        with member_span("agent", agent.name, agent.model or "", run.ensemble_version) as span:
            await _ask_agent_in_span(run, agent, attempts, results, cutting, span)


async def _ask_agent_in_span(
    run: RunContext,
    agent: Agent,
    attempts: Attempts,
    results: trio.MemorySendChannel[AgentOutcome],
    cutting: trio.CancelScope,
    span: Span,
) -> None:
    started = trio.current_time()
    context = run.log_context(agent.name)
    error: ServiceError
    try:
        try:
            with trio.fail_after(agent.timeout_s or float("inf")):
                answer = await ask_agent(run, agent, attempts)
        finally:
            span.set_attribute("fanout.retries", attempts.retries)
    except BaseException as exc:
        if not isinstance(exc, Exception) and cutting.cancel_called and only_cancelled(exc):
            end_span(span, "cut")
            raise
        if not isinstance(exc, Exception):
            raise
        error = _agent_error(agent, exc, context)
    else:
        record_answer(span, answer.model, answer.usage)
        outcome = AgentOutcome(agent.name, _ms_since(started), attempts, answer=answer)
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
    _hand_over(results, AgentOutcome(agent.name, _ms_since(started), attempts, error=error))


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


@dataclass
class _Gathered:
    """The agents' progress, filled in as it happens so a deadline can report it too."""

    started: list[str] = field(default_factory=list)
    outcomes: list[AgentOutcome] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)
    attempts: dict[str, Attempts] = field(default_factory=dict)

    def counts(self) -> AgentCounts:
        succeeded = sum(1 for o in self.outcomes if o.error is None)
        return AgentCounts(
            succeeded=succeeded, failed=len(self.outcomes) - succeeded, cut=len(self.cut)
        )

    def unfinished(self) -> list[str]:
        """Agents started that have neither an outcome nor been cut."""
        ended = {o.agent for o in self.outcomes} | set(self.cut)
        return [name for name in self.started if name not in ended]


async def _gather_answers(
    run: RunContext,
    events: trio.MemorySendChannel[Event],
    usage: dict[str, Usage],
    gathered: _Gathered,
) -> None:
    """Run every agent concurrently and report each outcome (and its usage) as it arrives.

    Once `min_agents` have answered, the stragglers get `straggler_grace_ms` (if set) and are
    then cut; once the quorum can no longer be met, the rest are cut at once.
    """
    ensemble = run.ensemble
    attempts = gathered.attempts
    attempts |= {agent.name: Attempts() for agent in ensemble.agents}
    outcomes = gathered.outcomes
    succeeded = failed = 0
    started = trio.current_time()
    results_in, results_out = trio.open_memory_channel[AgentOutcome](len(ensemble.agents))
    # Cancels the agents still running when the summary starts without them.
    straggler_scope = trio.CancelScope()

    # Every start is reported before any agent runs, so no outcome can come before them.
    for agent in ensemble.agents:
        await events.send(AgentStarted(agent=agent.name))
        gathered.started.append(agent.name)

    async def run_agents() -> None:
        with straggler_scope:
            async with trio.open_nursery() as agents_nursery:
                async with results_in:
                    for agent in ensemble.agents:
                        agents_nursery.start_soon(
                            _ask_agent,
                            run,
                            agent,
                            attempts[agent.name],
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
                    usage[outcome.agent] = outcome.answer.usage
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
                        )
                    )
                waiting = len(ensemble.agents) - succeeded - failed
                if waiting and len(ensemble.agents) - failed < ensemble.min_agents:
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

    await _report_cut(run, events, gathered, cut_reason or AgentCut(), started)


async def _report_cut(
    run: RunContext,
    events: trio.MemorySendChannel[Event],
    gathered: _Gathered,
    reason: ServiceError,
    started: float,
) -> None:
    """Report every agent still unfinished as failed with `reason`, and count it as cut."""
    for name in gathered.unfinished():
        gathered.cut.append(name)
        log.info(
            "agent %s cut after %g ms: %s",
            name,
            _ms_since(started),
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
                elapsed_ms=_ms_since(started),
            )
        )


async def _fan_out_and_summarize(
    run: RunContext,
    events: trio.MemorySendChannel[Event],
    started: float,
    usage: dict[str, Usage],
    gathered: _Gathered,
) -> Done | Failed:
    """Fills `usage` and `gathered` as calls finish, so a caller that cuts the run short
    still has them."""
    ensemble = run.ensemble
    await _gather_answers(run, events, usage, gathered)
    counts = gathered.counts()
    by_agent = {outcome.agent: outcome for outcome in gathered.outcomes}
    agents_ms = {o.agent: o.elapsed_ms for o in gathered.outcomes}
    answers = [
        (agent.name, by_agent[agent.name].answer)
        for agent in ensemble.agents
        if agent.name in by_agent and by_agent[agent.name].answer is not None
    ]
    missing = [agent.name for agent in ensemble.agents if agent.name not in dict(answers)]
    if not answers and ensemble.min_agents == 1:
        error: ServiceError = NoAgentSucceeded()
        return Failed(source="agents", error=PublicError.of(error), usage=usage, agents=counts)
    if len(answers) < ensemble.min_agents:
        error = QuorumNotMet(
            f"only {len(answers)} of the {ensemble.min_agents} agents needed produced an answer"
        )
        log.warning("quorum not met: %s", error.public_message, extra=run.log_context())
        return Failed(source="agents", error=PublicError.of(error), usage=usage, agents=counts)

    summarizer = ensemble.summarizer
    await events.send(
        SummaryStarted(
            summarizer=summarizer.name,
            agents=tuple(name for name, _ in answers),
            missing=tuple(missing),
            ensemble_version=run.ensemble_version,
        )
    )
    texts = [(name, answer.text) for name, answer in answers if answer is not None]
    try:
        messages = summary_messages(
            summarizer,
            run.request.message,
            texts,
            missing,
            max_answer_chars=ensemble.max_answer_chars,
        )
    except TemplateFailed as exc:
        log.error("%s", exc, exc_info=exc, extra=run.log_context(summarizer.name))
        return Failed(
            source=summarizer.name,
            error=PublicError.of(ServiceError()),
            usage=usage,
            agents=counts,
        )
    first_token_ms: float | None = None

    context = run.log_context(summarizer.name)
    attempts = Attempts()
    failure: ServiceError | None = None
    with member_span(
        "summarizer", summarizer.name, summarizer.model or "", run.ensemble_version
    ) as span:

        async def send_text(text: str) -> None:
            nonlocal first_token_ms
            if first_token_ms is None:
                first_token_ms = _ms_since(started)
                span.add_event("gen_ai.first_token", {"fanout.first_token_ms": first_token_ms})
            await events.send(SummaryDelta(summarizer=summarizer.name, text=text))

        try:
            with trio.fail_after(summarizer.timeout_s or float("inf")):
                result = await stream_summary(
                    run, messages, attempts, send_text=send_text, events=events
                )
        except trio.TooSlowError:
            failure = UpstreamTimeout(f"{summarizer.name} did not finish within its timeout")
        except UpstreamError as exc:
            failure = exc
        finally:
            span.set_attribute("fanout.retries", attempts.retries)
        if failure is not None:
            end_span(span, "failed", failure.code)
        else:
            record_answer(span, result.model, result.usage)
    if failure is not None:
        log.warning(
            "summarizer %s failed after %d attempt(s): %s",
            summarizer.name,
            attempts.count,
            failure.code,
            exc_info=failure if failure.__cause__ else None,
            extra=context,
        )
        return Failed(
            source=summarizer.name, error=PublicError.of(failure), usage=usage, agents=counts
        )
    if result.usage is not None:
        usage[summarizer.name] = result.usage
    models = {name: answer.model for name, answer in answers if answer is not None}
    models[summarizer.name] = result.model
    timings = Timings(
        agents_ms=agents_ms, first_token_ms=first_token_ms, total_ms=_ms_since(started)
    )
    return Done(
        summarizer=summarizer.name,
        usage=usage,
        timings=timings,
        agents=counts,
        models=models,
        ensemble_version=run.ensemble_version,
    )


async def run_pipeline(run: RunContext, events: trio.MemorySendChannel[Event]) -> None:
    """Send every event of one run to `events`, ending with exactly one `Done` or `Failed`.

    Closes `events` when it returns. Cancellation (a client that hung up) propagates.
    """
    async with events:
        started = trio.current_time()
        terminal: Done | Failed | None = None
        usage: dict[str, Usage] = {}
        gathered = _Gathered()
        with trio.move_on_after(run.request_timeout_s):
            terminal = await _fan_out_and_summarize(run, events, started, usage, gathered)
        if terminal is None:
            log.warning(
                "request deadline of %g s exceeded",
                run.request_timeout_s,
                extra=run.log_context(),
            )
            deadline = DeadlineExceeded()
            await _report_cut(run, events, gathered, deadline, started)
            terminal = Failed(
                source="pipeline",
                error=PublicError.of(deadline),
                usage=usage,
                agents=gathered.counts() if gathered.started else None,
            )
        await events.send(terminal)
