"""A fake OpenAI-compatible upstream for tests, demos and benchmarks.

It is a raw ASGI 3 app served by Hypercorn's trio worker, so the service under test talks to it
over real sockets exactly as it would talk to OpenAI, Ollama or vLLM. Every chat call is recorded
(`FakeUpstream.calls`), including whether the client hung up before the answer was complete.

By hand:

    .venv/bin/python -m scripts.fake_upstream --port 9100

    curl -sN http://127.0.0.1:9100/v1/chat/completions \\
        -H 'content-type: application/json' \\
        -d '{"model": "fake-slow", "stream": true,
             "stream_options": {"include_usage": true},
             "messages": [{"role": "user", "content": "Hello there"}]}'

The command line server knows `fake-fast`, `fake-slow`, `fake-stall` and `fake-error`; any other
model name gets the default behaviour (tune it with `--first-token-delay` and `--token-delay`).

In a trio test:

    fake = FakeUpstream({"slow": Behaviour(token_delay_s=0.2)})
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_fake_upstream, fake)
        client = openai.AsyncOpenAI(base_url=base_url(binds), api_key="test")
        ...
        nursery.cancel_scope.cancel()
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
    Scope,
)

__all__ = [
    "SECRET_DETAIL_MARKER",
    "Behaviour",
    "CallRecord",
    "FakeUpstream",
    "Outcome",
    "base_url",
    "main",
    "serve_fake_upstream",
    "split_tokens",
]

# Error bodies carry this marker so tests can assert the raw provider text never reaches users.
SECRET_DETAIL_MARKER = "upstream-secret-detail"

Outcome = Literal["open", "completed", "disconnected"]

_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_TOKEN_RE = re.compile(r"\S+\s*|\s+")

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True)
class Behaviour:
    """How the fake answers one model name.

    `reply` and `tokens` may both be given; the non-streaming answer is then `reply` and the
    stream is `tokens`. If only `tokens` is given, the non-streaming answer is their join; if
    neither, the reply is "<model> answers: <last user message, first 60 chars>".

    Timing: `first_token_delay_s` passes before the response headers are sent (so the SDK's
    `create()` itself waits), `token_delay_s` between consecutive token chunks of a stream; a
    non-streaming answer waits `first_token_delay_s + len(tokens) * token_delay_s`. `stall`
    and a non-200 `status` apply to streaming and non-streaming calls alike.
    """

    reply: str | None = None
    tokens: tuple[str, ...] | None = None
    first_token_delay_s: float = 0.0
    token_delay_s: float = 0.0
    stall: bool = False
    status: int = 200


@dataclass
class CallRecord:
    """One chat completion call as the fake saw it; mutated while the call is in flight."""

    model: str
    stream: bool
    messages: list[Any]
    started_at: float
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    ended_at: float | None = None
    outcome: Outcome = "open"
    # Lets tests wait for the end of a call without polling.
    ended: trio.Event = field(default_factory=trio.Event, repr=False, compare=False)

    def finish(self, outcome: Outcome, at: float | None = None) -> None:
        """Close the record once; later calls are ignored so the first verdict sticks."""
        if self.outcome != "open":
            return
        self.outcome = outcome
        self.ended_at = trio.current_time() if at is None else at
        self.ended.set()


def split_tokens(text: str) -> tuple[str, ...]:
    """Word-ish stream tokens that keep their whitespace, so ``"".join(tokens) == text``."""
    return tuple(_TOKEN_RE.findall(text))


def base_url(binds: list[str]) -> str:
    """The OpenAI `base_url` for the first address `serve_fake_upstream` reported."""
    return binds[0] + "/v1"


class FakeUpstream:
    """The ASGI app: answers chat completions per model name and records every call."""

    def __init__(
        self,
        behaviours: Mapping[str, Behaviour] | None = None,
        *,
        default: Behaviour | None = None,
    ) -> None:
        self.behaviours: dict[str, Behaviour] = dict(behaviours or {})
        self.default: Behaviour = default if default is not None else Behaviour()
        self.calls: list[CallRecord] = []
        self._ids = itertools.count(1)
        # Replaced after every new call, so waiters wake once per arrival.
        self._call_arrived = trio.Event()

    def open_calls(self) -> list[CallRecord]:
        return [call for call in self.calls if call.outcome == "open"]

    def calls_for(self, model: str) -> list[CallRecord]:
        return [call for call in self.calls if call.model == model]

    async def wait_for_call(self, model: str | None = None) -> CallRecord:
        """The first call recorded (for `model`, if given), waiting until there is one."""
        while True:
            matches = self.calls if model is None else self.calls_for(model)
            if matches:
                return matches[0]
            await self._call_arrived.wait()

    def behaviour_for(self, model: str) -> Behaviour:
        return self.behaviours.get(model, self.default)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await _run_lifespan(receive, send)
            return
        if scope["type"] != "http":
            # Returning without accepting makes Hypercorn refuse the websocket handshake.
            return
        body = await _read_body(receive)
        if body is None:
            return
        path = scope["path"].rstrip("/") or "/"
        if scope["method"] == "POST" and path in _CHAT_PATHS:
            await self._chat(scope, body, receive, send)
        elif scope["method"] == "GET" and path in _MODELS_PATHS:
            await _send_json(send, 200, self._models_payload())
        else:
            message = f"Unknown route: {scope['method']} {scope['path']}"
            await _send_json(send, 404, _error_payload(message, "invalid_request_error"))

    def _models_payload(self) -> dict[str, Any]:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "fake-upstream"}
            for name in self.behaviours
        ]
        return {"object": "list", "data": data}

    async def _chat(
        self, scope: HTTPScope, body: bytes, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("model"), str)
            or not isinstance(payload.get("messages"), list)
        ):
            error = _error_payload(
                "Request body must be JSON with 'model' and 'messages'.", "invalid_request_error"
            )
            await _send_json(send, 400, error)
            return

        model: str = payload["model"]
        stream_options = payload.get("stream_options")
        record = CallRecord(
            model=model,
            stream=payload.get("stream") is True,
            messages=payload["messages"],
            started_at=trio.current_time(),
            headers=_headers(scope),
            body=payload,
        )
        self.calls.append(record)
        self._call_arrived.set()
        self._call_arrived = trio.Event()
        include_usage = isinstance(stream_options, dict) and (
            stream_options.get("include_usage") is True
        )
        behaviour = self.behaviour_for(model)
        disconnected_at: float | None = None

        async def watch_for_disconnect(response_scope: trio.CancelScope) -> None:
            nonlocal disconnected_at
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected_at = trio.current_time()
            response_scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_for_disconnect, nursery.cancel_scope)
                await self._respond(record, behaviour, include_usage, send)
                nursery.cancel_scope.cancel()
        finally:
            # No-op after a completed response; otherwise the client left or we were cancelled.
            record.finish("disconnected", at=disconnected_at)

    async def _respond(
        self,
        record: CallRecord,
        behaviour: Behaviour,
        include_usage: bool,
        send: ASGISendCallable,
    ) -> None:
        if behaviour.stall:
            await trio.sleep_forever()
        text, tokens = _answer(behaviour, record.model, record.messages)
        usage = {
            "prompt_tokens": _count_prompt_tokens(record.messages),
            "completion_tokens": len(tokens),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        completion_id = f"chatcmpl-fake-{next(self._ids):06d}"
        created = int(time.time())

        if behaviour.status != 200:
            await trio.sleep(behaviour.first_token_delay_s)
            detail = f"{SECRET_DETAIL_MARKER}: {record.model} failed"
            error = _error_payload(detail, _ERROR_TYPES.get(behaviour.status, "server_error"))
            await _send_json(send, behaviour.status, error)
            record.finish("completed")
            return

        if not record.stream:
            await trio.sleep(behaviour.first_token_delay_s + len(tokens) * behaviour.token_delay_s)
            completion = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": record.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
            await _send_json(send, 200, completion)
            record.finish("completed")
            return

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": record.model,
                "choices": choices,
                **extra,
            }
            return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

        def delta(content: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish_reason}

        await trio.sleep(behaviour.first_token_delay_s)
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        await _send_shielded(
            send, {"type": "http.response.start", "status": 200, "headers": headers}
        )
        # An empty reply still needs one chunk to carry the assistant role.
        for index, token in enumerate(tokens or ("",)):
            if index > 0:
                await trio.sleep(behaviour.token_delay_s)
            content = {"role": "assistant", "content": token} if index == 0 else {"content": token}
            await _send_body(send, chunk([delta(content)]), more_body=True)
        tail = chunk([delta({}, "stop")])
        if include_usage:
            tail += chunk([], usage=usage)
        tail += b"data: [DONE]\n\n"
        await _send_body(send, tail, more_body=False)
        # Mark before any further checkpoint: the close we just caused also looks like a
        # disconnect to the watcher, and the response is already complete.
        record.finish("completed")


def _answer(behaviour: Behaviour, model: str, messages: list[Any]) -> tuple[str, tuple[str, ...]]:
    if behaviour.tokens is not None:
        tokens = tuple(behaviour.tokens)
        text = behaviour.reply if behaviour.reply is not None else "".join(tokens)
        return text, tokens
    if behaviour.reply is not None:
        text = behaviour.reply
    else:
        text = f"{model} answers: {_last_user_message(messages)[:60]}"
    return text, split_tokens(text)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Content parts, as sent by multimodal clients; only the text parts matter here.
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def _last_user_message(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _count_prompt_tokens(messages: list[Any]) -> int:
    return sum(
        len(_content_text(m.get("content")).split()) for m in messages if isinstance(m, dict)
    )


def _headers(scope: HTTPScope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _error_payload(message: str, error_type: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


async def _read_body(receive: ASGIReceiveCallable) -> bytes | None:
    """The whole request body, or None if the client left before sending it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _run_lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send_shielded(send: ASGISendCallable, message: ASGISendEvent) -> None:
    # Cancelling Hypercorn half way through a send can leave its HTTP/1.1 framing out of step
    # with the bytes on the wire; cancellation should land in our sleeps instead.
    with trio.CancelScope(shield=True):
        await send(message)


async def _send_body(send: ASGISendCallable, body: bytes, *, more_body: bool) -> None:
    await _send_shielded(send, {"type": "http.response.body", "body": body, "more_body": more_body})


async def _send_json(send: ASGISendCallable, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await _send_shielded(
        send, {"type": "http.response.start", "status": status, "headers": headers}
    )
    await _send_body(send, body, more_body=False)


async def serve_fake_upstream(
    fake: FakeUpstream,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `fake` until cancelled (or `shutdown_trigger` returns).

    `task_status.started` receives Hypercorn's bound URLs, e.g. ``["http://127.0.0.1:54321"]``;
    port 0 picks a free port.
    """
    config = Config()
    bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    config.bind = [f"{bind_host}:{port}"]
    config.accesslog = None
    # Hypercorn's own "Running on" line would duplicate what callers print or ignore.
    config.loglevel = "WARNING"
    # Stalled calls never finish on their own; shutdown should not wait long for them.
    config.graceful_timeout = 0.5
    await serve(
        fake, config, shutdown_trigger=shutdown_trigger, task_status=task_status, mode="asgi"
    )


async def _wait_for_stop_signal() -> None:
    # Turning Ctrl+C into a shutdown trigger lets Hypercorn close connections gracefully
    # instead of unwinding through a KeyboardInterrupt.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


def _cli_upstream(first_token_delay_s: float, token_delay_s: float) -> FakeUpstream:
    return FakeUpstream(
        {
            "fake-fast": Behaviour(),
            "fake-slow": Behaviour(first_token_delay_s=0.5, token_delay_s=0.1),
            "fake-stall": Behaviour(stall=True),
            "fake-error": Behaviour(status=500),
        },
        default=Behaviour(first_token_delay_s=first_token_delay_s, token_delay_s=token_delay_s),
    )


async def _serve_cli(fake: FakeUpstream, host: str, port: int) -> None:
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(
                serve_fake_upstream,
                fake,
                host=host,
                port=port,
                shutdown_trigger=_wait_for_stop_signal,
            )
        )
        for bind in binds:
            print(f"fake upstream on {bind}  (OpenAI base_url: {bind}/v1)", flush=True)
        print(f"models: {', '.join(fake.behaviours)}; Ctrl+C stops", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.fake_upstream",
        description="Serve a fake OpenAI-compatible chat completions API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument(
        "--first-token-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay before answering, for models without a built-in behaviour",
    )
    parser.add_argument(
        "--token-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay between streamed tokens, for models without a built-in behaviour",
    )
    args = parser.parse_args(argv)
    fake = _cli_upstream(args.first_token_delay, args.token_delay)
    try:
        trio.run(_serve_cli, fake, args.host, args.port)
    except* KeyboardInterrupt:
        # Ctrl+C before the signal receiver is installed; nothing to clean up.
        pass


if __name__ == "__main__":
    main()
