"""One fan-out: every agent at once, then the summarizer streams, reported as events.

    send, receive = trio.open_memory_channel[Event](16)
    nursery.start_soon(run_pipeline, RunContext(request, ensemble, model, 120.0), send)
    async for event in receive:
        ...

The run owns its nursery; whoever cancels the run (a client that hung up) cancels every
agent and the summarizer with it. Its phases are `gather.py` (the agents, the quorum, the
stragglers) and `summarize.py` (the summary and the terminal event); this module puts them
in order under the request's deadline.
"""

from __future__ import annotations

import logging

import trio

from ..errors import DeadlineExceeded
from ..events import Done, Event, Failed, PublicError
from .context import RunContext
from .gather import Gathered, gather_answers, quorum_shortfall, report_cut
from .summarize import summarize

log = logging.getLogger(__name__)


async def _fan_out_and_summarize(
    run: RunContext,
    events: trio.MemorySendChannel[Event],
    started: float,
    gathered: Gathered,
) -> Done | Failed:
    """Fills `gathered` as calls finish, so a caller that cuts the run short still has it."""
    await gather_answers(run, events, gathered)
    shortfall = quorum_shortfall(run, gathered)
    if shortfall is not None:
        return Failed(
            source="agents",
            error=PublicError.of(shortfall),
            usage=gathered.usage,
            agents=gathered.counts(),
        )
    return await summarize(run, events, gathered, started)


async def run_pipeline(run: RunContext, events: trio.MemorySendChannel[Event]) -> None:
    """Send every event of one run to `events`, ending with exactly one `Done` or `Failed`.

    Closes `events` when it returns. Cancellation (a client that hung up) propagates.
    """
    async with events:
        started = trio.current_time()
        terminal: Done | Failed | None = None
        gathered = Gathered()
        with trio.move_on_after(run.request_timeout_s):
            terminal = await _fan_out_and_summarize(run, events, started, gathered)
        if terminal is None:
            log.warning(
                "request deadline of %g s exceeded",
                run.request_timeout_s,
                extra=run.log_context(),
            )
            deadline = DeadlineExceeded()
            await report_cut(run, events, gathered, deadline, started)
            terminal = Failed(
                source="pipeline",
                error=PublicError.of(deadline),
                usage=gathered.usage,
                agents=gathered.counts() if gathered.started else None,
            )
        await events.send(terminal)
