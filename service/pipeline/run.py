"""One run of an ensemble, reported as events: its strategy's steps, under the request's
deadline, ending with exactly one terminal event.

    send, receive = trio.open_memory_channel[Event](16)
    nursery.start_soon(run_pipeline, RunContext(request, ensemble, model, 120.0), send)
    async for event in receive:
        ...

The run owns its nursery; whoever cancels the run (a client that hung up) cancels every
member with it. The strategy (strategies.py, chosen by the ensemble) says which steps run
in which order; this module is the driver that holds what every strategy shares.
"""

from __future__ import annotations

import logging

import trio

from ..errors import DeadlineExceeded
from ..events import Done, Event, Failed
from .coalesce import DeltaCoalescer
from .context import RunContext
from .spend import Spend
from .steps import Steps
from .strategies import STRATEGIES

log = logging.getLogger(__name__)

# Between the strategy and the coalescer: room for an advisory event sent without waiting
# (a retry's notice), as the run's own channel has.
INNER_BUFFER = 16


async def run_pipeline(
    run: RunContext, events: trio.MemorySendChannel[Event], spend: Spend | None = None
) -> None:
    """Send every event of one run to `events`, ending with exactly one `Done` or `Failed`.

    Closes `events` when it returns. Cancellation (a client that hung up) propagates;
    `spend`, when given, then holds what the calls used until then (spend.py).
    """
    spend = spend or Spend(run.ensemble, free=run.free)
    async with events:
        if run.agent_streaming is None:
            terminal = await _deliberate(run, events, None, spend)
        else:
            # The agents' pieces of text pass through the coalescer on their way out.
            inner_send, inner_receive = trio.open_memory_channel[Event](INNER_BUFFER)
            coalescer = DeltaCoalescer(events, run.agent_streaming)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(coalescer.run, inner_receive)
                async with inner_send:
                    terminal = await _deliberate(run, inner_send, coalescer, spend)
        await events.send(terminal)


async def _deliberate(
    run: RunContext,
    events: trio.MemorySendChannel[Event],
    coalescer: DeltaCoalescer | None,
    spend: Spend,
) -> Done | Failed:
    """The strategy's steps under the request's deadline: the terminal event, not sent."""
    steps = Steps(run, events, coalescer, spend)
    strategy = STRATEGIES[run.ensemble.strategy]
    terminal: Done | Failed | None = None
    with trio.move_on_after(run.request_timeout_s):
        terminal = await strategy(run, steps)
    if terminal is None:
        log.warning(
            "request deadline of %g s exceeded",
            run.request_timeout_s,
            extra=run.log_context(),
        )
        terminal = await steps.cut_short(DeadlineExceeded())
    return terminal
