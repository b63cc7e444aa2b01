"""The ASGI HTTP connection: Quart-Trio's, with two changes for a streaming server.

Every send to the server is shielded from cancellation. Hypercorn delivers
`http.disconnect` from inside the final `send` of a response, and Quart-Trio answers it by
cancelling the task that is making that very send. The cancel then lands in Hypercorn's own
connection bookkeeping (closing the socket while draining, arming the keep-alive timer
otherwise), which is left undone: during a shutdown the connection stays open until
Hypercorn's graceful timeout. Hypercorn already shields the socket write itself, so
shielding the whole send costs no responsiveness.

A client that hangs up has its upstream calls closed at once. Quart-Trio cancels the
request's tasks, and each would close its upstream connection only after it has run and
unwound; when hundreds of clients leave together, the last upstream close waited behind
all of their work. The connection knows the request's calls (`RequestCalls`): as soon as
the TCP connection reads the hang-up, it cancels the request's tasks and closes their
sockets, in that order and in one step (and this connection does the same on a disconnect
Hypercorn saw first).
"""

from __future__ import annotations

from functools import partial

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent
from quart.wrappers import Request
from quart_trio.asgi import TrioASGIHTTPConnection

from ..connections.record import current_connection
from ..llm import calls_of_this_request


class StreamingHTTPConnection(TrioASGIHTTPConnection):
    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        async def shielded_send(message: ASGISendEvent) -> None:
            with trio.CancelScope(shield=True):
                await send(message)

        # Set in this task's context, so every task the request starts inherits it.
        self._upstream_calls = calls_of_this_request()
        self._record = current_connection()
        try:
            await super().__call__(receive, shielded_send)
        finally:
            if self._record is not None:
                self._record.on_hang_up = None  # the next request on this connection sets its own

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Request, receive: ASGIReceiveCallable
    ) -> None:
        # The connection acts on a hang-up the moment it reads it (connections/tcp.py), as
        # Quart-Trio does on `http.disconnect`, only sooner: the request's tasks cancelled
        # first (so each call ends as cancelled, not as a provider's failure), then their
        # upstream sockets closed.
        if self._record is not None:
            self._record.on_hang_up = partial(self._hang_up, nursery)
        # Returns only on `http.disconnect` (a hang-up Hypercorn saw first).
        await super().handle_messages(nursery, request, receive)
        self._hang_up(nursery)

    def _hang_up(self, nursery: trio.Nursery) -> None:
        nursery.cancel_scope.cancel()
        self._upstream_calls.close_all()
