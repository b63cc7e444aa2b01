"""A real service behind a TcpProxy that a case cuts for a while: PostgreSQL or Redis
unreachable under load, then back, on the same port.

    async with proxied(5432) as proxy:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/test"
        ...
        await outage(proxy, nursery, seconds=5)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from tests.proxy import TcpProxy


@dataclass
class Proxied:
    proxy: TcpProxy
    nursery: trio.Nursery
    port: int

    async def outage(self, seconds: float) -> tuple[float, float]:
        """Cut every connection and refuse new ones for `seconds`, then listen again on the
        same port; when it was cut and when it was back (trio's clock)."""
        self.proxy.cut()
        cut_at = trio.current_time()
        await trio.sleep(seconds)
        await self.nursery.start(self.proxy.serve)
        return cut_at, trio.current_time()


@asynccontextmanager
async def proxied(target_port: int) -> AsyncIterator[Proxied]:
    """A TcpProxy to 127.0.0.1:`target_port`, serving until the block ends."""
    proxy = TcpProxy("127.0.0.1", target_port)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        yield Proxied(proxy, nursery, port)
        nursery.cancel_scope.cancel()
