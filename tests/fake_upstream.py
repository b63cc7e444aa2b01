"""A fake OpenAI-compatible upstream for tests, demos and benchmarks.

It is a raw ASGI 3 app served by Hypercorn's trio worker, so the service under test talks to it
over real sockets exactly as it would talk to OpenAI, Ollama or vLLM. Every chat call is recorded
(`FakeUpstream.calls`), including whether the client hung up before the answer was complete.
It can inject every fault a provider shows: error statuses with `Retry-After`, stalls, bodies
that are not JSON, streams cut off mid-answer and connections reset by the peer, each for a
number of calls only (`Behaviour.fail_first`), so retries and fallbacks can be tested over HTTP.

By hand:

    .venv/bin/python -m tests.fake_upstream --port 9100

    curl -sN http://127.0.0.1:9100/v1/chat/completions \\
        -H 'content-type: application/json' \\
        -d '{"model": "fake-slow", "stream": true,
             "stream_options": {"include_usage": true},
             "messages": [{"role": "user", "content": "Hello there"}]}'

The command line server knows these models; any other model name gets the default behaviour
(tune it with `--first-token-delay` and `--token-delay`):

    fake-fast       answers at once
    fake-slow       0.5 s before the first token, 0.1 s between tokens
    fake-stall      never answers
    fake-error      500
    fake-429        429 with `Retry-After: 1`
    fake-401        401
    fake-malformed  200 with a body (or first stream event) that is not JSON
    fake-cut        streams 3 tokens, then drops the connection (non-streaming: no answer)
    fake-reset      resets the TCP connection (RST) instead of answering
    fake-flaky      500 on its first call, answers normally after that

A request header picks a behaviour by name whatever the model is, so a client configured with
real model names can still be sent into a fault:

    curl -s http://127.0.0.1:9100/v1/chat/completions -H 'x-fake-behaviour: fake-429' \\
        -H 'content-type: application/json' \\
        -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}'

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
import collections
import dataclasses
import itertools
import json
import re
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import trio
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    ConnectionState,
    HTTPScope,
    Scope,
)
from hypercorn.utils import parse_socket_addr, repr_socket_addr, wrap_app

__all__ = [
    "BEHAVIOUR_HEADER",
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

# A request header naming an entry of `FakeUpstream.behaviours`; it wins over the model name.
BEHAVIOUR_HEADER = "x-fake-behaviour"

# "completed": the fake sent its whole answer (or error); "reset" and "cut": it ended the call
# on purpose; "disconnected": the client left first. A record is closed just before the last
# bytes go out, because Hypercorn's send yields to the scheduler after writing them: the client
# could otherwise read the whole answer while its record still says "open".
Outcome = Literal["open", "completed", "disconnected", "reset", "cut"]

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

# SO_LINGER on with a zero timeout: close() then discards unsent data and sends a RST.
_LINGER_ZERO = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class Behaviour:
    """How the fake answers one model name (or one `x-fake-behaviour` header value).

    `reply` and `tokens` may both be given; the non-streaming answer is then `reply` and the
    stream is `tokens`. If only `tokens` is given, the non-streaming answer is their join; if
    neither, the reply is "<model> answers: <last user message, first 60 chars>".

    Timing: `first_token_delay_s` passes before the response headers are sent (so the SDK's
    `create()` itself waits), `token_delay_s` between consecutive token chunks of a stream; a
    non-streaming answer waits `first_token_delay_s + len(tokens) * token_delay_s`.

    Faults, for streaming and non-streaming calls alike unless said otherwise; when several
    are set the first in this list wins:

    - `stall`: never answer.
    - `reset`: after `first_token_delay_s`, abort the TCP connection with a RST, no response.
      Needs `serve_fake_upstream` (a plain Hypercorn server gives the app no socket).
    - `status` other than 200: after `first_token_delay_s`, an OpenAI-shaped error body, with
      `retry_after` (if given) as the `Retry-After` header.
    - `malformed`: 200, but a non-streaming body that is truncated JSON, or a stream whose
      first `data:` event is truncated JSON (followed by `[DONE]`).
    - `cut_after_tokens`: a stream sends at most this many token chunks, then the connection
      closes without the final chunk or `[DONE]`; a non-streaming call waits as long as those
      tokens would take and closes the connection without any response. Needs
      `serve_fake_upstream` for non-streaming calls.

    `fail_first`: if set, the fault hits only the first `fail_first` calls that selected this
    behaviour (counted per key of `FakeUpstream.behaviours`, or together for the default);
    later calls answer normally, with the same reply and delays.

    `replies_by_prompt`: (substring, reply) pairs, tried in order; the first whose substring
    is in the text of the call's messages (any role) answers instead of `reply` and `tokens`,
    streamed as its `split_tokens`. One model can so answer a question, and a review or a
    choice among answers with what a judge would say:

        Behaviour(reply="42", replies_by_prompt=(("FINAL RANKING", ranking), ("consistent", pick)))
    """

    reply: str | None = None
    tokens: tuple[str, ...] | None = None
    first_token_delay_s: float = 0.0
    token_delay_s: float = 0.0
    stall: bool = False
    status: int = 200
    retry_after: str | None = None
    malformed: bool = False
    cut_after_tokens: int | None = None
    reset: bool = False
    fail_first: int | None = None
    replies_by_prompt: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.cut_after_tokens is not None and self.cut_after_tokens < 0:
            raise ValueError("cut_after_tokens must be >= 0")
        if self.fail_first is not None and self.fail_first < 0:
            raise ValueError("fail_first must be >= 0")
        if any(len(pair) != 2 for pair in self.replies_by_prompt):
            raise ValueError("replies_by_prompt holds (substring, reply) pairs")

    def for_attempt(self, attempt: int) -> Behaviour:
        """How the `attempt`-th call (from 1) that selected this behaviour is answered."""
        if self.fail_first is None or attempt <= self.fail_first:
            return self
        return dataclasses.replace(
            self,
            stall=False,
            reset=False,
            status=200,
            malformed=False,
            cut_after_tokens=None,
            fail_first=None,
        )


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
    # The key of `FakeUpstream.behaviours` that chose the answer; "" for the default.
    behaviour: str = ""
    # The caller's (host, port): calls with the same one came on the same connection.
    client: tuple[str, int] | None = None

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


_ConnectionKey = tuple[Any, Any]


class _Connections:
    """The server's open sockets, by the (client, server) addresses an ASGI scope carries.

    Hypercorn gives an ASGI app no handle on its socket; this lets the app end the very
    connection a request arrived on, the way a failing provider or proxy does.
    """

    def __init__(self) -> None:
        self._streams: dict[_ConnectionKey, trio.SocketStream] = {}

    def add(self, stream: trio.SocketStream) -> _ConnectionKey | None:
        sock = stream.socket
        try:
            # The same conversion Hypercorn applies to build `scope["client"]`/`["server"]`.
            key = (
                parse_socket_addr(sock.family, sock.getpeername()),
                parse_socket_addr(sock.family, sock.getsockname()),
            )
        except OSError:
            # The client already left; Hypercorn finds out by itself.
            return None
        self._streams[key] = stream
        return key

    def discard(self, key: _ConnectionKey | None) -> None:
        if key is not None:
            self._streams.pop(key, None)

    async def close(self, scope: HTTPScope, *, reset: bool) -> None:
        """Close the connection `scope` came on: a RST if `reset`, else a plain FIN."""
        key = (scope["client"], scope["server"])
        stream = self._streams.get(key)
        if stream is None:
            raise RuntimeError(
                "dropping a connection needs the server from serve_fake_upstream "
                f"(no socket known for {key})"
            )
        if reset:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        # Hypercorn's reader wakes with ClosedResourceError and tells the app "disconnect".
        await stream.aclose()


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
        # Calls so far per behaviour key, for `Behaviour.fail_first`.
        self._attempts: collections.Counter[str] = collections.Counter()
        self._connections = _Connections()

    def open_calls(self) -> list[CallRecord]:
        return [call for call in self.calls if call.outcome == "open"]

    def calls_for(self, model: str) -> list[CallRecord]:
        return [call for call in self.calls if call.model == model]

    def attempts(self, model: str) -> int:
        """How many chat calls asked for `model` so far, whatever their outcome."""
        return len(self.calls_for(model))

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
        headers = _headers(scope)
        key = headers.get(BEHAVIOUR_HEADER)
        if key is None:
            key = model if model in self.behaviours else ""
        elif key not in self.behaviours:
            known = ", ".join(self.behaviours) or "none"
            message = f"Unknown {BEHAVIOUR_HEADER} {key!r}; known behaviours: {known}."
            await _send_json(send, 400, _error_payload(message, "invalid_request_error"))
            return
        self._attempts[key] += 1
        behaviour = self.behaviours.get(key, self.default).for_attempt(self._attempts[key])

        stream_options = payload.get("stream_options")
        record = CallRecord(
            model=model,
            stream=payload.get("stream") is True,
            messages=payload["messages"],
            started_at=trio.current_time(),
            headers=headers,
            body=payload,
            behaviour=key,
            client=scope.get("client"),
        )
        self.calls.append(record)
        self._call_arrived.set()
        self._call_arrived = trio.Event()
        include_usage = isinstance(stream_options, dict) and (
            stream_options.get("include_usage") is True
        )
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
                await self._respond(scope, record, behaviour, include_usage, send)
                nursery.cancel_scope.cancel()
        finally:
            # No-op after a completed response; otherwise the client left or we were cancelled.
            record.finish("disconnected", at=disconnected_at)

    async def _respond(
        self,
        scope: HTTPScope,
        record: CallRecord,
        behaviour: Behaviour,
        include_usage: bool,
        send: ASGISendCallable,
    ) -> None:
        if behaviour.stall:
            await trio.sleep_forever()
        text, tokens = _answer(behaviour, record.model, record.messages)
        if behaviour.reset:
            await trio.sleep(behaviour.first_token_delay_s)
            # Mark first: the reset also reaches the disconnect watcher.
            record.finish("reset")
            await self._connections.close(scope, reset=True)
            return
        if behaviour.status != 200:
            await trio.sleep(behaviour.first_token_delay_s)
            detail = f"{SECRET_DETAIL_MARKER}: {record.model} failed"
            error = _error_payload(detail, _ERROR_TYPES.get(behaviour.status, "server_error"))
            extra_headers: list[tuple[bytes, bytes]] = []
            if behaviour.retry_after is not None:
                extra_headers.append((b"retry-after", behaviour.retry_after.encode("latin-1")))
            record.finish("completed")
            await _send_json(send, behaviour.status, error, extra_headers=extra_headers)
            return

        answer = _Answer(
            completion_id=f"chatcmpl-fake-{next(self._ids):06d}",
            created=int(time.time()),
            model=record.model,
            text=text,
            tokens=tokens,
            usage=_usage(record.messages, tokens),
        )
        if record.stream:
            await self._stream_answer(record, behaviour, answer, include_usage, send)
        elif behaviour.cut_after_tokens is not None:
            generated = min(behaviour.cut_after_tokens, len(tokens))
            await trio.sleep(behaviour.first_token_delay_s + generated * behaviour.token_delay_s)
            record.finish("cut")
            await self._connections.close(scope, reset=False)
        else:
            await trio.sleep(behaviour.first_token_delay_s + len(tokens) * behaviour.token_delay_s)
            completion = answer.completion()
            record.finish("completed")
            if behaviour.malformed:
                await _send_raw_json(send, 200, _truncated(json.dumps(completion).encode()))
            else:
                await _send_json(send, 200, completion)

    async def _stream_answer(
        self,
        record: CallRecord,
        behaviour: Behaviour,
        answer: _Answer,
        include_usage: bool,
        send: ASGISendCallable,
    ) -> None:
        await trio.sleep(behaviour.first_token_delay_s)
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        await _send_shielded(
            send, {"type": "http.response.start", "status": 200, "headers": headers}
        )
        # An empty reply still needs one chunk to carry the assistant role.
        tokens = answer.tokens or ("",)
        if behaviour.malformed:
            first = answer.chunk([_delta({"role": "assistant", "content": tokens[0]})])
            record.finish("completed")
            await _send_body(send, _truncated(first) + b"\n\ndata: [DONE]\n\n", more_body=False)
            return
        if behaviour.cut_after_tokens is not None:
            tokens = tokens[: behaviour.cut_after_tokens]
        # Token i is due at a fixed time from the first, as a provider's generation runs
        # at its own pace: a late wake-up (a busy machine) does not push every later token.
        first_at = trio.current_time()
        for index, token in enumerate(tokens):
            if index > 0:
                await trio.sleep_until(first_at + index * behaviour.token_delay_s)
            content = {"role": "assistant", "content": token} if index == 0 else {"content": token}
            await _send_body(send, answer.chunk([_delta(content)]), more_body=True)
        if behaviour.cut_after_tokens is not None:
            # Returning mid-body makes Hypercorn close the connection without the terminating
            # chunk, which the client sees as an incomplete chunked read: a cut, not an end.
            record.finish("cut")
            return
        tail = answer.chunk([_delta({}, "stop")])
        if include_usage:
            tail += answer.chunk([], usage=answer.usage)
        tail += b"data: [DONE]\n\n"
        record.finish("completed")
        await _send_body(send, tail, more_body=False)


@dataclass(frozen=True)
class _Answer:
    """One successful answer, in the two shapes the API sends it."""

    completion_id: str
    created: int
    model: str
    text: str
    tokens: tuple[str, ...]
    usage: dict[str, int]

    def completion(self) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage,
        }

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _delta(content: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish_reason}


def _usage(messages: list[Any], tokens: tuple[str, ...]) -> dict[str, int]:
    prompt_tokens = _count_prompt_tokens(messages)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(tokens),
        "total_tokens": prompt_tokens + len(tokens),
    }


def _truncated(data: bytes) -> bytes:
    # Half of a JSON object is never valid JSON: the braces cannot balance.
    return data[: len(data) // 2]


def _answer(behaviour: Behaviour, model: str, messages: list[Any]) -> tuple[str, tuple[str, ...]]:
    if behaviour.replies_by_prompt:
        prompt = "\n".join(_content_text(m.get("content")) for m in messages if isinstance(m, dict))
        for substring, reply in behaviour.replies_by_prompt:
            if substring in prompt:
                return reply, split_tokens(reply)
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


async def _send_json(
    send: ASGISendCallable,
    status: int,
    payload: dict[str, Any],
    *,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    await _send_raw_json(send, status, json.dumps(payload).encode(), extra_headers=extra_headers)


async def _send_raw_json(
    send: ASGISendCallable,
    status: int,
    body: bytes,
    *,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
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

    `task_status.started` receives the bound URLs, e.g. ``["http://127.0.0.1:54321"]``;
    port 0 picks a free port.

    This is `hypercorn.trio.serve` with the accept loop done here, so that the app can find
    each request's socket (for `Behaviour.reset` and `cut_after_tokens`). The app's lifespan
    is not run: the fake has nothing to start. Shutdown follows Hypercorn's: stop accepting,
    close idle keep-alive connections, give calls in flight `graceful_timeout`.
    """
    config = Config()
    bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    config.bind = [f"{bind_host}:{port}"]
    config.accesslog = None
    # Only problems (such as an app exception) should reach the log.
    config.loglevel = "WARNING"
    # Stalled calls never finish on their own; shutdown should not wait long for them.
    config.graceful_timeout = 0.5

    app = wrap_app(fake, config.wsgi_max_body_size, "asgi")
    context = WorkerContext(max_requests=None)
    listeners: list[trio.SocketListener] = []
    binds: list[str] = []
    for sock in config.create_sockets().insecure_sockets:
        sock.listen(config.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")

    async def serve_connection(stream: trio.SocketStream) -> None:
        key = fake._connections.add(stream)
        try:
            # TCPServer handles plain streams too: its SSL handshake step falls through
            # AttributeError, exactly as for the listeners hypercorn.trio.serve opens.
            await TCPServer(app, config, context, ConnectionState({}), stream).run()  # type: ignore[arg-type]
        finally:
            fake._connections.discard(key)
            # Hypercorn's own close is skipped when it is cancelled; this one is not, so a
            # client learns at once that the server went away.
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as connection_nursery:
        try:
            async with trio.open_nursery() as accept_nursery:
                accept_nursery.start_soon(
                    partial(
                        trio.serve_listeners,
                        serve_connection,
                        listeners,
                        handler_nursery=connection_nursery,
                    )
                )
                task_status.started(binds)
                if shutdown_trigger is not None:
                    await shutdown_trigger()
                    # serve_listeners closes the listening sockets as it unwinds.
                    accept_nursery.cancel_scope.cancel()
        finally:
            # Idle keep-alive connections close when they see this; busy ones get the grace.
            await context.terminated.set()
            connection_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout


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
            "fake-429": Behaviour(status=429, retry_after="1"),
            "fake-401": Behaviour(status=401),
            "fake-malformed": Behaviour(malformed=True),
            "fake-cut": Behaviour(
                reply="This reply stops after three tokens and never ends.", cut_after_tokens=3
            ),
            "fake-reset": Behaviour(reset=True),
            "fake-flaky": Behaviour(status=500, fail_first=1),
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
        prog="python -m tests.fake_upstream",
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
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='add a model, e.g. \'slow={"first_token_delay_s": 0.2, "reply": "Hi"}\' '
        "(the JSON holds Behaviour fields; tokens as a list, replies_by_prompt as "
        "[substring, reply] pairs)",
    )
    args = parser.parse_args(argv)
    fake = _cli_upstream(args.first_token_delay, args.token_delay)
    for spec in args.model:
        name, _, fields = spec.partition("=")
        try:
            values = json.loads(fields)
            if isinstance(values.get("tokens"), list):
                values["tokens"] = tuple(values["tokens"])
            if isinstance(values.get("replies_by_prompt"), list):
                values["replies_by_prompt"] = tuple(map(tuple, values["replies_by_prompt"]))
            fake.behaviours[name] = Behaviour(**values)
        except (ValueError, TypeError, AttributeError) as exc:
            parser.error(f"--model {spec!r}: {exc}")
    try:
        trio.run(_serve_cli, fake, args.host, args.port)
    except* KeyboardInterrupt:
        # Ctrl+C before the signal receiver is installed; nothing to clean up.
        pass


if __name__ == "__main__":
    main()
