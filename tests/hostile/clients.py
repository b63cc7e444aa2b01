"""Clients that misbehave on purpose, over real sockets.

await send_raw(host, port, b"POST /api/process HTTP/1.1\\r\\n...", leave="reset")
reply = await exchange(host, port, b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Literal

import trio

# How a client leaves: closing its socket, half-closing it (it can still read), or aborting
# it with a TCP reset.
Leave = Literal["close", "half-close", "reset"]
LEAVES: tuple[Leave, ...] = ("close", "half-close", "reset")


async def send_raw(host: str, port: int, data: bytes, *, leave: Leave) -> None:
    """Send `data` and leave at once, without reading the answer."""
    stream = await trio.open_tcp_stream(host, port)
    try:
        await stream.send_all(data)
        if leave == "half-close":
            await stream.send_eof()
            with trio.move_on_after(0.5):  # read what comes, then go
                while await stream.receive_some():
                    pass
        elif leave == "reset":
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except trio.BrokenResourceError:
        pass  # the server closed first: it may, once it has answered
    finally:
        await stream.aclose()


async def exchange(host: str, port: int, data: bytes, *, timeout_s: float = 5.0) -> bytes:
    """Send `data` and return what the server answers: until it closes, or until a whole
    response that said `connection: close` has arrived."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(data)
        reply = b""
        with trio.fail_after(timeout_s):
            while chunk := await stream.receive_some():
                reply += chunk
                if _complete_close(reply):
                    break
        return reply


def _complete_close(reply: bytes) -> bool:
    """A whole response that said `connection: close` (so the server closes next)."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    if not sep or b"connection: close" not in head.lower():
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def headers_of(reply: bytes) -> dict[str, str]:
    head = reply.partition(b"\r\n\r\n")[0].decode("latin-1")
    pairs = (line.split(":", 1) for line in head.split("\r\n")[1:])
    return {name.strip().lower(): value.strip() for name, value in pairs}


def envelope_of(reply: bytes) -> dict[str, Any]:
    body = reply.partition(b"\r\n\r\n")[2]
    error: dict[str, Any] = json.loads(body)["error"]
    return error
