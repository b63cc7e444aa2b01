"""What the benchmark's lean upstreams share: one epoll loop, HTTP/1.1 requests framed by
`Content-Length`, and a `main` that prints the URL it listens on.

    class Upstream(EpollServer):
        def answer(self, sock, head, body) -> bytes | None: ...     # None: no answer (yet)
        def closed(self, sock) -> None: ...                         # the caller hung up

    serve_main(Upstream, "python -m scripts.bench.x", "answering on")
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket

_HEAD_END = b"\r\n\r\n"


class EpollServer:
    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        self._selector = selectors.EpollSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._closing: set[socket.socket] = set()
        self.running = True

    def answer(self, sock: socket.socket, head: str, body: bytes) -> bytes | None:
        """The bytes to send for one request (`head` without its blank line), or None."""
        raise NotImplementedError

    def closed(self, sock: socket.socket) -> None:
        """The caller closed `sock` (or it broke)."""

    def close_after_answer(self, sock: socket.socket) -> None:
        self._closing.add(sock)

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
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._selector.register(sock, selectors.EVENT_READ, bytearray())

    def _read(self, sock: socket.socket, buffer: bytearray) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._selector.unregister(sock)
            sock.close()
            self.closed(sock)
            return
        buffer += data
        answers = []
        while (head_end := buffer.find(_HEAD_END)) >= 0:
            head = bytes(buffer[:head_end]).decode("latin-1")
            start = head_end + len(_HEAD_END)
            length = _content_length(head)
            if len(buffer) < start + length:
                break
            body = bytes(buffer[start : start + length])
            del buffer[: start + length]
            answer = self.answer(sock, head, body)
            if answer is not None:
                answers.append(answer)
        if answers:
            # Small answers on loopback: a blocking send is over at once.
            sock.setblocking(True)
            sock.sendall(b"".join(answers))
            sock.setblocking(False)
        if sock in self._closing:
            self._closing.discard(sock)
            self._selector.unregister(sock)
            sock.close()


def _content_length(head: str) -> int:
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value)
    return 0


def response(status: str, content_type: str, body: bytes, *, close: bool = False) -> bytes:
    connection = "connection: close\r\n" if close else ""
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n{connection}"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def serve_main(server: type[EpollServer], prog: str, banner: str) -> None:
    """Parse `--port`, listen, print "`banner` http://127.0.0.1:PORT", serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", args.port), backlog=4096)
    listener.setblocking(False)
    running = server(listener)

    def stop(*_: object) -> None:
        running.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"{banner} http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    running.serve()
