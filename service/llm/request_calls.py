"""The upstream calls of one client request, closed all at once the moment its client hangs
up. Kept apart from the connection pool (pool.py) that fills it, so that the parts that only
mark a request's calls (the API, a run that outlives its client) load no HTTP client:

    calls = calls_of_this_request()  # in the request's task: its child tasks inherit it
    ...
    calls.close_all()               # once the request's tasks are cancelled
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol


class Abortable(Protocol):
    """One upstream connection in use (pool.py's `_SocketKeeper`)."""

    def abort(self) -> None:
        """Close its socket now, from any task."""


class RequestCalls:
    """The upstream connections one client request is using right now.

    When its client hangs up, the request's tasks are cancelled, but each closes its
    upstream connection only once it has run and unwound; with hundreds of clients leaving
    at once, every upstream close would wait behind all of that work. `close_all` closes
    the sockets at once instead (the tasks, already cancelled, then find them closed).
    """

    def __init__(self) -> None:
        self._busy: set[Abortable] = set()

    def add(self, keeper: Abortable) -> None:
        self._busy.add(keeper)

    def discard(self, keeper: Abortable) -> None:
        self._busy.discard(keeper)

    def close_all(self) -> None:
        busy, self._busy = self._busy, set()
        for keeper in busy:
            keeper.abort()


# The calls of the client request this task serves; None outside a request.
REQUEST_CALLS: ContextVar[RequestCalls | None] = ContextVar("request_calls", default=None)


def calls_of_this_request() -> RequestCalls:
    """The calls of the client request this task serves, new: every task it starts shares
    them (close them all when its client hangs up)."""
    calls = RequestCalls()
    REQUEST_CALLS.set(calls)
    return calls


def calls_of_no_request() -> None:
    """This task's calls, and those of the tasks it starts, belong to no client request: a
    run that goes on when its client leaves keeps its upstream sockets."""
    REQUEST_CALLS.set(None)
