"""An upstream for the disconnect storm: it takes chat calls, never answers, and notes the
moment each caller closes its connection. Plain sockets and one epoll loop, so that 1000
closes at once cost it microseconds each and the storm measures the service, not this:

    python -m scripts.bench.stall_server [--port 0]     # prints "stalling on http://..."
    GET /status  ->  {"open": 998, "closed": [["storm 12", 812345.678], ...]}

Times are `time.monotonic()`, one clock for every process on the machine, so a load
generator in another process can subtract its own close times from them.
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field

_HEAD_END = b"\r\n\r\n"


@dataclass
class _Caller:
    buffer: bytearray = field(default_factory=bytearray)
    # The last message of the chat call this connection carries, once it has all arrived.
    message: str | None = None


class StallServer:
    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        self._selector = selectors.EpollSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._open: dict[socket.socket, _Caller] = {}
        self._closed: list[tuple[str, float]] = []
        self.running = True

    def serve(self) -> None:
        while self.running:
            for key, _ in self._selector.select(timeout=0.2):
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            caller = _Caller()
            self._open[sock] = caller
            self._selector.register(sock, selectors.EVENT_READ, caller)

    def _read(self, sock: socket.socket, caller: _Caller) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            closed_at = time.monotonic()
            self._selector.unregister(sock)
            del self._open[sock]
            sock.close()
            if caller.message is not None:
                self._closed.append((caller.message, closed_at))
            return
        caller.buffer += data
        head_end = caller.buffer.find(_HEAD_END)
        if head_end < 0:
            return
        head = bytes(caller.buffer[:head_end]).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = caller.buffer[head_end + len(_HEAD_END) :]
        if len(body) < length:
            return
        if head.startswith("GET /status"):
            self._send_status(sock)
            return
        messages = json.loads(bytes(body[:length]))["messages"]
        caller.message = str(messages[-1]["content"])
        caller.buffer.clear()

    def _send_status(self, sock: socket.socket) -> None:
        calls_open = sum(caller.message is not None for caller in self._open.values())
        payload = json.dumps({"open": calls_open, "closed": self._closed}).encode()
        self._selector.unregister(sock)
        del self._open[sock]
        sock.setblocking(True)
        sock.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
            + f"content-length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.stall_server")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", args.port), backlog=4096)
    listener.setblocking(False)
    server = StallServer(listener)

    def stop(*_: object) -> None:
        server.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"stalling on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
