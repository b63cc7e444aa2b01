"""A run its response never started is ended with the request.

A message is stored as `running` and holds its stream slot before its response is made; the
response then starts the run when Quart enters its body. Anything that stops the response
in between (it cannot be made or sent, a hook fails, the client leaves first) would leave
the run never driven: `running` for ever, its cancel a no-op, its slot taken until its
lease ran out. This ASGI middleware ends such a run when its request ends: cancelled,
through the run's own driver, so it gets its terminal event, its record and its settlement
like any other.

    app.asgi_app = EndUnstartedRuns(app.asgi_app)
    drive = driven_by_the_response(driver)   # in launch.py: what the response calls
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import trio

from ..runs import RunDriver

log = logging.getLogger(__name__)

Drive = Callable[[], Awaitable[None]]

# The runs this request launched that no response started yet.
_UNSTARTED: ContextVar[list[RunDriver] | None] = ContextVar("unstarted_runs", default=None)


class EndUnstartedRuns:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        unstarted: list[RunDriver] = []
        token = _UNSTARTED.set(unstarted)
        try:
            await self.app(scope, receive, send)
        finally:
            _UNSTARTED.reset(token)
            if unstarted:
                # Shielded: a request cancelled (its client left) still ends its runs; each
                # end is bounded by the driver's own final-write bound.
                with trio.CancelScope(shield=True):
                    for driver in unstarted:
                        log.warning(
                            "a run's response never started it: ended as cancelled",
                            extra=driver.log_context,
                        )
                        driver.cancel()
                        await driver.run()


def driven_by_the_response(driver: RunDriver) -> Drive:
    """What the response calls to run `driver`; if the request ends without calling it,
    the run is ended there (see EndUnstartedRuns)."""
    unstarted = _UNSTARTED.get()
    if unstarted is not None:
        unstarted.append(driver)

    async def drive() -> None:
        if unstarted is not None and driver in unstarted:
            unstarted.remove(driver)
        await driver.run()

    return drive
