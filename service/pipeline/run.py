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
from .context import RunContext
from .steps import Steps
from .strategies import STRATEGIES

log = logging.getLogger(__name__)


async def run_pipeline(run: RunContext, events: trio.MemorySendChannel[Event]) -> None:
    """Send every event of one run to `events`, ending with exactly one `Done` or `Failed`.

    Closes `events` when it returns. Cancellation (a client that hung up) propagates.
    """
    async with events:
        steps = Steps(run, events)
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
        await events.send(terminal)
