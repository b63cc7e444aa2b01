"""A TCP proxy a test can cut and restore: a database or Redis that becomes unreachable
without stopping the real server behind it.

    proxy = TcpProxy("127.0.0.1", 5432)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        ...
        proxy.cut()                         # every connection reset, the port refuses
        await nursery.start(proxy.serve)    # back, on the same port
"""

from __future__ import annotations

import contextlib
import socket
import struct

import trio

_LINGER_ZERO = struct.pack("ii", 1, 0)


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._scope: trio.CancelScope | None = None

    async def serve(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self._scope:
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                task_status.started(self.port)
                await trio.serve_listeners(self._pipe, listeners, handler_nursery=nursery)

    def cut(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _pipe(self, client: trio.SocketStream) -> None:
        try:
            server = await trio.open_tcp_stream(*self.target)
        except OSError:
            await client.aclose()
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, client, server)
                nursery.start_soon(_pump, server, client)
        finally:
            # Cut: both sides see a reset, as when a network path dies.
            for stream in (client, server):
                with contextlib.suppress(OSError, trio.ClosedResourceError):  # already closed
                    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
                await trio.aclose_forcefully(stream)


async def _pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    await trio.aclose_forcefully(sink)
