"""An OpenAI-compatible upstream that answers every chat call at once, for the zero-latency
scenarios (saturation, peer). One epoll loop and canned bytes per model, so that an answer
costs it a few microseconds and the CPU goes to the systems being measured; the fake
upstream (Hypercorn, configurable behaviours) cost about 2 ms of CPU per call:

    python -m scripts.bench.instant_upstream [--port 0]    # prints "answering on http://..."

A plain call gets "A short answer."; a streamed one gets 20 tokens ("t0 " ... "t19 "), then
the usage chunk when asked for it, then `[DONE]`.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from .epoll_server import EpollServer, response, serve_main

REPLY = "A short answer."
TOKENS = [f"t{i} " for i in range(20)]


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
    return response("200 OK", "application/json", json.dumps(body).encode())


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
    return response("200 OK", "text/event-stream", "".join(events).encode())


class InstantUpstream(EpollServer):
    def __init__(self, listener: socket.socket) -> None:
        super().__init__(listener)
        self._answers: dict[tuple[str, bool, bool], bytes] = {}

    def answer(self, sock: socket.socket, head: str, body: bytes) -> bytes | None:
        if not head.startswith("POST ") or "/chat/completions " not in head.split("\r\n")[0]:
            return response("404 Not Found", "application/json", b'{"error": "not found"}')
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


if __name__ == "__main__":
    serve_main(InstantUpstream, "python -m scripts.bench.instant_upstream", "answering on")
