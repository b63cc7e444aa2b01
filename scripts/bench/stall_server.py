"""An upstream for held streams and the disconnect storm: it takes chat calls, never
answers, and notes the moment each caller closes its connection. One epoll loop, so that
1000 closes at once cost it microseconds each and the storm measures the service, not this:

    python -m scripts.bench.stall_server [--port 0]     # prints "stalling on http://..."
    GET /status  ->  {"open": 998, "closed": [["storm 12", 812345.678], ...]}

Times are `time.monotonic()`, one clock for every process on the machine, so a load
generator in another process can subtract its own close times from them.
"""

from __future__ import annotations

import json
import socket
import time

from .epoll_server import EpollServer, response, serve_main


class StallServer(EpollServer):
    def __init__(self, listener: socket.socket) -> None:
        super().__init__(listener)
        # The last message of the chat call each connection carries.
        self._calls: dict[socket.socket, str] = {}
        self._closed: list[tuple[str, float]] = []

    def answer(self, sock: socket.socket, head: str, body: bytes) -> bytes | None:
        if head.startswith("GET /status"):
            self.close_after_answer(sock)
            status = {"open": len(self._calls), "closed": self._closed}
            return response("200 OK", "application/json", json.dumps(status).encode(), close=True)
        self._calls[sock] = str(json.loads(body)["messages"][-1]["content"])
        return None

    def closed(self, sock: socket.socket) -> None:
        closed_at = time.monotonic()
        message = self._calls.pop(sock, None)
        if message is not None:
            self._closed.append((message, closed_at))


if __name__ == "__main__":
    serve_main(StallServer, "python -m scripts.bench.stall_server", "stalling on")
