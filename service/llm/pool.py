"""An HTTP/1.1 connection pool whose every step costs the same with 10 or 10,000 connections.

The SDK's HTTP client (httpx2 over httpcore2) re-scans its whole pool, probing each idle
socket, whenever a call starts or ends. With thousands of calls in flight (every open
stream holds two) that made opening streams and cancelling them on a client's hang-up
quadratic. Here an idle connection is popped from a per-origin stack, a finished one
pushed back, and only the connection about to be reused is probed:

    transport = PooledTransport(name="openai", max_connections=1000)
    http = httpx2.AsyncClient(transport=transport)     # then AsyncOpenAI(http_client=http)

The connections themselves (HTTP/1.1, TLS, timeouts) are httpcore2's, and so is the mapping
of their errors onto httpx2's, which the SDK understands.

A client request's calls (request_calls.py) are the connections' `_SocketKeeper`s, so
they can be closed all at once, the moment its client hangs up.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import nullcontext
from typing import Any

import httpcore2
import httpx2
import trio

from .request_calls import REQUEST_CALLS, RequestCalls

log = logging.getLogger(__name__)

# How long an unused connection is kept for the next call (httpx's default).
KEEPALIVE_S = 5.0
# A full pool makes calls wait; the warning saying so is repeated at most this often.
_FULL_WARNING_EVERY_S = 10.0


class CoalescedWrites(httpcore2.AsyncNetworkStream):
    """A connection's stream whose writes wait for its next read and go out as one.

    httpcore2 writes a request's head and body separately: two or three socket sends per
    call, each waking the server for a fragment. A client reads only once its request is
    all written, so holding writes until then changes nothing but the number of sends.
    """

    def __init__(self, stream: httpcore2.AsyncNetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if buffer:
            self._pending.append(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        if self._pending:
            pending, self._pending = b"".join(self._pending), []
            await self._stream.write(pending, timeout)
        return await self._stream.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._pending = []
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore2.AsyncNetworkStream:
        tls = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return CoalescedWrites(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _SocketKeeper(httpcore2.AsyncNetworkBackend):
    """The network backend of one connection: trio's, keeping hold of the socket it opens
    and coalescing its writes."""

    def __init__(self, backend: httpcore2.AsyncNetworkBackend) -> None:
        self._backend = backend
        self._stream: httpcore2.AsyncNetworkStream | None = None
        self.aborted = False

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        self._stream = CoalescedWrites(
            await self._backend.connect_tcp(
                host,
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )
        )
        return self._stream

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)

    def abort(self) -> None:
        """Close the socket now, from any task, without waiting for the one using it."""
        self.aborted = True
        if self._stream is not None:
            self._stream.get_extra_info("socket").close()


_OriginKey = tuple[bytes, bytes, int]


def _key(origin: httpcore2.Origin) -> _OriginKey:
    # httpcore2's Origin compares by value but is not hashable.
    return (origin.scheme, origin.host, origin.port)


class FlatConnectionPool:
    """At most `max_connections` connections, idle or busy; a call that finds none free
    waits (up to the request's pool timeout) and says so in the log."""

    def __init__(
        self,
        *,
        name: str,
        max_connections: int,
        ssl_context: Any = None,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self._name = name
        self._max_connections = max_connections
        self._ssl_context = ssl_context
        self._keepalive_s = keepalive_s
        self._backend = httpcore2.TrioBackend()
        self._open: dict[httpcore2.AsyncHTTPConnection, _SocketKeeper] = {}
        # Per origin, oldest first: (when it stops being worth keeping, connection).
        self._idle: dict[_OriginKey, deque[tuple[float, httpcore2.AsyncHTTPConnection]]] = {}
        self._freed = trio.Event()
        self._warned_full_at = -_FULL_WARNING_EVERY_S
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return sum(len(stack) for stack in self._idle.values())

    async def handle_async_request(self, request: httpcore2.Request) -> httpcore2.Response:
        timeouts = request.extensions.get("timeout", {})
        origin = request.url.origin
        connection = await self._acquire(origin, timeouts.get("pool"))
        keeper = self._open[connection]
        calls = REQUEST_CALLS.get()
        if calls is not None:
            calls.add(keeper)
        try:
            response = await connection.handle_async_request(request)
        except BaseException:
            if calls is not None:
                calls.discard(keeper)
            await self._forget(connection)
            raise
        return httpcore2.Response(
            status=response.status,
            headers=response.headers,
            content=_ReleasingStream(response.stream, self, origin, connection, keeper, calls),
            extensions=response.extensions,
        )

    async def __aenter__(self) -> FlatConnectionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        connections, self._open, self._idle = list(self._open), {}, {}
        with trio.CancelScope(shield=True):
            for connection in connections:
                await connection.aclose()
        self._wake_waiters()

    async def _acquire(
        self, origin: httpcore2.Origin, timeout_s: float | None
    ) -> httpcore2.AsyncHTTPConnection:
        deadline = trio.fail_after(timeout_s) if timeout_s is not None else nullcontext()
        try:
            with deadline:
                while True:
                    if self._closed:
                        raise httpcore2.ConnectError("the connection pool is closed")
                    connection = await self._reusable(origin)
                    if connection is None and (
                        len(self._open) < self._max_connections or await self._evict_one()
                    ):
                        keeper = _SocketKeeper(self._backend)
                        connection = httpcore2.AsyncHTTPConnection(
                            origin=origin,
                            ssl_context=self._ssl_context,
                            keepalive_expiry=self._keepalive_s,
                            network_backend=keeper,
                        )
                        self._open[connection] = keeper
                    if connection is not None:
                        return connection
                    self._warn_full()
                    await self._freed.wait()
        except trio.TooSlowError:
            raise httpcore2.PoolTimeout(
                f"no free connection to {self._name} within {timeout_s} s"
            ) from None

    async def _reusable(self, origin: httpcore2.Origin) -> httpcore2.AsyncHTTPConnection | None:
        """The most recently used idle connection to `origin` that is still usable."""
        stack = self._idle.get(_key(origin))
        while stack:
            _, connection = stack.pop()
            # One probe, of this socket only: has the server closed it meanwhile?
            if not connection.has_expired():
                return connection
            await self._forget(connection)
        return None

    async def _evict_one(self) -> bool:
        """Close the oldest idle connection (to any origin) to make room; False if none is."""
        oldest = min(
            (stack for stack in self._idle.values() if stack),
            key=lambda stack: stack[0][0],
            default=None,
        )
        if oldest is None:
            return False
        _, connection = oldest.popleft()
        await self._forget(connection)
        return True

    async def _release(
        self, origin: httpcore2.Origin, connection: httpcore2.AsyncHTTPConnection
    ) -> None:
        """A call is over: keep its connection for the next one if it can carry one."""
        keeper = self._open.get(connection)
        if self._closed or keeper is None or keeper.aborted or not connection.is_idle():
            await self._forget(connection)
            return
        now = time.monotonic()
        stack = self._idle.setdefault(_key(origin), deque())
        stack.append((now + self._keepalive_s, connection))
        # Connections at the bottom of a stack are reused last: close the stale ones here,
        # one look each, so a quiet pool does not hold sockets the server has dropped.
        while stack and stack[0][0] < now:
            _, stale = stack.popleft()
            await self._forget(stale)
        self._wake_waiters()

    async def _forget(self, connection: httpcore2.AsyncHTTPConnection) -> None:
        self._open.pop(connection, None)
        with trio.CancelScope(shield=True):
            await connection.aclose()
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        self._freed.set()
        self._freed = trio.Event()

    def _warn_full(self) -> None:
        now = time.monotonic()
        if now - self._warned_full_at >= _FULL_WARNING_EVERY_S:
            self._warned_full_at = now
            log.warning(
                "provider %s: all %d connections are busy; calls wait for one "
                "(raise max_connections to let them through)",
                self._name,
                self._max_connections,
            )


class _ReleasingStream:
    """A response body that hands its connection back to the pool when it is closed."""

    def __init__(
        self,
        stream: Any,
        pool: FlatConnectionPool,
        origin: httpcore2.Origin,
        connection: httpcore2.AsyncHTTPConnection,
        keeper: _SocketKeeper,
        calls: RequestCalls | None,
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._origin = origin
        self._connection = connection
        self._keeper = keeper
        self._calls = calls
        self._released = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        if self._calls is not None:
            self._calls.discard(self._keeper)
        with trio.CancelScope(shield=True):
            await self._stream.aclose()
            await self._pool._release(self._origin, self._connection)


class PooledTransport(httpx2.AsyncHTTPTransport):
    """httpx2's transport (request building, error mapping) over a `FlatConnectionPool`."""

    def __init__(
        self, *, name: str, max_connections: int, keepalive_s: float = KEEPALIVE_S
    ) -> None:
        # Not calling the parent's __init__ on purpose: all it does is build the pool that
        # this one replaces, and every other method only talks to `self._pool`.
        self._pool = FlatConnectionPool(  # type: ignore[assignment]
            name=name,
            max_connections=max_connections,
            ssl_context=httpx2.create_ssl_context(),
            keepalive_s=keepalive_s,
        )

    @property
    def pool(self) -> FlatConnectionPool:
        return self._pool  # type: ignore[return-value]
