"""Clients that hold the service's connections without being served: slowloris (headers
that never end, a line a second), idle connections that send nothing, and a reader that
never reads its stream. Each keeps its connections up until `stop` is set, opening a new
one when the server closes one, and counts how often the server did.

    tally = Tally()
    nursery.start_soon(partial(slowloris, host, port, 200, stop=stop, tally=tally))
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

import trio

from tests.faults.probes import tcp_state


@dataclass
class Tally:
    opened: int = 0
    closed_by_server: int = 0
    refused: int = 0


async def _keep_up(
    host: str, port: int, count: int, stop: trio.Event, tally: Tally, hold: str
) -> None:
    opening = trio.CapacityLimiter(100)

    async def one(number: int) -> None:
        while not stop.is_set():
            try:
                async with opening:
                    stream = await trio.open_tcp_stream(host, port)
            except OSError:
                tally.refused += 1
                await trio.sleep(0.5)
                continue
            tally.opened += 1
            async with stream:
                try:
                    if hold == "slowloris":
                        await _slowloris(stream, number, stop)
                    else:
                        await _idle(stream, stop)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            if not stop.is_set():
                tally.closed_by_server += 1

    async with trio.open_nursery() as nursery:
        for number in range(count):
            nursery.start_soon(one, number)


async def _slowloris(stream: trio.SocketStream, number: int, stop: trio.Event) -> None:
    """A request head that never ends: a header line a second (until the server closes)."""
    await stream.send_all(b"POST /api/process HTTP/1.1\r\nHost: x\r\n")
    line = 0
    while not stop.is_set():
        with trio.move_on_after(1):
            if not await stream.receive_some():
                return  # the server closed it
        line += 1
        await stream.send_all(f"X-Slow-{number}-{line}: a\r\n".encode())


async def _idle(stream: trio.SocketStream, stop: trio.Event) -> None:
    """Nothing sent; returns when the server closes the connection, or at `stop`."""
    async with trio.open_nursery() as nursery:

        async def until_stop() -> None:
            await stop.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(until_stop)
        while await stream.receive_some():
            pass
        nursery.cancel_scope.cancel()


async def slowloris(host: str, port: int, count: int, *, stop: trio.Event, tally: Tally) -> None:
    await _keep_up(host, port, count, stop, tally, "slowloris")


async def idle(host: str, port: int, count: int, *, stop: trio.Event, tally: Tally) -> None:
    await _keep_up(host, port, count, stop, tally, "idle")


@dataclass
class StuckReader:
    """A client that asks for a stream and never reads a byte of it."""

    sent_at: float = 0.0
    closed_at: float | None = None
    how: str = "still open"


async def never_read(
    host: str, port: int, payload: dict[str, str], *, stop: trio.Event, into: StuckReader
) -> None:
    """Send `payload` to POST /api/process from a socket with a tiny receive buffer, never
    read, and watch the server's side of the connection (in /proc/net/tcp: a FIN cannot
    reach a client that never reads) for the service to close it; `into` says when and how
    the kernel holds it then."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Before connecting, so the window the server sees stays small.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((host, port))
    stream = trio.SocketStream(sock)
    body = json.dumps(payload).encode()
    async with stream:
        await stream.send_all(
            b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        into.sent_at = trio.current_time()
        client_port = sock.getsockname()[1]
        while not stop.is_set():
            state = tcp_state(port, client_port)
            if state != "established":
                into.closed_at = trio.current_time()
                into.how = state or "gone"
                return
            await trio.sleep(0.1)
