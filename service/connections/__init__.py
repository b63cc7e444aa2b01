"""Client connections: one contained task per socket, HTTP/1.1 only, bounded writes.

use_guarded_connections()   # before hypercorn.trio.serve: its connections become ours
"""

from __future__ import annotations

import hypercorn.trio.run

from .record import CURRENT_CONNECTION, ConnectionRecord, current_connection
from .tcp import GuardedConnection, ServiceConfig


def use_guarded_connections() -> None:
    """Make Hypercorn's trio server run `GuardedConnection` for every accepted socket.

    Hypercorn has no setting for its connection class, so its module's name is rebound; the
    tests in tests/hostile fail if a Hypercorn release stops looking it up there.
    """
    hypercorn.trio.run.TCPServer = GuardedConnection  # type: ignore[attr-defined,assignment]


__all__ = [
    "CURRENT_CONNECTION",
    "ConnectionRecord",
    "GuardedConnection",
    "ServiceConfig",
    "current_connection",
    "use_guarded_connections",
]
