"""What the app tells the connection it runs on, shared by every task of the connection.

record = current_connection()
if record is not None:
    record.request_id = "3f2a..."                     # named in the connection's logs
    record.write_deadline = trio.current_time() + 120  # a blocked write ends by then
    record.on_hang_up = hang_up                        # run the moment the client is gone
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class ConnectionRecord:
    request_id: str | None = None
    # A write still blocked at this time (a client that stopped reading) closes the
    # connection; the app sets it while a response with a deadline of its own is open.
    write_deadline: float = math.inf
    # Called by the connection as soon as it reads the client's hang-up (end of stream or a
    # reset), before Hypercorn hears of it: the request in progress cancels its tasks and
    # closes its upstream sockets then, not once Hypercorn and Quart-Trio have had their turn.
    on_hang_up: Callable[[], None] | None = None


CURRENT_CONNECTION: ContextVar[ConnectionRecord | None] = ContextVar(
    "current_connection", default=None
)


def current_connection() -> ConnectionRecord | None:
    return CURRENT_CONNECTION.get()
