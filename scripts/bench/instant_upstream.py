"""An OpenAI-compatible upstream that answers every chat call at once, for the zero-latency
scenarios (saturation, peer). One epoll loop and canned bytes per model, so that an answer
costs it a few microseconds and the CPU goes to the systems being measured; the fake
upstream (Hypercorn, configurable behaviours) cost about 2 ms of CPU per call:

    python -m scripts.bench.instant_upstream [--port 0]    # prints "answering on http://..."

A plain call gets "A short answer."; a streamed one gets 20 tokens ("t0 " ... "t19 "), then
the usage chunk when asked for it, then `[DONE]`.
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
from typing import Any

REPLY = "A short answer."
TOKENS = [f"t{i} " for i in range(20)]
_HEAD_END = b"\r\n\r\n"


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def completion(model: str) -> bytes:
    body = {
        "id": "chatcmpl-instant",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14},
    }
    return _response("200 OK", "application/json", json.dumps(body).encode())


def stream(model: str, include_usage: bool) -> bytes:
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        payload = {
            "id": "chatcmpl-instant",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(payload)}\n\n"

    events = [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": token}}])
        if i == 0
        else chunk([{"index": 0, "delta": {"content": token}}])
        for i, token in enumerate(TOKENS)
    ]
    events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        usage = {"prompt_tokens": 10, "completion_tokens": len(TOKENS), "total_tokens": 30}
        events.append(chunk([], usage=usage))
    events.append("data: [DONE]\n\n")
    return _response("200 OK", "text/event-stream", "".join(events).encode())


class InstantUpstream:
    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        self._selector = selectors.EpollSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._answers: dict[tuple[str, bool, bool], bytes] = {}
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
            return
        buffer += data
        replies = []
        while (head_end := buffer.find(_HEAD_END)) >= 0:
            head = bytes(buffer[:head_end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            start = head_end + len(_HEAD_END)
            if len(buffer) < start + length:
                break
            body = bytes(buffer[start : start + length])
            del buffer[: start + length]
            replies.append(self._answer(head, body))
        if replies:
            sock.setblocking(True)
            sock.sendall(b"".join(replies))
            sock.setblocking(False)

    def _answer(self, head: str, body: bytes) -> bytes:
        if not head.startswith("POST ") or "/chat/completions " not in head.split("\r\n")[0]:
            return _response("404 Not Found", "application/json", b'{"error": "not found"}')
        request = json.loads(body)
        model = str(request.get("model"))
        streamed = request.get("stream") is True
        options = request.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        key = (model, streamed, with_usage)
        answer = self._answers.get(key)
        if answer is None:
            answer = stream(model, with_usage) if streamed else completion(model)
            self._answers[key] = answer
        return answer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.instant_upstream")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", args.port), backlog=4096)
    listener.setblocking(False)
    server = InstantUpstream(listener)

    def stop(*_: object) -> None:
        server.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"answering on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
