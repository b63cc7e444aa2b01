"""One fan-out: every agent at once, then the summarizer streams, reported as events.

    send, receive = trio.open_memory_channel[Event](16)
    nursery.start_soon(run_pipeline, request, ensemble, model, send, 120.0)
    async for event in receive:
        ...

The run owns its nursery; whoever cancels the run (a client that hung up) cancels every
agent and the summarizer with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from ..ensemble import Agent, Ensemble
from ..errors import (
    DeadlineExceeded,
    NoAgentSucceeded,
    ServiceError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
)
from ..llm import ChatModel, ChatRequest, Usage
from .events import (
    AgentCompleted,
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
from .prompt import agent_messages, summary_messages

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineRequest:
    message: str
    message_id: str
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    """What one agent task hands back over the results channel."""

    agent: str
    elapsed_ms: float
    text: str | None = None
    usage: Usage | None = None
    error: ServiceError | None = None


def _ms_since(start: float) -> float:
    return round((trio.current_time() - start) * 1000, 1)


async def _ask_agent(
    agent: Agent,
    request: PipelineRequest,
    model: ChatModel,
    results: trio.MemorySendChannel[AgentOutcome],
) -> None:
    """Ask one agent; failures become an outcome here so the sibling agents keep running."""
    async with results:
        started = trio.current_time()
        call = ChatRequest(
            model=agent.model or "",
            messages=agent_messages(agent, request.message),
            caller=agent.name,
        )
        error: ServiceError
        try:
            with trio.fail_after(agent.timeout_s or float("inf")):
                completion = await model.complete(call)
        except trio.TooSlowError:
            error = UpstreamTimeout(f"{agent.name} did not answer within {agent.timeout_s:g} s")
        except UpstreamError as exc:
            error = exc
        except Exception as exc:
            # A bug in one model adapter must not take the other agents down with it.
            log.exception("agent %s crashed", agent.name, extra={"message_id": request.message_id})
            error = ServiceError()
            error.__cause__ = exc
        else:
            if completion.text.strip():
                outcome = AgentOutcome(
                    agent.name, _ms_since(started), text=completion.text, usage=completion.usage
                )
                await results.send(outcome)
                return
            error = UpstreamBadResponse(f"{agent.name} returned an empty answer")
        log.warning(
            "agent %s failed: %s",
            agent.name,
            error.code,
            exc_info=error if error.__cause__ else None,
            extra={"message_id": request.message_id, "agent": agent.name},
        )
        await results.send(AgentOutcome(agent.name, _ms_since(started), error=error))


async def _gather_answers(
    request: PipelineRequest,
    ensemble: Ensemble,
    model: ChatModel,
    events: trio.MemorySendChannel[Event],
    usage: dict[str, Usage],
) -> list[AgentOutcome]:
    """Run every agent concurrently; report each outcome (and its usage) as it arrives."""
    outcomes: list[AgentOutcome] = []
    results_in, results_out = trio.open_memory_channel[AgentOutcome](len(ensemble.agents))
    async with trio.open_nursery() as agents_nursery:
        async with results_in:
            for agent in ensemble.agents:
                await events.send(AgentStarted(agent=agent.name))
                agents_nursery.start_soon(
                    _ask_agent, agent, request, model, results_in.clone(), name=agent.name
                )
        async with results_out:
            async for outcome in results_out:
                outcomes.append(outcome)
                if outcome.usage is not None:
                    usage[outcome.agent] = outcome.usage
                if outcome.error is None:
                    await events.send(AgentCompleted(agent=outcome.agent, text=outcome.text or ""))
                else:
                    public = PublicError.of(outcome.error)
                    await events.send(AgentFailed(agent=outcome.agent, error=public))
    return outcomes


async def _fan_out_and_summarize(
    request: PipelineRequest,
    ensemble: Ensemble,
    model: ChatModel,
    events: trio.MemorySendChannel[Event],
    started: float,
    usage: dict[str, Usage],
) -> Done | Failed:
    """Fills `usage` as calls finish, so a caller that cuts the run short still has it."""
    outcomes = await _gather_answers(request, ensemble, model, events, usage)
    by_agent = {outcome.agent: outcome for outcome in outcomes}
    agents_ms = {o.agent: o.elapsed_ms for o in outcomes}
    ordered = [by_agent[agent.name] for agent in ensemble.agents]
    answers = [(o.agent, o.text or "") for o in ordered if o.error is None]
    missing = [o.agent for o in ordered if o.error is not None]
    if not answers:
        return Failed(source="agents", error=PublicError.of(NoAgentSucceeded()), usage=usage)

    summarizer = ensemble.summarizer
    await events.send(
        SummaryStarted(
            summarizer=summarizer.name,
            agents=tuple(name for name, _ in answers),
            missing=tuple(missing),
        )
    )
    call = ChatRequest(
        model=summarizer.model or "",
        messages=summary_messages(summarizer, request.message, answers, missing),
        caller=summarizer.name,
    )
    first_token_ms: float | None = None
    error: ServiceError | None = None
    try:
        with trio.fail_after(summarizer.timeout_s or float("inf")):
            async with model.stream(call) as stream:
                async for text in stream:
                    if first_token_ms is None:
                        first_token_ms = _ms_since(started)
                    await events.send(SummaryDelta(summarizer=summarizer.name, text=text))
            if stream.usage is not None:
                usage[summarizer.name] = stream.usage
    except trio.TooSlowError:
        error = UpstreamTimeout(f"{summarizer.name} did not finish within its timeout")
    except UpstreamError as exc:
        error = exc
    if error is None and first_token_ms is None:
        error = UpstreamBadResponse(f"{summarizer.name} returned an empty summary")
    if error is not None:
        log.warning(
            "summarizer %s failed: %s",
            summarizer.name,
            error.code,
            exc_info=error if error.__cause__ else None,
            extra={"message_id": request.message_id, "agent": summarizer.name},
        )
        return Failed(source=summarizer.name, error=PublicError.of(error), usage=usage)
    timings = Timings(
        agents_ms=agents_ms, first_token_ms=first_token_ms, total_ms=_ms_since(started)
    )
    return Done(summarizer=summarizer.name, usage=usage, timings=timings)


async def run_pipeline(
    request: PipelineRequest,
    ensemble: Ensemble,
    model: ChatModel,
    events: trio.MemorySendChannel[Event],
    request_timeout_s: float,
) -> None:
    """Send every event of one run to `events`, ending with exactly one `Done` or `Failed`.

    Closes `events` when it returns. Cancellation (a client that hung up) propagates.
    """
    async with events:
        started = trio.current_time()
        terminal: Done | Failed | None = None
        usage: dict[str, Usage] = {}
        with trio.move_on_after(request_timeout_s):
            terminal = await _fan_out_and_summarize(
                request, ensemble, model, events, started, usage
            )
        if terminal is None:
            log.warning(
                "request deadline of %g s exceeded",
                request_timeout_s,
                extra={"message_id": request.message_id},
            )
            terminal = Failed(
                source="pipeline", error=PublicError.of(DeadlineExceeded()), usage=usage
            )
        await events.send(terminal)
