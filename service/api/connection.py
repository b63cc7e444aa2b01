"""The ASGI HTTP connection, with every send to the server shielded from cancellation.

Hypercorn delivers `http.disconnect` from inside the final `send` of a response, and
Quart-Trio answers it by cancelling the task that is making that very send. The cancel
then lands in Hypercorn's own connection bookkeeping (closing the socket while draining,
arming the keep-alive timer otherwise), which is left undone: during a shutdown the
connection stays open until Hypercorn's graceful timeout. Hypercorn already shields the
socket write itself, so shielding the whole send costs no responsiveness.
"""

from __future__ import annotations

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent
from quart_trio.asgi import TrioASGIHTTPConnection


class ShieldedSendHTTPConnection(TrioASGIHTTPConnection):
    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        async def shielded_send(message: ASGISendEvent) -> None:
            with trio.CancelScope(shield=True):
                await send(message)

        await super().__call__(receive, shielded_send)
