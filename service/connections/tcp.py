"""One client connection, contained: Hypercorn's trio `TCPServer` with the fixes we carry.

Hypercorn runs one `TCPServer` per accepted socket, all in the server's nursery, so an
exception that escapes one connection ends the whole process. Six things here differ
from Hypercorn 0.18 (`hypercorn/trio/tcp_server.py`); each is pinned by tests/hostile, the
last by tests/integration/test_shutdown.py:

- The race. `_close` sent its EOF without the send lock while another task of the same
  connection could be writing (an early 413 from the app racing Hypercorn's own 400 to a
  client that left mid-body): trio raised `BusyResourceError` and the worker died. Here the
  EOF is sent under the send lock, and only when nobody is writing; a write still in
  progress is interrupted by closing the socket, which the writer handles as a hang-up.
- Containment. Whatever one connection raises is logged once, with the request id of its
  last request, and ends that connection only.
- Write deadlines. A write to a client that stopped reading never returned (it is
  shielded, as it must be: a cancelled write leaves the stream in an unknown state). Now a
  write that makes no progress for SEND_TIMEOUT_S, or that is still blocked when the
  response's own deadline passes, closes the connection; the app then sees a disconnect.

- Hang-ups. Once the client has closed, the connection no longer waits out its keep-alive
  timer (5 s) before it closes its side and its task ends.
- Hang-ups, sooner. The moment the read loop sees the client gone, it calls the record's
  `on_hang_up` (the request's tasks cancelled, its upstream calls closed), before Hypercorn
  and the app hear of it: in a storm of hang-ups each close no longer waits behind every
  other connection's unwinding.
- Closing while a request waits. A request that arrives on a keep-alive connection while
  the response before it is still going waits in h11 for its turn (the reader parks until
  the response ends). If the protocol closes the connection instead of starting the next
  turn (a draining server does, after every response), nothing wakes the reader: the
  connection's task lived on, socket closed, until Hypercorn's graceful timeout (the grace
  plus 2 s) cut it, and so did the process. nginx makes this common: it reuses a
  connection the moment a response ends, so its next request races the draining server's
  close. Now, once the protocol has closed the connection, its reading stops.

Only HTTP/1.1 is spoken (see `http1.py`), and TLS is left to the proxy in front.
"""

from __future__ import annotations

import contextlib
import logging
import math

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import parse_socket_addr

from ..telemetry.metrics import METRICS
from .http1 import Http1Protocol
from .record import CURRENT_CONNECTION, ConnectionRecord

log = logging.getLogger(__name__)


DEFAULT_SEND_TIMEOUT_S = 30.0


class ServiceConfig(Config):
    """Hypercorn's config, and the one setting of ours its connections need."""

    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S


class GuardedConnection(TCPServer):
    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        stream: trio.SocketStream,
    ) -> None:
        super().__init__(app, config, context, state, stream)  # type: ignore[arg-type]
        # Any Hypercorn server in this process runs these connections once they are installed
        # (a test's own server too): one with a plain Config gets the default bound.
        self.send_timeout_s = getattr(config, "send_timeout_s", DEFAULT_SEND_TIMEOUT_S)
        self.record = ConnectionRecord()
        # Around the reading loop: cancelled once the protocol has closed the connection.
        self.reading = trio.CancelScope()

    async def run(self) -> None:
        # Every task of this connection (its app tasks too) starts with this context.
        CURRENT_CONNECTION.set(self.record)
        METRICS.connections_open.inc()
        try:
            await self._serve()
        except* Exception as failure:
            log.error(
                "a connection failed and was closed",
                exc_info=failure,
                extra={"request_id": self.record.request_id},
            )
        finally:
            METRICS.connections_open.dec()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _serve(self) -> None:
        socket = self.stream.socket
        try:
            client = parse_socket_addr(socket.family, socket.getpeername())
            server = parse_socket_addr(socket.family, socket.getsockname())
            async with TaskGroup() as task_group:
                self._task_group = task_group
                self.protocol = Http1Protocol(  # type: ignore[assignment]
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    False,
                    client,
                    server,
                    self.protocol_send,
                )
                await self.idle_task.restart(task_group, self._idle_timeout)
                await self._read_data()
                # The client is gone: its keep-alive timer must not hold the connection
                # (and its socket, in CLOSE-WAIT) open for another KEEP_ALIVE seconds.
                await self.idle_task.stop()
        except OSError:
            pass  # the peer was gone before we could ask who it is
        finally:
            await self._close()

    async def _read_data(self) -> None:
        # Hypercorn's loop, with two steps added. The hang-up is acted on where it is read:
        # when hundreds of clients leave at once, each upstream close no longer waits for
        # Hypercorn, Quart and the run's tasks of every other connection to have run first.
        # And once the protocol has closed the connection, reading stops (a request parked
        # meanwhile would wait for a turn that never comes).
        with self.reading:
            while True:
                try:
                    with trio.fail_after(self.config.read_timeout or math.inf):
                        data = await self.stream.receive_some(MAX_RECV)
                except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                    break
                if not data:
                    # Before Hypercorn reads the end (its handling may wait its turn).
                    self._hung_up()
                await self.protocol.handle(RawData(bytes(data)))
                if not data:
                    break
        self._hung_up()
        await self.protocol.handle(Closed())

    def _hung_up(self) -> None:
        hang_up, self.record.on_hang_up = self.record.on_hang_up, None
        if hang_up is not None:
            hang_up()

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            if isinstance(event, Closed):
                # Closed by the protocol: a request read meanwhile would wait for a turn
                # that never comes (see the module's docstring). Nothing more is read.
                self.reading.cancel()
            return
        async with self.send_lock:
            # Shielded from the app's cancellation (a write cut halfway corrupts the
            # stream), but not from its own deadline, after which the stream is closed.
            with trio.CancelScope(shield=True) as write:
                write.deadline = min(
                    trio.current_time() + self.send_timeout_s, self.record.write_deadline
                )
                try:
                    await self.stream.send_all(event.data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.protocol.handle(Closed())
                    return
            if write.cancelled_caught:
                log.info(
                    "the client stopped reading; closing its connection",
                    extra={"request_id": self.record.request_id},
                )
                await self.stream.aclose()
                await self.protocol.handle(Closed())

    async def _close(self) -> None:
        if not self.send_lock.locked():
            # A clean half-close, unless a write is in progress (or this task is the
            # writer, closing on a broken pipe): then closing the socket below interrupts
            # that write, which ends as a hang-up.
            async with self.send_lock:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.stream.send_eof()
        await self.stream.aclose()
